#pragma once
// Writes a valid safetensors file (formats.md §1.1): header padded with spaces so the data
// section starts at a multiple of 8, tensors laid out contiguously in the order given.
// Data is streamed tensor by tensor (a tensor may arrive in several chunks), into a
// temporary file beside the target that is renamed into place only by finish().
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/io/safetensors.h"

namespace mxlens {

struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<uint64_t> shape;
  uint64_t size_bytes() const;  // throws Error on overflow or a sub-byte remainder
};

class SafetensorsWriter {
 public:
  // Writes the header at once; throws Error for duplicate or reserved names.
  SafetensorsWriter(std::filesystem::path path, std::vector<TensorSpec> tensors,
                    const std::map<std::string, std::string>& metadata = {});
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  // Removes the temporary file when finish() was not reached.
  ~SafetensorsWriter();

  // Appends bytes of tensor `name`, which must be the first tensor not yet complete.
  void write(std::string_view name, std::span<const std::byte> bytes);
  // Checks every tensor is complete, flushes, syncs and renames into place.
  void finish();

  // Header bytes (length prefix + padded JSON) of a file with these tensors.
  static uint64_t header_bytes(const std::vector<TensorSpec>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

 private:
  std::filesystem::path path_;
  std::filesystem::path temp_path_;
  std::vector<TensorSpec> tensors_;
  std::vector<uint64_t> sizes_;
  size_t current_ = 0;         // index of the tensor being written
  uint64_t written_ = 0;       // bytes of the current tensor written so far
  std::FILE* file_ = nullptr;  // open until finish()
};

// Convenience for small files and tests: one call with every tensor's bytes.
struct TensorData {
  TensorSpec spec;
  std::vector<std::byte> bytes;
};
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace mxlens
