#pragma once
// Thin checked wrappers over the HDF5 C API for core/io (private to core: includes hdf5.h,
// which only mxlens_core sees). Every failure throws Error(object path, problem) with HDF5's
// own message when it gave one; callers re-label it with the file. Not thread-safe: all
// calls of one file happen on one thread (formats.md §5.2).
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mxlens::h5 {

// Turns off HDF5's automatic error printing for the scope (restores the previous handler).
class QuietErrors {
 public:
  QuietErrors();
  ~QuietErrors();
  QuietErrors(const QuietErrors&) = delete;
  QuietErrors& operator=(const QuietErrors&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
  bool saved_ = false;
};

// Owns one HDF5 identifier of any kind (file, group, dataset, attribute, space, type, list).
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  Handle(Handle&& o) noexcept : id_(o.id_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t id() const { return id_; }
  operator hid_t() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();
  // Closes now and reports failure (a file close writes metadata and can fail).
  void close(std::string_view what);

 private:
  hid_t id_ = H5I_INVALID_HID;
};

// The innermost message on HDF5's error stack (empty when none).
std::string last_error();
// Throws Error(where, what + HDF5's message).
[[noreturn]] void fail(const std::string& where, const std::string& what);
// The path of an object in its file ("/layers/L000"), for messages.
std::string path_of(hid_t obj);
std::string child_path(hid_t parent, std::string_view name);

Handle create_group(hid_t parent, std::string_view name);
Handle open_group(hid_t parent, std::string_view name);  // Error when missing
bool has_child(hid_t parent, std::string_view name);
bool has_attr(hid_t obj, std::string_view name);

// Types of numeric data: the native memory type and the little-endian file type.
template <typename T>
struct Type;
#define MXLENS_H5_TYPE(T, MEM, FILE)     \
  template <>                            \
  struct Type<T> {                       \
    static hid_t mem() { return MEM; }   \
    static hid_t file() { return FILE; } \
  };
MXLENS_H5_TYPE(uint8_t, H5T_NATIVE_UINT8, H5T_STD_U8LE)
MXLENS_H5_TYPE(int32_t, H5T_NATIVE_INT32, H5T_STD_I32LE)
MXLENS_H5_TYPE(uint32_t, H5T_NATIVE_UINT32, H5T_STD_U32LE)
MXLENS_H5_TYPE(int64_t, H5T_NATIVE_INT64, H5T_STD_I64LE)
MXLENS_H5_TYPE(uint64_t, H5T_NATIVE_UINT64, H5T_STD_U64LE)
MXLENS_H5_TYPE(float, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE)
MXLENS_H5_TYPE(double, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE)
#undef MXLENS_H5_TYPE

// Scalar attributes. Reading checks the stored type: same class, size and signedness as T
// (so a float is never silently narrowed).
void write_attr_raw(hid_t obj, std::string_view name, hid_t file_type, hid_t mem_type,
                    const void* value);
void read_attr_raw(hid_t obj, std::string_view name, hid_t expected_file_type, hid_t mem_type,
                   void* value);
template <typename T>
void write_attr(hid_t obj, std::string_view name, T value) {
  write_attr_raw(obj, name, Type<T>::file(), Type<T>::mem(), &value);
}
template <typename T>
T read_attr(hid_t obj, std::string_view name) {
  T value{};
  read_attr_raw(obj, name, Type<T>::file(), Type<T>::mem(), &value);
  return value;
}

// Variable-length UTF-8 strings (no NUL bytes inside; Error otherwise).
void write_attr_string(hid_t obj, std::string_view name, std::string_view value);
std::string read_attr_string(hid_t obj, std::string_view name);
void write_string_dataset(hid_t parent, std::string_view name, std::string_view value);
std::string read_string_dataset(hid_t parent, std::string_view name);

enum class Storage {
  plain,       // contiguous
  compressed,  // chunked, shuffle + deflate 4 (where the filters are available)
  auto_size,   // compressed from 64 KiB of data on, plain below
};

void write_dataset_raw(hid_t parent, std::string_view name, hid_t file_type, hid_t mem_type,
                       size_t elem_size, const void* data, const std::vector<uint64_t>& dims,
                       Storage storage);
// Opens a dataset of any rank after checking its type against `expected_file_type` (class,
// size, signedness); `dims` receives its shape. read_all reads every element into `dst`.
Handle open_dataset(hid_t parent, std::string_view name, hid_t expected_file_type,
                    std::vector<uint64_t>& dims);
void read_all(hid_t dataset, hid_t mem_type, void* dst);

template <typename T>
void write_dataset(hid_t parent, std::string_view name, const T* data,
                   const std::vector<uint64_t>& dims, Storage storage = Storage::auto_size) {
  write_dataset_raw(parent, name, Type<T>::file(), Type<T>::mem(), sizeof(T), data, dims, storage);
}
template <typename T>
void write_vector(hid_t parent, std::string_view name, const std::vector<T>& v,
                  Storage storage = Storage::auto_size) {
  write_dataset(parent, name, v.data(), {uint64_t(v.size())}, storage);
}

template <typename T>
std::vector<T> read_dataset(hid_t parent, std::string_view name, std::vector<uint64_t>& dims) {
  const Handle d = open_dataset(parent, name, Type<T>::file(), dims);
  uint64_t n = 1;
  for (uint64_t x : dims) n *= x;
  std::vector<T> out(static_cast<size_t>(n));
  if (n > 0) read_all(d, Type<T>::mem(), out.data());
  return out;
}
// A dataset that must have rank 1 (Error otherwise).
template <typename T>
std::vector<T> read_vector(hid_t parent, std::string_view name) {
  std::vector<uint64_t> dims;
  std::vector<T> v = read_dataset<T>(parent, name, dims);
  if (dims.size() != 1)
    fail(child_path(parent, name),
         "expected a 1-D dataset, found rank " + std::to_string(dims.size()));
  return v;
}

}  // namespace mxlens::h5
