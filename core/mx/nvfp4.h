#pragma once
// NVFP4 (algorithm.md §1.7): blocks of 16 FP4 E2M1 elements, one FP8 E4M3 block scale each,
// plus one FP32 scale per tensor. Same shape of API as mxfp4.h (reference, AVX2 fast path,
// runtime choice); the format table (format_table.h) lists both formats.
//
// Rule, for the span passed in one call (the tensor), in float32:
//   g  = amax_tensor / (6 * 448)                      (amax over finite elements only)
//   sb = E4M3_RNE((amax_block / 6) / g)               saturating at 448; byte stored per block
//   code_i = E2M1(x_i / (sb * g))                     Rounding as for MXFP4, saturating at ±6
//   dequant_i = e2m1_decode(code_i) * (sb * g)
// g = 0 (all-zero tensor) or sb * g = 0 (block far below the tensor max) encode as zeros.
// A block holding Inf/NaN stores the E4M3 NaN byte 0x7F and codes 0; it dequantizes (and
// fake-quantizes) to NaN in all 16 elements; it does not enter amax_tensor.
// QuantOptions.scale_rule must stay at its default (the MXFP4 rules do not apply): anything
// else throws Error("nvfp4", ...).
//
// Packed block record (9 bytes, the ggml-style split layout of mxfp4.h scaled to 16):
// byte 0 = E4M3 scale, bytes 1+j (j = 0..7): low nibble element j, high nibble element j+8.
// This is NOT ggml's 36-byte, 64-value block_nvfp4.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/mx/quant_options.h"

namespace mxlens {

struct Nvfp4Block {
  static constexpr int kSize = 16;
  uint8_t scale;  // E4M3 block scale
  uint8_t qs[8];  // byte j: low nibble = code of element j, high nibble = code of element j+8
};
static_assert(sizeof(Nvfp4Block) == 9, "Nvfp4Block is one scale byte plus 8 code bytes");

// FP8 E4M3 (OCP FP8, "fn" variant): S EEEE MMM, bias 7, no Inf, 0x7F/0xFF NaN, max 448.
inline constexpr uint8_t kE4M3Nan = 0x7F;
inline constexpr float kE4M3Max = 448.0f;
float e4m3_decode(uint8_t byte);
// Round-to-nearest-even of a finite x >= 0, saturating at 448 (byte 0x7E). Brute force over
// all 127 finite non-negative values (reference) and the exponent/mantissa arithmetic the
// fast path uses; tests check they agree.
uint8_t e4m3_encode_ref(float x);
uint8_t e4m3_encode(float x);

size_t nvfp4_block_count(size_t n_elements);  // throws Error unless n % 16 == 0

// Public API: AVX2 when the CPU has it, else the reference. blocks.size() == x.size()/16.
TensorScale quantize_nvfp4(std::span<const float> x, std::span<Nvfp4Block> blocks,
                           const QuantOptions& options = {});
void dequantize_nvfp4(std::span<const Nvfp4Block> blocks, const TensorScale& tensor_scale,
                      std::span<float> out);
void fake_quantize_nvfp4(std::span<float> x, const QuantOptions& options = {});

TensorScale quantize_nvfp4_ref(std::span<const float> x, std::span<Nvfp4Block> blocks,
                               const QuantOptions& options);
void dequantize_nvfp4_ref(std::span<const Nvfp4Block> blocks, const TensorScale& tensor_scale,
                          std::span<float> out);
void fake_quantize_nvfp4_ref(std::span<float> x, const QuantOptions& options);

// Callable only when mxfp4_avx2_available().
TensorScale quantize_nvfp4_avx2(std::span<const float> x, std::span<Nvfp4Block> blocks,
                                const QuantOptions& options);
void dequantize_nvfp4_avx2(std::span<const Nvfp4Block> blocks, const TensorScale& tensor_scale,
                           std::span<float> out);
void fake_quantize_nvfp4_avx2(std::span<float> x, const QuantOptions& options);

}  // namespace mxlens
