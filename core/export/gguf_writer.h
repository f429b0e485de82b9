#pragma once
// A streaming GGUF v3 writer (formats.md §4.3). Declare everything first — metadata of any
// value type and the tensor infos — then open() writes the header and write() streams the
// tensors' data in declaration order (a tensor may arrive in several pieces), each starting
// at a multiple of the alignment with zero padding between; finish() pads the last tensor,
// flushes, fsyncs and closes. The exact file size is known before anything is written
// (file_size()), so a caller can check free space first.
//
// Shapes are given outermost-first as Hugging Face stores them ([out, in] for a linear) and
// written reversed (ggml's innermost-first dims). The alignment is general.alignment when that
// key was added (a u32 power of two), else 32.
//
// Errors are Error(source, problem), the source being the file once open() was called and
// "gguf" before.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/io/gguf_format.h"

namespace mxlens {

class GgufWriter {
 public:
  GgufWriter() = default;
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;
  // Closes the file when finish() was not reached; the partial file is the caller's to
  // remove (export writes through StagedOutput, which does).
  ~GgufWriter();

  // Metadata, in the order added. Keys must be non-empty, shorter than 64 KiB and unique.
  void add(std::string key, GgufValue value);
  void add_string(std::string key, std::string value) {
    add(std::move(key), GgufValue::string(std::move(value)));
  }
  void add_u32(std::string key, uint32_t value) { add(std::move(key), GgufValue::u32(value)); }
  void add_i32(std::string key, int32_t value) { add(std::move(key), GgufValue::i32(value)); }
  void add_u64(std::string key, uint64_t value) { add(std::move(key), GgufValue::u64(value)); }
  void add_f32(std::string key, float value) { add(std::move(key), GgufValue::f32(value)); }
  void add_bool(std::string key, bool value) { add(std::move(key), GgufValue::boolean(value)); }
  void add_strings(std::string key, const std::vector<std::string>& values) {
    add(std::move(key), GgufValue::strings(values));
  }
  void add_f32s(std::string key, const std::vector<float>& values) {
    add(std::move(key), GgufValue::f32s(values));
  }
  void add_i32s(std::string key, const std::vector<int32_t>& values) {
    add(std::move(key), GgufValue::i32s(values));
  }

  // A tensor info: name 1..63 bytes and unique, 1..4 dims all ≥ 1, the innermost (last of
  // `shape`) a multiple of the type's block. Returns its index.
  size_t add_tensor(std::string name, std::vector<uint64_t> shape, GgmlType type);

  uint32_t alignment() const;
  size_t tensor_count() const { return tensors_.size(); }
  const std::string& tensor_name(size_t i) const { return tensors_[i].name; }
  uint64_t tensor_bytes(size_t i) const { return tensors_[i].bytes; }
  uint64_t tensor_offset(size_t i) const;  // relative to the data section
  // The serialized header including the padding to the alignment (nothing may be added once
  // open() was called).
  std::vector<uint8_t> header() const;
  uint64_t header_size() const;
  // header_size() plus every tensor's data padded to the alignment: the bytes finish() leaves.
  uint64_t file_size() const;

  // Creates (truncates) `file` and writes the header.
  void open(const std::filesystem::path& file);
  // Appends bytes to tensor `name`, which must be the tensor being written or, when that one
  // is complete, the next one declared.
  void write(std::string_view name, std::span<const std::byte> bytes);
  // Every tensor must be complete. Flushes, fsyncs and closes.
  void finish();

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> shape;  // outermost first
    GgmlType type;
    uint64_t bytes = 0;
  };
  std::string source() const;
  void put(const void* data, size_t n);
  void pad_to_alignment();

  std::vector<std::pair<std::string, GgufValue>> kvs_;
  std::vector<Tensor> tensors_;
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
  bool finished_ = false;
  size_t current_ = 0;     // tensor being written
  uint64_t written_ = 0;   // bytes of the current tensor so far
  uint64_t position_ = 0;  // bytes written to the file
};

}  // namespace mxlens
