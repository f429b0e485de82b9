#pragma once
// The only public gpu header: plain C++, no CUDA types. The library always links; when it is
// built without CUDA (or no device is present) cuda_device_count() is 0, the reason says why,
// and every kernel function throws mxlens::Error("cuda", reason). Callers check the count
// and fall back to the CPU path, so nothing above gpu/ needs an #ifdef.
//
// MXFP4 kernels (algorithm.md §1) produce the same bits as core/mx's reference for the E8M0
// rules ocp_floor, fpquant and rceil, with rne or ggml tie rounding, including the Inf/NaN
// block marking described in core/mx/mxfp4.h. dqv2_log8 needs the whole tensor's scale
// range and is not offered here: it throws Error.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "core/mx/mxfp4.h"
#include "core/mx/quant_options.h"

namespace mxlens::gpu {

// --- devices ---------------------------------------------------------------------------
// Number of usable CUDA devices; 0 when built without CUDA or when the runtime finds none.
int cuda_device_count();
// Why there is no device: "built without CUDA" or "no CUDA device: <cudaGetErrorString>";
// empty when cuda_device_count() > 0.
std::string cuda_unavailable_reason();

struct CudaDeviceInfo {
  int index = 0;
  std::string name;  // "NVIDIA H100 80GB HBM3"
  int compute_major = 0, compute_minor = 0;
  int multiprocessors = 0;
  uint64_t total_memory_bytes = 0;
  uint64_t free_memory_bytes = 0;
  int runtime_version = 0;  // e.g. 13000
  int driver_version = 0;
};
// Throws Error("cuda", ...) when the device does not exist. Reading the free memory creates
// the device's primary context (and makes it current for this thread).
CudaDeviceInfo cuda_device_info(int device);
// One line for the GUI and the CLI: "CUDA: NVIDIA H100 80GB HBM3 (sm_90, 79.2 GiB, 132 SMs)"
// for device 0, or "CUDA unavailable: <reason>". Creates no context and allocates nothing.
std::string cuda_status();

// --- MXFP4, host pointers ---------------------------------------------------------------
// A row-major float32 matrix rows x cols with cols % 32 == 0 (x.size() == rows * cols), cut
// into rows * cols / 32 blocks along each row. These make `device` current for the calling
// thread, copy the inputs to it, run the kernel, copy the result back and wait for it.
// Wrong sizes throw Error("cuda mxfp4", ...).

// ggml block layout (Mxfp4Block: scale byte + 16 split-packed bytes), blocks.size() ==
// rows * cols / 32. Returns what dequantize needs (the scale rule).
TensorScale cuda_quantize_mxfp4(std::span<const float> x, int64_t rows, int64_t cols,
                                std::span<Mxfp4Block> blocks, const QuantOptions& options = {},
                                int device = 0);
// Pairs layout: packed.size() == rows * cols / 2 (byte j = code 2j | code 2j+1 << 4),
// scales.size() == rows * cols / 32, row-major [rows, cols / 32].
TensorScale cuda_quantize_mxfp4_pairs(std::span<const float> x, int64_t rows, int64_t cols,
                                      std::span<uint8_t> packed, std::span<uint8_t> scales,
                                      const QuantOptions& options = {}, int device = 0);
void cuda_dequantize_mxfp4(std::span<const Mxfp4Block> blocks, const TensorScale& tensor_scale,
                           int64_t rows, int64_t cols, std::span<float> out, int device = 0);
void cuda_dequantize_mxfp4_pairs(std::span<const uint8_t> packed, std::span<const uint8_t> scales,
                                 const TensorScale& tensor_scale, int64_t rows, int64_t cols,
                                 std::span<float> out, int device = 0);
// Fused quantize + dequantize (W4A4 fake quantization); equals core's fake_quantize_mxfp4
// bit for bit. out.size() == x.size(); out may be x itself.
void cuda_fake_quantize_mxfp4(std::span<const float> x, int64_t rows, int64_t cols,
                              std::span<float> out, const QuantOptions& options = {},
                              int device = 0);

// The activation path of a W4A4 site, fused (the kernel the CUDA forward runs): per row of a
// row-major rows x cols matrix, x ← x·blockdiag(R) with R 32×32 row-major (rotation32 empty:
// no rotation; then any cols > 0, a short last block quantized as zero-padded), then MXFP4 fake
// quantization per 32-block when `quant` is given (E8M0 rules only). The quantization equals
// core's fake_quantize_rows bit for bit on the rotated floats; the rotation uses fused
// multiply-adds in index order, so it may differ from Eigen's product in the last bits.
// out.size() == x.size() == rows * cols; out may be x.
void cuda_rotate_quantize_rows(std::span<const float> x, int64_t rows, int64_t cols,
                               std::span<const float> rotation32, const QuantOptions* quant,
                               std::span<float> out, int device = 0);

// --- MXFP4, device pointers -------------------------------------------------------------
// The same kernels on memory already on the current device, enqueued on `stream` (a
// cudaStream_t passed as void*; nullptr is the default stream) and not waited for. Float
// arrays must be 16-byte aligned and `packed` 2-byte aligned (cudaMalloc gives 256). Launch
// errors throw Error("cuda", ...).
namespace device {
void quantize_mxfp4(const float* x, int64_t rows, int64_t cols, Mxfp4Block* blocks,
                    const QuantOptions& options, void* stream = nullptr);
void quantize_mxfp4_pairs(const float* x, int64_t rows, int64_t cols, uint8_t* packed,
                          uint8_t* scales, const QuantOptions& options, void* stream = nullptr);
void dequantize_mxfp4(const Mxfp4Block* blocks, ScaleRule rule, int64_t rows, int64_t cols,
                      float* out, void* stream = nullptr);
void dequantize_mxfp4_pairs(const uint8_t* packed, const uint8_t* scales, ScaleRule rule,
                            int64_t rows, int64_t cols, float* out, void* stream = nullptr);
// out may equal x (in place).
void fake_quantize_mxfp4(const float* x, int64_t rows, int64_t cols, float* out,
                         const QuantOptions& options, void* stream = nullptr);
// cuda_rotate_quantize_rows in place on device memory; rotation32: 1024 floats on the device
// or null; quant null: rotation only. No alignment needed.
void rotate_quantize_rows(float* x, int64_t rows, int64_t cols, const float* rotation32,
                          const QuantOptions* quant, void* stream = nullptr);
}  // namespace device

}  // namespace mxlens::gpu
