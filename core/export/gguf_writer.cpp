#include "core/export/gguf_writer.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <type_traits>
#include <variant>

#include "core/util/error.h"

namespace mxlens {

namespace {

template <class T>
void append(std::vector<uint8_t>& out, T v) {
  static_assert(std::endian::native == std::endian::little, "GGUF is little-endian");
  // resize + memcpy: GCC 12 warns wrongly (stringop-overflow) on insert of a few bytes.
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

void append_string(std::vector<uint8_t>& out, std::string_view s) {
  append<uint64_t>(out, s.size());
  if (s.empty()) return;
  const size_t at = out.size();
  out.resize(at + s.size());
  std::memcpy(out.data() + at, s.data(), s.size());
}

void append_value(std::vector<uint8_t>& out, const GgufValue& v) {
  std::visit(
      [&out](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) {
          append<uint8_t>(out, x ? 1 : 0);
        } else if constexpr (std::is_same_v<T, std::string>) {
          append_string(out, x);
        } else if constexpr (std::is_same_v<T, GgufArray>) {
          append<uint32_t>(out, static_cast<uint32_t>(x.type));
          append<uint64_t>(out, x.items.size());
          for (const GgufValue& item : x.items) append_value(out, item);
        } else {
          append<T>(out, x);
        }
      },
      v.v);
}

// Arrays must hold what their element type says (the reader relies on it).
void check_value(const GgufValue& v, const std::string& key) {
  const GgufArray* a = v.get_if<GgufArray>();
  if (!a) return;
  for (const GgufValue& item : a->items) {
    if (item.type() != a->type)
      throw Error("gguf", "key '" + key + "': an array of " + std::string(to_string(a->type)) +
                              " holds a " + std::string(to_string(item.type())));
    check_value(item, key);
  }
}

}  // namespace

GgufWriter::~GgufWriter() {
  if (file_) std::fclose(file_);
}

std::string GgufWriter::source() const {
  return path_.empty() ? std::string("gguf") : path_.string();
}

void GgufWriter::add(std::string key, GgufValue value) {
  if (!path_.empty()) throw Error(source(), "metadata added after the header was written");
  if (key.empty() || key.size() > kGgufMaxKeyBytes)
    throw Error("gguf", "metadata key of " + std::to_string(key.size()) + " bytes");
  for (const auto& kv : kvs_)
    if (kv.first == key) throw Error("gguf", "metadata key '" + key + "' added twice");
  if (key == "general.alignment") {
    const uint32_t* a = value.get_if<uint32_t>();
    if (!a || *a == 0 || !std::has_single_bit(*a))
      throw Error("gguf", "general.alignment must be a u32 power of two");
  }
  check_value(value, key);
  kvs_.emplace_back(std::move(key), std::move(value));
}

size_t GgufWriter::add_tensor(std::string name, std::vector<uint64_t> shape, GgmlType type) {
  if (!path_.empty()) throw Error(source(), "tensor '" + name + "' added after the header");
  if (name.empty() || name.size() > kGgufMaxTensorName)
    throw Error("gguf", "tensor name '" + name + "' must have 1 to " +
                            std::to_string(kGgufMaxTensorName) + " bytes");
  for (const Tensor& t : tensors_)
    if (t.name == name) throw Error("gguf", "tensor '" + name + "' declared twice");
  if (shape.empty() || shape.size() > kGgufMaxDims)
    throw Error("gguf", "tensor '" + name + "' has " + std::to_string(shape.size()) +
                            " dimensions (1 to 4)");
  const GgmlTypeTraits traits = ggml_type_traits(type);
  uint64_t elements = 1;
  for (uint64_t d : shape) {
    if (d == 0) throw Error("gguf", "tensor '" + name + "' has a zero dimension");
    elements *= d;
  }
  if (shape.back() % traits.block_elements != 0)
    throw Error("gguf", "tensor '" + name + "': innermost dimension " +
                            std::to_string(shape.back()) + " is not a multiple of " +
                            std::string(traits.name) + "'s block of " +
                            std::to_string(traits.block_elements));
  tensors_.push_back({std::move(name), std::move(shape), type,
                      elements / traits.block_elements * traits.block_bytes});
  return tensors_.size() - 1;
}

uint32_t GgufWriter::alignment() const {
  for (const auto& [key, value] : kvs_)
    if (key == "general.alignment") return *value.get_if<uint32_t>();
  return kGgufDefaultAlignment;
}

uint64_t GgufWriter::tensor_offset(size_t i) const {
  uint64_t offset = 0;
  for (size_t j = 0; j < i; ++j) offset += gguf_align_up(tensors_[j].bytes, alignment());
  return offset;
}

std::vector<uint8_t> GgufWriter::header() const {
  std::vector<uint8_t> out;
  append<uint32_t>(out, kGgufMagic);
  append<uint32_t>(out, kGgufVersion);
  append<uint64_t>(out, tensors_.size());
  append<uint64_t>(out, kvs_.size());
  for (const auto& [key, value] : kvs_) {
    append_string(out, key);
    append<uint32_t>(out, static_cast<uint32_t>(value.type()));
    append_value(out, value);
  }
  const uint32_t align = alignment();
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    append_string(out, t.name);
    append<uint32_t>(out, static_cast<uint32_t>(t.shape.size()));
    for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) append<uint64_t>(out, *d);
    append<uint32_t>(out, static_cast<uint32_t>(t.type));
    append<uint64_t>(out, offset);
    offset += gguf_align_up(t.bytes, align);
  }
  out.resize(size_t(gguf_align_up(out.size(), align)), 0);
  return out;
}

uint64_t GgufWriter::header_size() const {
  return header().size();
}

uint64_t GgufWriter::file_size() const {
  return header_size() + tensor_offset(tensors_.size());
}

void GgufWriter::put(const void* data, size_t n) {
  if (n == 0) return;
  if (std::fwrite(data, 1, n, file_) != n)
    throw Error(source(), std::string("write failed: ") + std::strerror(errno));
  position_ += n;
}

void GgufWriter::pad_to_alignment() {
  static const uint8_t zeros[256] = {};
  uint64_t pad = gguf_align_up(position_, alignment()) - position_;
  while (pad > 0) {
    const size_t n = size_t(std::min<uint64_t>(pad, sizeof zeros));
    put(zeros, n);
    pad -= n;
  }
}

void GgufWriter::open(const std::filesystem::path& file) {
  if (file_ || finished_) throw Error(source(), "GGUF writer opened twice");
  const std::vector<uint8_t> head = header();
  path_ = file;
  file_ = std::fopen(file.c_str(), "wb");
  if (!file_) throw Error(source(), std::string("cannot create file: ") + std::strerror(errno));
  std::setvbuf(file_, nullptr, _IOFBF, size_t(1) << 20);
  put(head.data(), head.size());
}

void GgufWriter::write(std::string_view name, std::span<const std::byte> bytes) {
  if (!file_) throw Error(source(), "tensor data written before open() or after finish()");
  while (current_ < tensors_.size() && written_ == tensors_[current_].bytes &&
         tensors_[current_].name != name) {
    ++current_;
    written_ = 0;
  }
  if (current_ >= tensors_.size() || tensors_[current_].name != name)
    throw Error(source(), "tensor '" + std::string(name) + "' written out of order (expected '" +
                              (current_ < tensors_.size() ? tensors_[current_].name : "nothing") +
                              "')");
  const Tensor& t = tensors_[current_];
  if (bytes.size() > t.bytes - written_)
    throw Error(source(), "tensor '" + t.name + "': " + std::to_string(written_ + bytes.size()) +
                              " bytes written, the tensor has " + std::to_string(t.bytes));
  put(bytes.data(), bytes.size());
  written_ += bytes.size();
  if (written_ == t.bytes) pad_to_alignment();
}

void GgufWriter::finish() {
  if (!file_) throw Error(source(), "finish() without open()");
  // Tensors of zero bytes cannot exist (dims ≥ 1), so the last one is complete exactly when
  // every one is.
  const bool complete =
      tensors_.empty() || (current_ == tensors_.size() - 1 && written_ == tensors_.back().bytes);
  if (!complete) {
    const size_t missing = written_ == tensors_[current_].bytes ? current_ + 1 : current_;
    throw Error(source(),
                "finished before tensor '" + tensors_[missing].name + "' was completely written");
  }
  if (std::fflush(file_) != 0)
    throw Error(source(), std::string("write failed: ") + std::strerror(errno));
  if (::fsync(::fileno(file_)) != 0)
    throw Error(source(), std::string("fsync failed: ") + std::strerror(errno));
  std::FILE* f = file_;
  file_ = nullptr;
  finished_ = true;
  if (std::fclose(f) != 0)
    throw Error(source(), std::string("close failed: ") + std::strerror(errno));
}

}  // namespace mxlens
