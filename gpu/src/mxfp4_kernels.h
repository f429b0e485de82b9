#pragma once
// Kernel launchers for MXFP4 (private to gpu/src; the public API is mxlens/gpu/cuda.h).
// All pointers are device pointers; float arrays must be 16-byte aligned (float4 access)
// and pair-code arrays 2-byte aligned. n_blocks = rows * cols / 32.
#include <cuda_runtime.h>

#include <cstdint>

#include "mxfp4_block.cuh"

namespace mxlens::gpu::detail {

constexpr int64_t kGgmlBlockBytes = 17;  // one E8M0 byte + 16 bytes of nibbles

void launch_quantize_pairs(const float* x, int64_t n_blocks, ScaleRule rule, Rounding rounding,
                           uint8_t* scales, uint8_t* codes, int multiprocessors,
                           cudaStream_t stream);
void launch_quantize_ggml(const float* x, int64_t n_blocks, ScaleRule rule, Rounding rounding,
                          uint8_t* blocks, int multiprocessors, cudaStream_t stream);
void launch_fake_quant(const float* x, int64_t n_blocks, ScaleRule rule, Rounding rounding,
                       float* y, int multiprocessors, cudaStream_t stream);
void launch_dequantize_pairs(const uint8_t* scales, const uint8_t* codes, int64_t n_blocks,
                             ScaleRule rule, float* y, int multiprocessors, cudaStream_t stream);
void launch_dequantize_ggml(const uint8_t* blocks, int64_t n_blocks, ScaleRule rule, float* y,
                            int multiprocessors, cudaStream_t stream);

}  // namespace mxlens::gpu::detail
