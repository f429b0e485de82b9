#pragma once
// Host helpers shared by the CUDA translation units (private to gpu/src): error checks that
// throw mxlens::Error("cuda", ...), and an owning device array. Included only by .cu files.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

#include "core/util/error.h"

namespace mxlens::gpu::detail {

inline void check_cuda(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess)
    throw Error("cuda",
                what + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
}

// After a launch: a bad configuration shows up here; faults in the kernel show up at the next
// synchronization, which is checked as well.
inline void check_launch(const char* kernel) {
  check_cuda(cudaGetLastError(), std::string("launch of ") + kernel);
}

inline double mib(size_t bytes) {
  return static_cast<double>(bytes) / (1024.0 * 1024.0);
}

// One device allocation of n elements of T (n may be 0: no allocation, null pointer); freed by
// the destructor, so an exception leaks nothing. Movable, not copyable.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(size_t n, const char* what) { allocate(n, what); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), n_(std::exchange(other.n_, 0)) {}
  DeviceArray& operator=(DeviceArray&& other) noexcept {
    if (this != &other) {
      release();
      ptr_ = std::exchange(other.ptr_, nullptr);
      n_ = std::exchange(other.n_, 0);
    }
    return *this;
  }
  ~DeviceArray() { release(); }

  // Replaces the allocation with one of n elements (contents undefined).
  void allocate(size_t n, const char* what) {
    release();
    if (n == 0) return;
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, n * sizeof(T));
    if (status != cudaSuccess) {
      cudaGetLastError();  // an out-of-memory error is not sticky; clear it
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      char line[160];
      std::snprintf(line, sizeof line, "cudaMalloc of %.1f MiB for %s failed (%s); %.1f MiB free",
                    mib(n * sizeof(T)), what, cudaGetErrorName(status), mib(free_bytes));
      throw Error("cuda", line);
    }
    ptr_ = static_cast<T*>(p);
    n_ = n;
  }
  // Grows to at least n elements (contents are not kept).
  void ensure(size_t n, const char* what) {
    if (n > n_) allocate(n, what);
  }
  void release() noexcept {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    n_ = 0;
  }

  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  explicit operator bool() const { return ptr_ != nullptr; }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

// Copies n elements from host to device on `stream` and waits, so the host memory may be
// reused as soon as this returns.
template <class T>
void upload(T* device, const T* host, size_t n, cudaStream_t stream, const char* what) {
  if (n == 0) return;
  check_cuda(cudaMemcpyAsync(device, host, n * sizeof(T), cudaMemcpyHostToDevice, stream),
             std::string("copy of ") + what + " to the device");
  check_cuda(cudaStreamSynchronize(stream), std::string("copy of ") + what + " to the device");
}

}  // namespace mxlens::gpu::detail
