// Host side of the CUDA backend: device queries and the MXFP4 entry points of
// mxlens/gpu/cuda.h (argument checks, buffers, copies, launches).
#include <cuda_runtime.h>

#include <cstdio>
#include <string>
#include <utility>

#include "core/util/error.h"
#include "mxfp4_kernels.h"
#include "mxlens/gpu/cuda.h"

namespace mxlens::gpu {
namespace {

constexpr const char* kSource = "cuda";
constexpr const char* kMxfp4Source = "cuda mxfp4";
constexpr int64_t kBlockSize = Mxfp4Block::kSize;

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw Error(kSource, std::string(what) + ": " + cudaGetErrorString(status));
}

// Owns one device allocation; freed on scope exit, so an exception leaks nothing.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t size_bytes) : size_bytes_(size_bytes) {
    if (size_bytes_ > 0)
      check(cudaMalloc(&ptr_, size_bytes_),
            ("cudaMalloc of " + std::to_string(size_bytes_) + " bytes").c_str());
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  void upload(const void* host) {
    if (size_bytes_ > 0)
      check(cudaMemcpy(ptr_, host, size_bytes_, cudaMemcpyHostToDevice), "cudaMemcpy to device");
  }
  void download(void* host) const {
    if (size_bytes_ > 0)
      check(cudaMemcpy(host, ptr_, size_bytes_, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
  }

 private:
  void* ptr_ = nullptr;
  size_t size_bytes_;
};

// Validates the shape and returns the number of 32-blocks.
int64_t block_count(int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0)
    throw Error(kMxfp4Source,
                "negative shape " + std::to_string(rows) + " x " + std::to_string(cols));
  if (cols % kBlockSize != 0)
    throw Error(kMxfp4Source,
                "cols = " + std::to_string(cols) + " is not a multiple of the MXFP4 block size 32");
  return rows * (cols / kBlockSize);
}

void expect_size(size_t got, int64_t want, const char* what) {
  if (static_cast<int64_t>(got) != want)
    throw Error(kMxfp4Source, std::string(what) + " holds " + std::to_string(got) +
                                  " elements, the shape needs " + std::to_string(want));
}

void expect_e8m0_rule(ScaleRule rule) {
  if (rule == ScaleRule::dqv2_log8)
    throw Error(kMxfp4Source,
                "scale rule dqv2_log8 is not supported by the CUDA backend (it needs the "
                "whole tensor's scale range); use the CPU path");
}

void expect_aligned(const void* ptr, size_t alignment, const char* what) {
  if (reinterpret_cast<uintptr_t>(ptr) % alignment != 0)
    throw Error(kMxfp4Source,
                std::string(what) + " is not " + std::to_string(alignment) + "-byte aligned");
}

void expect_device(int device) {
  const int count = cuda_device_count();
  if (count == 0) throw Error(kSource, cuda_unavailable_reason());
  if (device < 0 || device >= count)
    throw Error(kSource, "device " + std::to_string(device) + " does not exist (" +
                             std::to_string(count) + " present)");
}

// Makes `device` current for this host thread (the CUDA runtime keeps that per thread).
void use_device(int device) {
  expect_device(device);
  check(cudaSetDevice(device), "cudaSetDevice");
}

int current_multiprocessors() {
  int device = 0;
  int sms = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
        "cudaDeviceGetAttribute");
  return sms;
}

void check_launch(const char* kernel) {
  check(cudaGetLastError(), kernel);
}

void finish(const char* kernel) {
  check_launch(kernel);
  check(cudaDeviceSynchronize(), kernel);
}

cudaStream_t as_stream(void* stream) {
  return static_cast<cudaStream_t>(stream);
}

}  // namespace

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return count;
}

std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return std::string("no CUDA device: ") + cudaGetErrorString(status);
  }
  if (count == 0) return "no CUDA device: the runtime reports 0 devices";
  return {};
}

CudaDeviceInfo cuda_device_info(int device) {
  expect_device(device);
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  CudaDeviceInfo info;
  info.index = device;
  info.name = prop.name;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  info.total_memory_bytes = prop.totalGlobalMem;
  // Free memory is a property of a context: this creates the device's primary context.
  use_device(device);
  size_t free_bytes = 0;
  size_t total_bytes = 0;
  check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  info.free_memory_bytes = free_bytes;
  check(cudaRuntimeGetVersion(&info.runtime_version), "cudaRuntimeGetVersion");
  check(cudaDriverGetVersion(&info.driver_version), "cudaDriverGetVersion");
  return info;
}

std::string cuda_status() {
  if (cuda_device_count() == 0) return "CUDA unavailable: " + cuda_unavailable_reason();
  // Properties only: no context is created (and no device memory taken) for a status line.
  cudaDeviceProp prop{};
  const cudaError_t status = cudaGetDeviceProperties(&prop, 0);
  if (status != cudaSuccess)
    return std::string("CUDA unavailable: cudaGetDeviceProperties: ") + cudaGetErrorString(status);
  char details[96];
  std::snprintf(details, sizeof details, " (sm_%d%d, %.1f GiB, %d SMs)", prop.major, prop.minor,
                static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0),
                prop.multiProcessorCount);
  return std::string("CUDA: ") + prop.name + details;
}

// --- device pointers ---------------------------------------------------------------------

namespace device {

void quantize_mxfp4(const float* x, int64_t rows, int64_t cols, Mxfp4Block* blocks,
                    const QuantOptions& options, void* stream) {
  const int64_t n_blocks = block_count(rows, cols);
  expect_e8m0_rule(options.scale_rule);
  expect_aligned(x, 16, "x");
  detail::launch_quantize_ggml(x, n_blocks, options.scale_rule, options.rounding,
                               reinterpret_cast<uint8_t*>(blocks), current_multiprocessors(),
                               as_stream(stream));
  check_launch("quantize_mxfp4 kernel");
}

void quantize_mxfp4_pairs(const float* x, int64_t rows, int64_t cols, uint8_t* packed,
                          uint8_t* scales, const QuantOptions& options, void* stream) {
  const int64_t n_blocks = block_count(rows, cols);
  expect_e8m0_rule(options.scale_rule);
  expect_aligned(x, 16, "x");
  expect_aligned(packed, 2, "packed");
  detail::launch_quantize_pairs(x, n_blocks, options.scale_rule, options.rounding, scales, packed,
                                current_multiprocessors(), as_stream(stream));
  check_launch("quantize_mxfp4_pairs kernel");
}

void dequantize_mxfp4(const Mxfp4Block* blocks, ScaleRule rule, int64_t rows, int64_t cols,
                      float* out, void* stream) {
  const int64_t n_blocks = block_count(rows, cols);
  expect_e8m0_rule(rule);
  expect_aligned(out, 16, "out");
  detail::launch_dequantize_ggml(reinterpret_cast<const uint8_t*>(blocks), n_blocks, rule, out,
                                 current_multiprocessors(), as_stream(stream));
  check_launch("dequantize_mxfp4 kernel");
}

void dequantize_mxfp4_pairs(const uint8_t* packed, const uint8_t* scales, ScaleRule rule,
                            int64_t rows, int64_t cols, float* out, void* stream) {
  const int64_t n_blocks = block_count(rows, cols);
  expect_e8m0_rule(rule);
  expect_aligned(packed, 2, "packed");
  expect_aligned(out, 16, "out");
  detail::launch_dequantize_pairs(scales, packed, n_blocks, rule, out, current_multiprocessors(),
                                  as_stream(stream));
  check_launch("dequantize_mxfp4_pairs kernel");
}

void fake_quantize_mxfp4(const float* x, int64_t rows, int64_t cols, float* out,
                         const QuantOptions& options, void* stream) {
  const int64_t n_blocks = block_count(rows, cols);
  expect_e8m0_rule(options.scale_rule);
  expect_aligned(x, 16, "x");
  expect_aligned(out, 16, "out");
  detail::launch_fake_quant(x, n_blocks, options.scale_rule, options.rounding, out,
                            current_multiprocessors(), as_stream(stream));
  check_launch("fake_quantize_mxfp4 kernel");
}

}  // namespace device

// --- host pointers -----------------------------------------------------------------------

TensorScale cuda_quantize_mxfp4(std::span<const float> x, int64_t rows, int64_t cols,
                                std::span<Mxfp4Block> blocks, const QuantOptions& options,
                                int device) {
  const int64_t n_blocks = block_count(rows, cols);
  expect_size(x.size(), rows * cols, "x");
  expect_size(blocks.size(), n_blocks, "blocks");
  expect_e8m0_rule(options.scale_rule);
  use_device(device);
  DeviceBuffer d_x(x.size_bytes());
  DeviceBuffer d_blocks(blocks.size_bytes());
  d_x.upload(x.data());
  device::quantize_mxfp4(d_x.as<float>(), rows, cols, d_blocks.as<Mxfp4Block>(), options);
  finish("quantize_mxfp4 kernel");
  d_blocks.download(blocks.data());
  return TensorScale{.scale_rule = options.scale_rule};
}

TensorScale cuda_quantize_mxfp4_pairs(std::span<const float> x, int64_t rows, int64_t cols,
                                      std::span<uint8_t> packed, std::span<uint8_t> scales,
                                      const QuantOptions& options, int device) {
  const int64_t n_blocks = block_count(rows, cols);
  expect_size(x.size(), rows * cols, "x");
  expect_size(packed.size(), rows * cols / 2, "packed");
  expect_size(scales.size(), n_blocks, "scales");
  expect_e8m0_rule(options.scale_rule);
  use_device(device);
  DeviceBuffer d_x(x.size_bytes());
  DeviceBuffer d_packed(packed.size_bytes());
  DeviceBuffer d_scales(scales.size_bytes());
  d_x.upload(x.data());
  device::quantize_mxfp4_pairs(d_x.as<float>(), rows, cols, d_packed.as<uint8_t>(),
                               d_scales.as<uint8_t>(), options);
  finish("quantize_mxfp4_pairs kernel");
  d_packed.download(packed.data());
  d_scales.download(scales.data());
  return TensorScale{.scale_rule = options.scale_rule};
}

void cuda_dequantize_mxfp4(std::span<const Mxfp4Block> blocks, const TensorScale& tensor_scale,
                           int64_t rows, int64_t cols, std::span<float> out, int device) {
  const int64_t n_blocks = block_count(rows, cols);
  expect_size(blocks.size(), n_blocks, "blocks");
  expect_size(out.size(), rows * cols, "out");
  expect_e8m0_rule(tensor_scale.scale_rule);
  use_device(device);
  DeviceBuffer d_blocks(blocks.size_bytes());
  DeviceBuffer d_out(out.size_bytes());
  d_blocks.upload(blocks.data());
  device::dequantize_mxfp4(d_blocks.as<Mxfp4Block>(), tensor_scale.scale_rule, rows, cols,
                           d_out.as<float>());
  finish("dequantize_mxfp4 kernel");
  d_out.download(out.data());
}

void cuda_dequantize_mxfp4_pairs(std::span<const uint8_t> packed, std::span<const uint8_t> scales,
                                 const TensorScale& tensor_scale, int64_t rows, int64_t cols,
                                 std::span<float> out, int device) {
  const int64_t n_blocks = block_count(rows, cols);
  expect_size(packed.size(), rows * cols / 2, "packed");
  expect_size(scales.size(), n_blocks, "scales");
  expect_size(out.size(), rows * cols, "out");
  expect_e8m0_rule(tensor_scale.scale_rule);
  use_device(device);
  DeviceBuffer d_packed(packed.size_bytes());
  DeviceBuffer d_scales(scales.size_bytes());
  DeviceBuffer d_out(out.size_bytes());
  d_packed.upload(packed.data());
  d_scales.upload(scales.data());
  device::dequantize_mxfp4_pairs(d_packed.as<uint8_t>(), d_scales.as<uint8_t>(),
                                 tensor_scale.scale_rule, rows, cols, d_out.as<float>());
  finish("dequantize_mxfp4_pairs kernel");
  d_out.download(out.data());
}

void cuda_fake_quantize_mxfp4(std::span<const float> x, int64_t rows, int64_t cols,
                              std::span<float> out, const QuantOptions& options, int device) {
  block_count(rows, cols);
  expect_size(x.size(), rows * cols, "x");
  expect_size(out.size(), rows * cols, "out");
  expect_e8m0_rule(options.scale_rule);
  use_device(device);
  DeviceBuffer d_x(x.size_bytes());
  d_x.upload(x.data());
  device::fake_quantize_mxfp4(d_x.as<float>(), rows, cols, d_x.as<float>(), options);
  finish("fake_quantize_mxfp4 kernel");
  d_x.download(out.data());
}

}  // namespace mxlens::gpu
