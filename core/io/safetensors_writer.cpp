#include "core/io/safetensors_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/util/error.h"

namespace mxlens {

namespace {

std::string header_json(const std::vector<TensorSpec>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorSpec& t : tensors) {
    const uint64_t size = t.size_bytes();
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data section starts at a multiple of 8
  return text;
}

}  // namespace

uint64_t TensorSpec::size_bytes() const {
  uint64_t bits = static_cast<uint64_t>(dtype_bits(dtype));
  for (uint64_t dim : shape) {
    if (__builtin_mul_overflow(bits, dim, &bits))
      throw Error(name, "tensor size overflows 64 bits");
  }
  if (bits % 8 != 0) throw Error(name, "tensor is not a whole number of bytes");
  return bits / 8;
}

uint64_t SafetensorsWriter::header_bytes(const std::vector<TensorSpec>& tensors,
                                         const std::map<std::string, std::string>& metadata) {
  return 8 + header_json(tensors, metadata).size();
}

SafetensorsWriter::SafetensorsWriter(std::filesystem::path path, std::vector<TensorSpec> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : path_(std::move(path)), tensors_(std::move(tensors)) {
  std::set<std::string_view> names;
  for (const TensorSpec& t : tensors_) {
    if (t.name == "__metadata__" || t.name.empty())
      throw Error(path_.string(), "invalid tensor name '" + t.name + "'");
    if (!names.insert(t.name).second)
      throw Error(path_.string(), "tensor '" + t.name + "' is listed twice");
    sizes_.push_back(t.size_bytes());
  }
  const std::string header = header_json(tensors_, metadata);

  temp_path_ = path_;
  temp_path_ += ".tmp" + std::to_string(::getpid());
  file_ = std::fopen(temp_path_.c_str(), "wb");
  if (!file_)
    throw Error(temp_path_.string(), std::string("cannot create file: ") + std::strerror(errno));
  unsigned char prefix[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i, n >>= 8) prefix[i] = static_cast<unsigned char>(n & 0xFF);
  if (std::fwrite(prefix, 1, 8, file_) != 8 ||
      std::fwrite(header.data(), 1, header.size(), file_) != header.size()) {
    const std::string problem = std::string("write failed: ") + std::strerror(errno);
    std::fclose(file_);  // the destructor does not run for a throwing constructor
    file_ = nullptr;
    std::error_code ignored;
    std::filesystem::remove(temp_path_, ignored);
    throw Error(temp_path_.string(), problem);
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  if (file_) {
    std::fclose(file_);
    std::error_code ignored;
    std::filesystem::remove(temp_path_, ignored);
  }
}

void SafetensorsWriter::write(std::string_view name, std::span<const std::byte> bytes) {
  if (!file_) throw Error(path_.string(), "write after finish()");
  // Empty tensors are complete without a write; step over those not named here.
  while (current_ < sizes_.size() && sizes_[current_] == 0 && tensors_[current_].name != name)
    ++current_;
  if (current_ >= tensors_.size() || tensors_[current_].name != name)
    throw Error(path_.string(),
                "tensor '" + std::string(name) + "' written out of order" +
                    (current_ < tensors_.size() ? " (expected '" + tensors_[current_].name + "')"
                                                : " (all tensors are complete)"));
  if (written_ + bytes.size() > sizes_[current_])
    throw Error(path_.string(), "tensor '" + std::string(name) + "' is given more than its " +
                                    std::to_string(sizes_[current_]) + " bytes");
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size())
    throw Error(temp_path_.string(), std::string("write failed: ") + std::strerror(errno));
  written_ += bytes.size();
  if (written_ == sizes_[current_]) {
    written_ = 0;
    ++current_;
  }
}

void SafetensorsWriter::finish() {
  if (!file_) throw Error(path_.string(), "finish() called twice");
  while (current_ < sizes_.size() && sizes_[current_] == 0) ++current_;
  if (current_ < tensors_.size())
    throw Error(path_.string(), "tensor '" + tensors_[current_].name +
                                    "' is incomplete: " + std::to_string(written_) + " of " +
                                    std::to_string(sizes_[current_]) + " bytes written");
  const bool flushed = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  const int saved_errno = errno;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  std::error_code ec;
  if (!flushed || !closed) {
    std::filesystem::remove(temp_path_, ec);
    throw Error(temp_path_.string(), std::string("write failed: ") + std::strerror(saved_errno));
  }
  std::filesystem::rename(temp_path_, path_, ec);
  if (ec) {
    std::filesystem::remove(temp_path_, ec);
    throw Error(path_.string(), "cannot rename temporary file into place: " + ec.message());
  }
}

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  for (const TensorData& t : tensors) specs.push_back(t.spec);
  SafetensorsWriter writer(path, specs, metadata);
  for (const TensorData& t : tensors) {
    if (t.bytes.size() != t.spec.size_bytes())
      throw Error(path.string(), "tensor '" + t.spec.name + "' has " +
                                     std::to_string(t.bytes.size()) + " bytes, its shape needs " +
                                     std::to_string(t.spec.size_bytes()));
    writer.write(t.spec.name, t.bytes);
  }
  writer.finish();
}

}  // namespace mxlens
