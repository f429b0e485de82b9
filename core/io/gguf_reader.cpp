#include "core/io/gguf_reader.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <set>

#include "core/io/float_convert.h"
#include "core/io/mapped_file.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

// Arrays of arrays are legal GGUF; a bound keeps a hostile file from exhausting the stack.
constexpr int kMaxArrayDepth = 8;

std::string in_quotes(std::string_view s) {
  // Not "'" + std::string(s) + "'": GCC 12 warns wrongly about it (-Wrestrict).
  std::string out;
  out.reserve(s.size() + 2);
  out += '\'';
  out.append(s);
  out += '\'';
  return out;
}

// Little-endian reads with bounds checks; every failure names what was being read and where.
class Cursor {
 public:
  Cursor(std::span<const std::byte> bytes, const std::string& file) : bytes_(bytes), file_(file) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  [[noreturn]] void fail(const std::string& problem) const { throw Error(file_, problem); }

  void need(uint64_t n, const std::string& what) const {
    if (n > remaining())
      fail("truncated: " + what + " at byte " + std::to_string(pos_) + " needs " +
           std::to_string(n) + " bytes, but the file ends after " + std::to_string(remaining()));
  }

  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const std::string& what, uint64_t max_bytes) {
    const uint64_t n = read<uint64_t>(what + " length");
    if (n > max_bytes)
      fail(what + " at byte " + std::to_string(pos_ - 8) + " claims " + std::to_string(n) +
           " bytes (at most " + std::to_string(max_bytes) + " allowed)");
    need(n, what);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), size_t(n));
    pos_ += n;
    return s;
  }

 private:
  std::span<const std::byte> bytes_;
  const std::string& file_;
  uint64_t pos_ = 0;
};

// Smallest encoding of one value of type t: what a count of them must at least occupy.
uint64_t min_value_bytes(GgufType t) {
  if (t == GgufType::string) return 8;     // u64 length
  if (t == GgufType::array) return 4 + 8;  // u32 type + u64 count
  return gguf_fixed_size(t);
}

GgufType read_type(Cursor& c, const std::string& what) {
  const uint32_t t = c.read<uint32_t>(what + " type");
  if (t >= kGgufTypeCount)
    c.fail(what + " has value type " + std::to_string(t) + ", which GGUF does not define (0..12)");
  return static_cast<GgufType>(t);
}

GgufValue read_value(Cursor& c, GgufType type, const std::string& what, int depth) {
  switch (type) {
    case GgufType::u8:
      return GgufValue::u8(c.read<uint8_t>(what));
    case GgufType::i8:
      return GgufValue::i8(c.read<int8_t>(what));
    case GgufType::u16:
      return GgufValue::u16(c.read<uint16_t>(what));
    case GgufType::i16:
      return GgufValue::i16(c.read<int16_t>(what));
    case GgufType::u32:
      return GgufValue::u32(c.read<uint32_t>(what));
    case GgufType::i32:
      return GgufValue::i32(c.read<int32_t>(what));
    case GgufType::f32:
      return GgufValue::f32(c.read<float>(what));
    case GgufType::boolean: {
      const uint8_t b = c.read<uint8_t>(what);
      if (b > 1)
        c.fail(what + " is a bool stored as " + std::to_string(b) + " (only 0 and 1 are valid)");
      return GgufValue::boolean(b != 0);
    }
    case GgufType::string:
      return GgufValue::string(c.read_string(what, std::numeric_limits<uint64_t>::max()));
    case GgufType::array: {
      if (depth >= kMaxArrayDepth)
        c.fail(what + ": arrays nested more than " + std::to_string(kMaxArrayDepth) + " deep");
      GgufArray a;
      a.type = read_type(c, what + " element");
      const uint64_t n = c.read<uint64_t>(what + " count");
      const uint64_t min = min_value_bytes(a.type);
      if (n > c.remaining() / min)
        c.fail(what + " claims " + std::to_string(n) + " elements of type " +
               std::string(to_string(a.type)) + ", more than the " + std::to_string(c.remaining()) +
               " bytes left can hold");
      a.items.reserve(size_t(n));
      for (uint64_t i = 0; i < n; ++i)
        a.items.push_back(read_value(c, a.type, what + "[" + std::to_string(i) + "]", depth + 1));
      return GgufValue::array(std::move(a));
    }
    case GgufType::u64:
      return GgufValue::u64(c.read<uint64_t>(what));
    case GgufType::i64:
      return GgufValue::i64(c.read<int64_t>(what));
    case GgufType::f64:
      return GgufValue::f64(c.read<double>(what));
  }
  c.fail(what + ": unknown value type");
}

std::string describe_type(const GgufValue& v) {
  if (const GgufArray* a = v.get_if<GgufArray>())
    return "an array of " + std::string(to_string(a->type));
  return std::string(to_string(v.type()));
}

}  // namespace

GgufFile GgufFile::open(const std::filesystem::path& path) {
  GgufFile f;
  f.path_ = path;
  f.map_ = MappedFile::open(path);
  const std::string file = path.string();
  Cursor c(f.map_->bytes(), file);

  if (c.remaining() < 4) c.fail("not a GGUF file: " + std::to_string(c.remaining()) + " bytes");
  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kGgufMagic) c.fail("not a GGUF file (the first four bytes are not \"GGUF\")");
  f.version_ = c.read<uint32_t>("version");
  if (f.version_ != kGgufVersion)
    c.fail("GGUF version " + std::to_string(f.version_) + "; mxlens reads version 3");
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each KV takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least
  // 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
  if (n_kv > c.remaining() / 13)
    c.fail("header claims " + std::to_string(n_kv) +
           " metadata entries, more than the file holds (truncated or corrupt)");
  if (n_tensors > c.remaining() / 24)
    c.fail("header claims " + std::to_string(n_tensors) +
           " tensors, more than the file holds (truncated or corrupt)");

  std::set<std::string, std::less<>> keys;
  f.kvs_.reserve(size_t(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string what = "metadata entry " + std::to_string(i);
    GgufKv kv;
    kv.key = c.read_string(what + " key", kGgufMaxKeyBytes);
    if (kv.key.empty()) c.fail(what + " has an empty key");
    if (!keys.insert(kv.key).second) c.fail("key " + in_quotes(kv.key) + " appears twice");
    const std::string kwhat = "key " + in_quotes(kv.key);
    kv.value = read_value(c, read_type(c, kwhat), kwhat, 0);
    f.kvs_.push_back(std::move(kv));
  }

  if (const GgufValue* a = f.find("general.alignment")) {
    const uint32_t* v = a->get_if<uint32_t>();
    if (!v) c.fail("general.alignment is " + describe_type(*a) + ", not u32");
    if (*v == 0 || !std::has_single_bit(*v))
      c.fail("general.alignment is " + std::to_string(*v) + ", not a power of two");
    f.alignment_ = *v;
  }

  std::set<std::string, std::less<>> names;
  f.tensors_.reserve(size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    t.name = c.read_string("tensor " + std::to_string(i) + " name", 1u << 20);
    const std::string what = "tensor " + in_quotes(t.name);
    if (t.name.empty()) c.fail("tensor " + std::to_string(i) + " has an empty name");
    if (t.name.size() > kGgufMaxTensorName)
      c.fail(what + ": name of " + std::to_string(t.name.size()) + " bytes (ggml allows " +
             std::to_string(kGgufMaxTensorName) + ")");
    if (!names.insert(t.name).second) c.fail(what + " appears twice");
    const uint32_t n_dims = c.read<uint32_t>(what + " dimension count");
    if (n_dims > kGgufMaxDims)
      c.fail(what + " has " + std::to_string(n_dims) + " dimensions (at most 4)");
    t.elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>(what + " dimension");
      if (ne > uint64_t(std::numeric_limits<int64_t>::max()) ||
          (ne != 0 && t.elements > uint64_t(std::numeric_limits<int64_t>::max()) / ne))
        c.fail(what + ": dimension " + std::to_string(ne) + " overflows the element count");
      t.dims.push_back(ne);
      t.elements *= ne;
    }
    const uint32_t type = c.read<uint32_t>(what + " type");
    const std::optional<GgmlTypeTraits> traits = ggml_type_traits(type);
    if (!traits)
      c.fail(what + " has ggml type " + std::to_string(type) +
             ", which mxlens does not read (F32 0, F16 1, Q8_0 8, BF16 30, MXFP4 39)");
    t.type = traits->type;
    const uint64_t inner = t.dims.empty() ? 1 : t.dims[0];
    if (inner % traits->block_elements != 0)
      c.fail(what + ": innermost dimension " + std::to_string(inner) + " is not a multiple of " +
             std::string(traits->name) + "'s block of " + std::to_string(traits->block_elements));
    t.bytes = t.elements / traits->block_elements * traits->block_bytes;
    t.offset = c.read<uint64_t>(what + " offset");
    if (t.offset % f.alignment_ != 0)
      c.fail(what + ": offset " + std::to_string(t.offset) +
             " is not a multiple of the alignment " + std::to_string(f.alignment_));
    f.tensors_.push_back(std::move(t));
  }

  f.data_offset_ = gguf_align_up(c.pos(), f.alignment_);
  const uint64_t size = f.map_->size_bytes();
  if (f.tensors_.empty()) return f;
  if (f.data_offset_ > size)
    c.fail("truncated: the data section would start at byte " + std::to_string(f.data_offset_) +
           " but the file has " + std::to_string(size));
  const uint64_t data_bytes = size - f.data_offset_;
  std::vector<const GgufTensor*> by_offset;
  for (GgufTensor& t : f.tensors_) {
    if (t.offset > data_bytes || t.bytes > data_bytes - t.offset)
      c.fail("tensor " + in_quotes(t.name) + ": data [" + std::to_string(t.offset) + ", " +
             std::to_string(t.offset + t.bytes) + ") runs past the end of the data section (" +
             std::to_string(data_bytes) + " bytes): truncated file");
    t.data = f.map_->bytes().subspan(size_t(f.data_offset_ + t.offset), size_t(t.bytes));
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensor& a = *by_offset[i - 1];
    const GgufTensor& b = *by_offset[i];
    if (a.offset + a.bytes > b.offset)
      c.fail("tensors " + in_quotes(a.name) + " and " + in_quotes(b.name) + " overlap");
  }
  return f;
}

uint64_t GgufFile::file_size() const {
  return map_->size_bytes();
}

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const GgufKv& kv : kvs_)
    if (kv.key == key) return &kv.value;
  return nullptr;
}

namespace {

template <class T>
const T& typed(const std::filesystem::path& path, const GgufValue* v, std::string_view key,
               GgufType want) {
  if (!v) throw Error(path.string(), "key " + in_quotes(key) + " is missing");
  const T* x = v->get_if<T>();
  if (!x)
    throw Error(path.string(), "key " + in_quotes(key) + " is " + describe_type(*v) + ", not " +
                                   std::string(to_string(want)));
  return *x;
}

template <class T>
std::vector<T> typed_array(const std::filesystem::path& path, const GgufValue* v,
                           std::string_view key, GgufType want) {
  const GgufArray& a = typed<GgufArray>(path, v, key, GgufType::array);
  if (a.type != want)
    throw Error(path.string(), "key " + in_quotes(key) + " is " + describe_type(*v) +
                                   ", not an array of " + std::string(to_string(want)));
  std::vector<T> out;
  out.reserve(a.items.size());
  for (const GgufValue& item : a.items) out.push_back(*item.get_if<T>());
  return out;
}

}  // namespace

uint8_t GgufFile::get_u8(std::string_view key) const {
  return typed<uint8_t>(path_, find(key), key, GgufType::u8);
}
uint32_t GgufFile::get_u32(std::string_view key) const {
  return typed<uint32_t>(path_, find(key), key, GgufType::u32);
}
int32_t GgufFile::get_i32(std::string_view key) const {
  return typed<int32_t>(path_, find(key), key, GgufType::i32);
}
uint64_t GgufFile::get_u64(std::string_view key) const {
  return typed<uint64_t>(path_, find(key), key, GgufType::u64);
}
float GgufFile::get_f32(std::string_view key) const {
  return typed<float>(path_, find(key), key, GgufType::f32);
}
bool GgufFile::get_bool(std::string_view key) const {
  return typed<bool>(path_, find(key), key, GgufType::boolean);
}
std::string GgufFile::get_string(std::string_view key) const {
  return typed<std::string>(path_, find(key), key, GgufType::string);
}
std::vector<std::string> GgufFile::get_array_strings(std::string_view key) const {
  return typed_array<std::string>(path_, find(key), key, GgufType::string);
}
std::vector<float> GgufFile::get_array_f32(std::string_view key) const {
  return typed_array<float>(path_, find(key), key, GgufType::f32);
}
std::vector<int32_t> GgufFile::get_array_i32(std::string_view key) const {
  return typed_array<int32_t>(path_, find(key), key, GgufType::i32);
}
std::optional<uint32_t> GgufFile::find_u32(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_u32(key);
}
std::optional<std::string> GgufFile::find_string(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_string(key);
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  for (const GgufTensor& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const GgufTensor& GgufFile::tensor(std::string_view name) const {
  const GgufTensor* t = find_tensor(name);
  if (!t) throw Error(path_.string(), "no tensor " + in_quotes(name));
  return *t;
}

std::span<const Mxfp4Block> GgufFile::mxfp4_blocks(std::string_view name) const {
  const GgufTensor& t = tensor(name);
  if (t.type != GgmlType::mxfp4)
    throw Error(path_.string(), "tensor " + in_quotes(name) + " is " +
                                    std::string(to_string(t.type)) + ", not MXFP4");
  static_assert(alignof(Mxfp4Block) == 1, "blocks are read in place from any byte offset");
  return {reinterpret_cast<const Mxfp4Block*>(t.data.data()), size_t(t.bytes / sizeof(Mxfp4Block))};
}

std::vector<float> GgufFile::read_f32(std::string_view name) const {
  const GgufTensor& t = tensor(name);
  DType dtype;
  switch (t.type) {
    case GgmlType::f32:
      dtype = DType::F32;
      break;
    case GgmlType::f16:
      dtype = DType::F16;
      break;
    case GgmlType::bf16:
      dtype = DType::BF16;
      break;
    default:
      throw Error(path_.string(), "tensor " + in_quotes(name) + " is " +
                                      std::string(to_string(t.type)) + ", not F32, F16 or BF16");
  }
  std::vector<float> out(size_t(t.elements));
  convert_to_f32(dtype, t.data, out, path_.string() + ": " + t.name);
  return out;
}

}  // namespace mxlens
