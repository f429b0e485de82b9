#pragma once
// GGUF v3 (formats.md §4.3): the metadata value types and the ggml tensor types shared by
// mxlens's reader (core/io/gguf_reader.h) and writer (core/export/gguf_writer.h).
//
// A GgufValue holds one metadata value; its std::variant alternatives are listed in the order
// of the GGUF value type numbers, so type() is simply the variant's index (0 u8 … 12 f64).
// Arrays hold their element type and the elements (which may be arrays again).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace mxlens {

inline constexpr uint32_t kGgufMagic = 0x46554747;  // the bytes "GGUF" read little-endian
inline constexpr uint32_t kGgufVersion = 3;
inline constexpr uint32_t kGgufDefaultAlignment = 32;  // when general.alignment is absent
// ggml's GGML_MAX_NAME is 64 bytes including the terminating NUL.
inline constexpr size_t kGgufMaxTensorName = 63;
inline constexpr uint32_t kGgufMaxDims = 4;
inline constexpr size_t kGgufMaxKeyBytes = 65535;

enum class GgufType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,  // one byte, 0 or 1
  string = 8,   // u64 byte length + UTF-8 bytes, no terminator
  array = 9,    // u32 element type + u64 count + elements
  u64 = 10,
  i64 = 11,
  f64 = 12,
};
inline constexpr uint32_t kGgufTypeCount = 13;

constexpr std::string_view to_string(GgufType t) {
  constexpr std::string_view names[kGgufTypeCount] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                                      "i32", "f32", "bool", "string", "array",
                                                      "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < kGgufTypeCount ? names[i] : std::string_view("unknown");
}

// Bytes of one value of a fixed-size type; 0 for string and array.
constexpr uint64_t gguf_fixed_size(GgufType t) {
  switch (t) {
    case GgufType::u8:
    case GgufType::i8:
    case GgufType::boolean:
      return 1;
    case GgufType::u16:
    case GgufType::i16:
      return 2;
    case GgufType::u32:
    case GgufType::i32:
    case GgufType::f32:
      return 4;
    case GgufType::u64:
    case GgufType::i64:
    case GgufType::f64:
      return 8;
    case GgufType::string:
    case GgufType::array:
      return 0;
  }
  return 0;
}

struct GgufValue;

struct GgufArray {
  GgufType type = GgufType::u8;  // element type
  std::vector<GgufValue> items;
};

struct GgufValue {
  using Variant = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool,
                               std::string, GgufArray, uint64_t, int64_t, double>;
  Variant v;

  GgufType type() const { return static_cast<GgufType>(v.index()); }

  template <class T>
  const T* get_if() const {
    return std::get_if<T>(&v);
  }

  static GgufValue u8(uint8_t x) { return {Variant(std::in_place_index<0>, x)}; }
  static GgufValue i8(int8_t x) { return {Variant(std::in_place_index<1>, x)}; }
  static GgufValue u16(uint16_t x) { return {Variant(std::in_place_index<2>, x)}; }
  static GgufValue i16(int16_t x) { return {Variant(std::in_place_index<3>, x)}; }
  static GgufValue u32(uint32_t x) { return {Variant(std::in_place_index<4>, x)}; }
  static GgufValue i32(int32_t x) { return {Variant(std::in_place_index<5>, x)}; }
  static GgufValue f32(float x) { return {Variant(std::in_place_index<6>, x)}; }
  static GgufValue boolean(bool x) { return {Variant(std::in_place_index<7>, x)}; }
  static GgufValue string(std::string x) { return {Variant(std::in_place_index<8>, std::move(x))}; }
  static GgufValue array(GgufArray x) { return {Variant(std::in_place_index<9>, std::move(x))}; }
  static GgufValue u64(uint64_t x) { return {Variant(std::in_place_index<10>, x)}; }
  static GgufValue i64(int64_t x) { return {Variant(std::in_place_index<11>, x)}; }
  static GgufValue f64(double x) { return {Variant(std::in_place_index<12>, x)}; }

  // Arrays of one element type, the common cases of tokenizer metadata.
  static GgufValue strings(const std::vector<std::string>& xs) {
    GgufArray a{GgufType::string, {}};
    a.items.reserve(xs.size());
    for (const std::string& s : xs) a.items.push_back(string(s));
    return array(std::move(a));
  }
  static GgufValue f32s(const std::vector<float>& xs) {
    GgufArray a{GgufType::f32, {}};
    a.items.reserve(xs.size());
    for (float x : xs) a.items.push_back(f32(x));
    return array(std::move(a));
  }
  static GgufValue i32s(const std::vector<int32_t>& xs) {
    GgufArray a{GgufType::i32, {}};
    a.items.reserve(xs.size());
    for (int32_t x : xs) a.items.push_back(i32(x));
    return array(std::move(a));
  }
};

// The ggml tensor types mxlens reads and writes (ggml's numbering).
enum class GgmlType : uint32_t {
  f32 = 0,
  f16 = 1,
  q8_0 = 8,
  bf16 = 30,
  mxfp4 = 39,  // 32 elements → 17 bytes {u8 e; u8 qs[16]} (formats.md §4.3)
};

struct GgmlTypeTraits {
  GgmlType type;
  std::string_view name;
  uint32_t block_elements;  // elements per block (1 for plain floats)
  uint32_t block_bytes;     // bytes per block
};

// Traits of a stored type number; nullopt for a type mxlens does not know.
constexpr std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t type) {
  switch (type) {
    case 0:
      return GgmlTypeTraits{GgmlType::f32, "F32", 1, 4};
    case 1:
      return GgmlTypeTraits{GgmlType::f16, "F16", 1, 2};
    case 8:
      return GgmlTypeTraits{GgmlType::q8_0, "Q8_0", 32, 34};
    case 30:
      return GgmlTypeTraits{GgmlType::bf16, "BF16", 1, 2};
    case 39:
      return GgmlTypeTraits{GgmlType::mxfp4, "MXFP4", 32, 17};
  }
  return std::nullopt;
}
constexpr GgmlTypeTraits ggml_type_traits(GgmlType type) {
  return *ggml_type_traits(static_cast<uint32_t>(type));
}
constexpr std::string_view to_string(GgmlType type) {
  return ggml_type_traits(type).name;
}

constexpr uint64_t gguf_align_up(uint64_t n, uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

}  // namespace mxlens
