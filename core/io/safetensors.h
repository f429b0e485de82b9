#pragma once
// A memory-mapped safetensors file (formats.md §1). Opening validates every rule of
// formats.md §1.3 and throws mxlens::Error naming the file and the problem.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mxlens {

enum class DType {
  BOOL,
  F4,
  F6_E2M3,
  F6_E3M2,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  F8_E8M0,
  F8_E4M3FNUZ,
  F8_E5M2FNUZ,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  C64,
  F64,
  I64,
  U64
};

const char* dtype_name(DType t);
int dtype_bits(DType t);
// The dtype spelled as in a safetensors header ("BF16"); nullopt for an unknown name.
std::optional<DType> dtype_from_name(std::string_view name);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<uint64_t> shape;  // outermost first
  uint64_t begin = 0;           // byte offsets relative to the data section
  uint64_t end = 0;
  uint64_t size_bytes() const { return end - begin; }
  uint64_t numel() const;
};

class MappedFile;  // core/io/mapped_file.h

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by offset
  const TensorInfo* find(std::string_view name) const;                 // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Raw little-endian bytes of one tensor, pointing into the mapping (zero copy).
  std::span<const std::byte> bytes(const TensorInfo& t) const;
  uint64_t file_size_bytes() const;
  // Absolute file offset of the data section (8 + header length).
  uint64_t data_offset() const { return data_offset_; }
  // Whether the tensor's first byte is aligned for its element type inside the mapping, so
  // its bytes may be reinterpreted in place (otherwise they must be copied).
  bool is_aligned(const TensorInfo& t) const;

 private:
  std::filesystem::path path_;
  std::shared_ptr<MappedFile> map_;
  uint64_t data_offset_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace mxlens
