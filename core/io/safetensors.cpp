#include "core/io/safetensors.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "core/io/mapped_file.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

using json = nlohmann::json;

constexpr uint64_t kHeaderLengthBytes = 8;
constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // formats.md §1.3 rule 2

struct DTypeEntry {
  DType type;
  const char* name;
  int bits;
};

constexpr std::array<DTypeEntry, 22> kDTypes = {{
    {DType::BOOL, "BOOL", 8},
    {DType::F4, "F4", 4},
    {DType::F6_E2M3, "F6_E2M3", 6},
    {DType::F6_E3M2, "F6_E3M2", 6},
    {DType::U8, "U8", 8},
    {DType::I8, "I8", 8},
    {DType::F8_E5M2, "F8_E5M2", 8},
    {DType::F8_E4M3, "F8_E4M3", 8},
    {DType::F8_E8M0, "F8_E8M0", 8},
    {DType::F8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
    {DType::F8_E5M2FNUZ, "F8_E5M2FNUZ", 8},
    {DType::I16, "I16", 16},
    {DType::U16, "U16", 16},
    {DType::F16, "F16", 16},
    {DType::BF16, "BF16", 16},
    {DType::I32, "I32", 32},
    {DType::U32, "U32", 32},
    {DType::F32, "F32", 32},
    {DType::C64, "C64", 64},
    {DType::F64, "F64", 64},
    {DType::I64, "I64", 64},
    {DType::U64, "U64", 64},
}};

const DTypeEntry& entry(DType t) {
  for (const auto& e : kDTypes)
    if (e.type == t) return e;
  return kDTypes[0];  // unreachable: every enumerator is in the table
}

uint64_t read_u64_le(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// Returns the offset of the first byte that breaks UTF-8 (overlongs and surrogates
// included), or npos when the whole range is valid.
size_t first_invalid_utf8(const unsigned char* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    uint32_t min_cp = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min_cp = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min_cp = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min_cp = 0x10000;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string::npos;
}

std::string single_quoted(std::string_view name) {
  std::string s;
  s.reserve(name.size() + 2);
  s.push_back('\'');
  s.append(name);
  s.push_back('\'');
  return s;
}

// Parses the header JSON, rejecting duplicate keys in any object (formats.md §1.3: the
// reference silently keeps the last one; mxlens refuses).
json parse_header_json(const std::string& source, const char* text, size_t n) {
  struct OpenObject {
    std::string name;  // the key this object is the value of ("" for the header itself)
    std::set<std::string> keys;
  };
  std::vector<OpenObject> open_objects;
  std::string last_key;
  std::string duplicate;
  auto on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.push_back({open_objects.empty() ? std::string() : last_key, {}});
        break;
      case json::parse_event_t::key:
        last_key = parsed.get<std::string>();
        if (!open_objects.back().keys.insert(last_key).second && duplicate.empty()) {
          duplicate = open_objects.size() == 1
                          ? "duplicate key " + single_quoted(last_key) + " in header"
                          : "duplicate key " + single_quoted(last_key) + " in entry " +
                                single_quoted(open_objects.back().name);
        }
        break;
      case json::parse_event_t::object_end:
        open_objects.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text, text + n, on_event, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    throw Error(source, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) throw Error(source, duplicate);
  return header;
}

uint64_t as_u64(const std::string& source, const json& v, const std::string& what) {
  if (!v.is_number_unsigned())
    throw Error(source, what + " must be a non-negative integer, got " + v.dump());
  return v.get<uint64_t>();
}

TensorInfo parse_tensor_entry(const std::string& source, const std::string& name, const json& v) {
  const std::string where = "tensor " + single_quoted(name);
  if (!v.is_object()) throw Error(source, where + ": entry must be a JSON object");
  for (const auto& [key, unused] : v.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      throw Error(source, where + ": unexpected field " + single_quoted(key));
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!v.contains(field)) throw Error(source, where + ": missing field '" + field + "'");
  }
  TensorInfo t;
  t.name = name;
  const json& dtype = v["dtype"];
  if (!dtype.is_string()) throw Error(source, where + ": dtype must be a string");
  const auto parsed = dtype_from_name(dtype.get<std::string>());
  if (!parsed)
    throw Error(source, where + ": unknown dtype " + single_quoted(dtype.get<std::string>()));
  t.dtype = *parsed;

  const json& shape = v["shape"];
  if (!shape.is_array()) throw Error(source, where + ": shape must be an array");
  for (const auto& dim : shape) t.shape.push_back(as_u64(source, dim, where + ": shape entry"));

  const json& offsets = v["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2)
    throw Error(source, where + ": data_offsets must be an array [begin, end]");
  t.begin = as_u64(source, offsets[0], where + ": data_offsets begin");
  t.end = as_u64(source, offsets[1], where + ": data_offsets end");
  return t;
}

// product(shape) * bits / 8 with overflow checks (formats.md §1.3 rule 6).
uint64_t expected_bytes(const std::string& source, const TensorInfo& t) {
  uint64_t numel = 1;
  for (uint64_t dim : t.shape) {
    if (__builtin_mul_overflow(numel, dim, &numel))
      throw Error(source, "tensor " + single_quoted(t.name) + ": shape element count overflows");
  }
  uint64_t bits = 0;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_bits(t.dtype)), &bits))
    throw Error(source, "tensor " + single_quoted(t.name) + ": shape bit count overflows");
  if (bits % 8 != 0)
    throw Error(source, "tensor " + single_quoted(t.name) + ": " + std::to_string(numel) +
                            " elements of " + dtype_name(t.dtype) +
                            " are not a whole number of bytes");
  return bits / 8;
}

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace

const char* dtype_name(DType t) {
  return entry(t).name;
}
int dtype_bits(DType t) {
  return entry(t).bits;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& e : kDTypes)
    if (name == e.name) return e.type;
  return std::nullopt;
}

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (uint64_t dim : shape) n *= dim;  // overflow excluded when the file was opened
  return n;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile file;
  file.path_ = path;
  file.map_ = MappedFile::open(path);
  const std::string source = path.string();
  const auto bytes = file.map_->bytes();
  const uint64_t file_bytes = file.map_->size_bytes();

  // Rules 1-3: the 8-byte length prefix and the header's extent.
  if (file_bytes < kHeaderLengthBytes)
    throw Error(source, "header too small: file has " + std::to_string(file_bytes) +
                            " bytes, need at least 8 for the header length");
  const uint64_t n = read_u64_le(bytes.data());
  if (n > kMaxHeaderBytes)
    throw Error(source, "header too large: header length " + std::to_string(n) +
                            " exceeds the 100000000-byte limit");
  if (kHeaderLengthBytes + n > file_bytes)
    throw Error(source, "invalid header length: header claims " + std::to_string(n) +
                            " bytes but the file has only " +
                            std::to_string(file_bytes - kHeaderLengthBytes) + " after the prefix");
  file.data_offset_ = kHeaderLengthBytes + n;

  // Rule 4: UTF-8, JSON, field types.
  const auto* text = reinterpret_cast<const char*>(bytes.data() + kHeaderLengthBytes);
  if (const size_t bad = first_invalid_utf8(reinterpret_cast<const unsigned char*>(text), n);
      bad != std::string::npos)
    throw Error(source,
                "header is not valid UTF-8 (byte " + std::to_string(bad) + " of the header)");
  if (n == 0 || text[0] != '{') throw Error(source, "header does not start with '{'");
  const json header = parse_header_json(source, text, n);
  if (!header.is_object()) throw Error(source, "header is not a JSON object");

  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;
      if (!value.is_object()) throw Error(source, "__metadata__ must be an object of strings");
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string())
          throw Error(source, "__metadata__ value of " + single_quoted(mkey) + " is not a string");
        file.metadata_[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    file.tensors_.push_back(parse_tensor_entry(source, key, value));
  }

  // Rules 5-6: sorted by offsets, contiguous from 0, sizes matching shape x dtype.
  std::sort(file.tensors_.begin(), file.tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
            });
  uint64_t cursor = 0;
  for (const TensorInfo& t : file.tensors_) {
    if (t.begin != cursor || t.end < t.begin) {
      std::string why;
      if (t.end < t.begin)
        why = "end " + std::to_string(t.end) + " is before begin " + std::to_string(t.begin);
      else if (t.begin > cursor)
        why = "begins at " + std::to_string(t.begin) + " but the previous tensor ends at " +
              std::to_string(cursor) + " (gap)";
      else
        why = "begins at " + std::to_string(t.begin) + " but the previous tensor ends at " +
              std::to_string(cursor) + " (overlap)";
      throw Error(source, "invalid offset for tensor " + single_quoted(t.name) + ": " + why);
    }
    const uint64_t want = expected_bytes(source, t);
    if (t.size_bytes() != want)
      throw Error(source, "invalid info for tensor " + single_quoted(t.name) + ": shape " +
                              shape_text(t.shape) + " of " + dtype_name(t.dtype) + " needs " +
                              std::to_string(want) + " bytes but data_offsets span " +
                              std::to_string(t.size_bytes()));
    cursor = t.end;
  }

  // Rule 7: the data section ends exactly at the end of the file.
  const uint64_t data_bytes = file_bytes - file.data_offset_;
  if (cursor > data_bytes)
    throw Error(source, "file is truncated: tensor data needs " + std::to_string(cursor) +
                            " bytes after the header but the file has " +
                            std::to_string(data_bytes));
  if (cursor < data_bytes)
    throw Error(source, "trailing bytes: tensor data ends at " + std::to_string(cursor) +
                            " bytes after the header but the file has " +
                            std::to_string(data_bytes));
  return file;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  for (const TensorInfo& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::span<const std::byte> SafetensorsFile::bytes(const TensorInfo& t) const {
  return map_->bytes().subspan(data_offset_ + t.begin, t.size_bytes());
}

uint64_t SafetensorsFile::file_size_bytes() const {
  return map_->size_bytes();
}

bool SafetensorsFile::is_aligned(const TensorInfo& t) const {
  const uint64_t element_bytes = std::max(1, dtype_bits(t.dtype) / 8);
  const auto address = reinterpret_cast<uintptr_t>(map_->bytes().data()) + data_offset_ + t.begin;
  return address % element_bytes == 0;
}

}  // namespace mxlens
