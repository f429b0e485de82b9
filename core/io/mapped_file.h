#pragma once
// A read-only memory mapping of a whole file (RAII). Open failures throw mxlens::Error
// naming the file; an empty file maps to an empty span (mmap of length 0 is not allowed).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>

namespace mxlens {

class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::filesystem::path& path);

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::filesystem::path& path() const { return path_; }
  std::span<const std::byte> bytes() const { return {data_, static_cast<size_t>(size_bytes_)}; }
  uint64_t size_bytes() const { return size_bytes_; }

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  uint64_t size_bytes_ = 0;
};

}  // namespace mxlens
