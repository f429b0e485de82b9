// MXFP4 quantize / dequantize / fake-quant kernels (algorithm.md §1), bit-exact with the
// scalar reference in core/mx/mxfp4_ref.cpp.
//
// Layout of the work: a 32-element block is handled by 8 consecutive lanes, each holding 4
// consecutive elements (one float4), so a warp covers 4 blocks = 512 contiguous bytes and
// every load and store of the warp is coalesced. The block max is a 3-step shuffle
// reduction inside the 8-lane group. The kernels are memory-bound; there is no shared memory.
//
// The per-element rules live in mxfp4_block.cuh (host and device). The target is compiled
// with --fmad=false -prec-div=true -ftz=false, so every float operation is the single IEEE
// rounding the reference performs.
#include <cstdint>

#include "mxfp4_block.cuh"
#include "mxfp4_kernels.h"

namespace mxlens::gpu::detail {
namespace {

constexpr int kBlockSize = 32;
constexpr int kLanesPerBlock = 8;
constexpr int kBlocksPerWarp = 32 / kLanesPerBlock;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kThreadsPerCtaBlock = 256;

__device__ __forceinline__ uint32_t abs_bits(float x) {
  return __float_as_uint(x) & 0x7fffffffu;
}

// Max of |x| bits over the 8 lanes of this lane's block group (all 32 lanes must call).
__device__ __forceinline__ uint32_t group_max(uint32_t bits) {
  bits = max(bits, __shfl_xor_sync(kFullMask, bits, 4));
  bits = max(bits, __shfl_xor_sync(kFullMask, bits, 2));
  bits = max(bits, __shfl_xor_sync(kFullMask, bits, 1));
  return bits;
}

struct LaneBlock {
  int64_t block;  // which 32-block this lane works on
  int lane;       // 0..7 inside the block
  bool valid;
};

// Each warp takes groups of 4 consecutive blocks, grid-stride. The loop bound is uniform
// across the warp, so every shuffle inside the body sees all 32 lanes.
__device__ __forceinline__ int64_t first_group() {
  return (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
}
__device__ __forceinline__ int64_t group_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x / 32;
}
__device__ __forceinline__ LaneBlock lane_block(int64_t group, int64_t n_blocks) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int64_t block = group * kBlocksPerWarp + lane / kLanesPerBlock;
  return {block, lane % kLanesPerBlock, block < n_blocks};
}

__device__ __forceinline__ float4 load_lane(const float* x, const LaneBlock& lb) {
  if (!lb.valid) return make_float4(0.f, 0.f, 0.f, 0.f);
  return reinterpret_cast<const float4*>(x + lb.block * kBlockSize)[lb.lane];
}

struct LaneCodes {
  uint32_t codes;  // 4 nibbles, element 4*lane + i in nibble i
  BlockScale scale;
};

__device__ __forceinline__ LaneCodes quantize_lane(float4 x, ScaleRule rule, Rounding rounding) {
  uint32_t amax = max(max(abs_bits(x.x), abs_bits(x.y)), max(abs_bits(x.z), abs_bits(x.w)));
  amax = group_max(amax);
  const BlockScale s = block_scale(amax, rule);
  if (s.e8m0 == kE8m0Nan) return {0, s};  // Inf/NaN in the block: NaN scale, codes 0
  const uint32_t codes =
      encode_e2m1(x.x, s.scale, rounding) | (encode_e2m1(x.y, s.scale, rounding) << 4) |
      (encode_e2m1(x.z, s.scale, rounding) << 8) | (encode_e2m1(x.w, s.scale, rounding) << 12);
  return {codes, s};
}

__global__ void quantize_pairs_kernel(const float* __restrict__ x, int64_t n_blocks, ScaleRule rule,
                                      Rounding rounding, uint8_t* __restrict__ scales,
                                      uint8_t* __restrict__ codes) {
  for (int64_t group = first_group(); group * kBlocksPerWarp < n_blocks; group += group_stride()) {
    const LaneBlock lb = lane_block(group, n_blocks);
    const LaneCodes q = quantize_lane(load_lane(x, lb), rule, rounding);
    if (lb.valid) {
      // Byte j = element 2j (low nibble) | element 2j+1 (high nibble): the 4 nibbles in
      // element order are exactly two such bytes, little-endian.
      reinterpret_cast<uint16_t*>(codes + lb.block * (kBlockSize / 2))[lb.lane] =
          static_cast<uint16_t>(q.codes);
      if (lb.lane == 0) scales[lb.block] = q.scale.e8m0;
    }
  }
}

__global__ void quantize_ggml_kernel(const float* __restrict__ x, int64_t n_blocks, ScaleRule rule,
                                     Rounding rounding, uint8_t* __restrict__ blocks) {
  for (int64_t group = first_group(); group * kBlocksPerWarp < n_blocks; group += group_stride()) {
    const LaneBlock lb = lane_block(group, n_blocks);
    const LaneCodes q = quantize_lane(load_lane(x, lb), rule, rounding);
    // Byte 1+j holds element j (low) and element j+16 (high); lanes 4..7 hold j+16.
    const uint32_t high = __shfl_down_sync(kFullMask, q.codes, 4);
    if (lb.valid && lb.lane < 4) {
      uint8_t* out = blocks + lb.block * kGgmlBlockBytes;
      if (lb.lane == 0) out[0] = q.scale.e8m0;
      for (int i = 0; i < 4; ++i) {
        out[1 + 4 * lb.lane + i] =
            static_cast<uint8_t>(((q.codes >> (4 * i)) & 0xFu) | (((high >> (4 * i)) & 0xFu) << 4));
      }
    }
  }
}

// Four dequantized elements. A NaN scale (E8M0 0xFF: the block held Inf/NaN) gives the
// reference's quiet NaN for all of them, not the device's canonical NaN.
__device__ __forceinline__ float4 dequant_lane(uint32_t codes, float scale) {
  if (scale != scale) {
    const float nan = bits_float(kQuietNanBits);
    return make_float4(nan, nan, nan, nan);
  }
  return make_float4(e2m1_value(codes & 0xFu) * scale, e2m1_value((codes >> 4) & 0xFu) * scale,
                     e2m1_value((codes >> 8) & 0xFu) * scale,
                     e2m1_value((codes >> 12) & 0xFu) * scale);
}

// x and y may be the same array: each lane reads its float4 before writing it.
__global__ void fake_quant_kernel(const float* x, int64_t n_blocks, ScaleRule rule,
                                  Rounding rounding, float* y) {
  for (int64_t group = first_group(); group * kBlocksPerWarp < n_blocks; group += group_stride()) {
    const LaneBlock lb = lane_block(group, n_blocks);
    const LaneCodes q = quantize_lane(load_lane(x, lb), rule, rounding);
    if (lb.valid) {
      reinterpret_cast<float4*>(y + lb.block * kBlockSize)[lb.lane] =
          dequant_lane(q.codes, q.scale.scale);
    }
  }
}

__global__ void dequantize_pairs_kernel(const uint8_t* __restrict__ scales,
                                        const uint8_t* __restrict__ codes, int64_t n_blocks,
                                        ScaleRule rule, float* __restrict__ y) {
  for (int64_t group = first_group(); group * kBlocksPerWarp < n_blocks; group += group_stride()) {
    const LaneBlock lb = lane_block(group, n_blocks);
    if (lb.valid) {
      const uint32_t lane_codes =
          reinterpret_cast<const uint16_t*>(codes + lb.block * (kBlockSize / 2))[lb.lane];
      const float scale = stored_scale(scales[lb.block], rule);
      reinterpret_cast<float4*>(y + lb.block * kBlockSize)[lb.lane] =
          dequant_lane(lane_codes, scale);
    }
  }
}

__global__ void dequantize_ggml_kernel(const uint8_t* __restrict__ blocks, int64_t n_blocks,
                                       ScaleRule rule, float* __restrict__ y) {
  for (int64_t group = first_group(); group * kBlocksPerWarp < n_blocks; group += group_stride()) {
    const LaneBlock lb = lane_block(group, n_blocks);
    if (lb.valid) {
      const uint8_t* in = blocks + lb.block * kGgmlBlockBytes;
      const int shift = lb.lane < 4 ? 0 : 4;  // lanes 4..7 read the high nibbles
      const int first = 1 + 4 * (lb.lane % 4);
      uint32_t lane_codes = 0;
      for (int i = 0; i < 4; ++i) lane_codes |= ((in[first + i] >> shift) & 0xFu) << (4 * i);
      reinterpret_cast<float4*>(y + lb.block * kBlockSize)[lb.lane] =
          dequant_lane(lane_codes, stored_scale(in[0], rule));
    }
  }
}

// Enough CTAs to fill the device a few times over; the kernels loop over the rest.
unsigned grid_for(int64_t n_blocks, int multiprocessors) {
  const int64_t warps = (n_blocks + kBlocksPerWarp - 1) / kBlocksPerWarp;
  const int64_t ctas = (warps * 32 + kThreadsPerCtaBlock - 1) / kThreadsPerCtaBlock;
  const int64_t cap = static_cast<int64_t>(multiprocessors > 0 ? multiprocessors : 1) * 16;
  return static_cast<unsigned>(ctas < 1 ? 1 : (ctas < cap ? ctas : cap));
}

}  // namespace

void launch_quantize_pairs(const float* x, int64_t n_blocks, ScaleRule rule, Rounding rounding,
                           uint8_t* scales, uint8_t* codes, int multiprocessors,
                           cudaStream_t stream) {
  if (n_blocks == 0) return;
  quantize_pairs_kernel<<<grid_for(n_blocks, multiprocessors), kThreadsPerCtaBlock, 0, stream>>>(
      x, n_blocks, rule, rounding, scales, codes);
}

void launch_quantize_ggml(const float* x, int64_t n_blocks, ScaleRule rule, Rounding rounding,
                          uint8_t* blocks, int multiprocessors, cudaStream_t stream) {
  if (n_blocks == 0) return;
  quantize_ggml_kernel<<<grid_for(n_blocks, multiprocessors), kThreadsPerCtaBlock, 0, stream>>>(
      x, n_blocks, rule, rounding, blocks);
}

void launch_fake_quant(const float* x, int64_t n_blocks, ScaleRule rule, Rounding rounding,
                       float* y, int multiprocessors, cudaStream_t stream) {
  if (n_blocks == 0) return;
  fake_quant_kernel<<<grid_for(n_blocks, multiprocessors), kThreadsPerCtaBlock, 0, stream>>>(
      x, n_blocks, rule, rounding, y);
}

void launch_dequantize_pairs(const uint8_t* scales, const uint8_t* codes, int64_t n_blocks,
                             ScaleRule rule, float* y, int multiprocessors, cudaStream_t stream) {
  if (n_blocks == 0) return;
  dequantize_pairs_kernel<<<grid_for(n_blocks, multiprocessors), kThreadsPerCtaBlock, 0, stream>>>(
      scales, codes, n_blocks, rule, y);
}

void launch_dequantize_ggml(const uint8_t* blocks, int64_t n_blocks, ScaleRule rule, float* y,
                            int multiprocessors, cudaStream_t stream) {
  if (n_blocks == 0) return;
  dequantize_ggml_kernel<<<grid_for(n_blocks, multiprocessors), kThreadsPerCtaBlock, 0, stream>>>(
      blocks, n_blocks, rule, y);
}

}  // namespace mxlens::gpu::detail
