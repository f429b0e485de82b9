#pragma once
// mxlens's own GGUF v3 reader (formats.md §4.3): memory-maps the file and parses the header —
// every metadata value (nested arrays included) and every tensor info — checking everything
// a later read depends on, so a broken or hostile file is an Error(file, problem), never a
// crash or an out-of-bounds read:
//   - magic "GGUF", version 3, counts that fit in the file;
//   - every length (strings, arrays) within the remaining bytes, known value types, unique
//     keys, arrays nested at most 8 deep;
//   - general.alignment, when present, a u32 power of two (default 32);
//   - tensor names 1..63 bytes and unique, at most 4 dims, known ggml types (F32, F16, Q8_0,
//     BF16, MXFP4), the innermost dim a multiple of the type's block, offsets aligned, data
//     inside the file and not overlapping another tensor's.
// Tensor data stays in the mapping; spans into it live as long as the GgufFile.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/io/gguf_format.h"
#include "core/mx/mxfp4.h"

namespace mxlens {

class MappedFile;

struct GgufKv {
  std::string key;
  GgufValue value;
};

struct GgufTensor {
  std::string name;
  std::vector<uint64_t> dims;  // innermost first, as stored (ggml ne[0] first)
  GgmlType type = GgmlType::f32;
  uint64_t offset = 0;  // relative to the start of the data section
  uint64_t elements = 0;
  uint64_t bytes = 0;
  std::span<const std::byte> data;  // into the mapping

  // Outermost first (Hugging Face order, e.g. [out, in] of a linear).
  std::vector<uint64_t> shape() const { return {dims.rbegin(), dims.rend()}; }
};

class GgufFile {
 public:
  // Maps and validates `path` (see above). Throws Error(path, problem).
  static GgufFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute, aligned
  uint64_t file_size() const;

  // Metadata in file order.
  const std::vector<GgufKv>& kvs() const { return kvs_; }
  const GgufValue* find(std::string_view key) const;  // nullptr when absent
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters: Error(path, "key 'k' is missing") when absent, and Error naming the stored
  // type when it is another one (no conversions).
  uint8_t get_u8(std::string_view key) const;
  uint32_t get_u32(std::string_view key) const;
  int32_t get_i32(std::string_view key) const;
  uint64_t get_u64(std::string_view key) const;
  float get_f32(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  std::vector<std::string> get_array_strings(std::string_view key) const;
  std::vector<float> get_array_f32(std::string_view key) const;
  std::vector<int32_t> get_array_i32(std::string_view key) const;
  // nullopt when absent; Error on another type.
  std::optional<uint32_t> find_u32(std::string_view key) const;
  std::optional<std::string> find_string(std::string_view key) const;

  // Tensor infos in file order.
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(std::string_view name) const;  // nullptr when absent
  const GgufTensor& tensor(std::string_view name) const;       // Error when absent

  // The blocks of an MXFP4 tensor ([rows, dims[0]/32] row-major; Error for another type).
  std::span<const Mxfp4Block> mxfp4_blocks(std::string_view name) const;
  // The values of an F32, F16 or BF16 tensor converted to float (a copy; Error otherwise).
  std::vector<float> read_f32(std::string_view name) const;

 private:
  GgufFile() = default;
  std::filesystem::path path_;
  std::shared_ptr<MappedFile> map_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<GgufKv> kvs_;
  std::vector<GgufTensor> tensors_;
};

}  // namespace mxlens
