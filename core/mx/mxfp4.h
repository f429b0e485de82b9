#pragma once
// MXFP4 (OCP MX v1.0): blocks of 32 FP4 E2M1 elements sharing one scale byte
// (algorithm.md §1). This header holds the block type, the public API and the runtime choice
// between the scalar reference (mxfp4_ref.cpp, the oracle) and the AVX2 fast path
// (mxfp4_avx2.cpp), which must produce the same bits.
//
// A "row" below is any float span whose length is a multiple of 32, cut into consecutive
// blocks; blocks never straddle rows, so a whole row-major tensor can be passed as one span.
// Lengths that are not multiples of 32 throw Error("mxfp4", ...).
//
// Scale rules (algorithm.md §1.3), per block with a = max |x_i|:
//   ocp_floor  e = clamp(floor(log2 a) - 2, -127, 127) + 127, scale 2^(e-127); a = 0 -> e = 0.
//              floor(log2 a) is exact (exponent field; frexp for subnormal a).
//   fpquant    k = clamp(floor(log2 max(a, 2^-126)), -127, 127) - 2, then clamped to >= -127
//              (mxlens choice, so the byte and the scale always agree; only blocks with
//              a < 2^-125 are affected); byte k+127, scale 2^k * 4/3 (float32). The 4/3 is
//              not in the byte: dequantize needs TensorScale.scale_rule = fpquant.
//   rceil      k = clamp(ceil(log2(a/6)), -127, 127) (a/6 in float32), scale 2^k; a = 0 -> e = 0.
//   dqv2_log8  not E8M0. s_b = a_b/6, t_b = log2(max(s_b, 2^-126)) (double), lo/hi = min/max
//              t_b over all blocks passed in one call (the tensor), byte q_b =
//              clamp(floor(255 (t_b - lo)/(hi - lo)), 0, 255), scale float(2^(lo + (hi-lo)
//              q_b/255)) computed in double. hi == lo: every q_b = 0 and scale = 2^lo, i.e.
//              s_b (clamped). TensorScale carries lo and hi.
// Elements: v = x / scale (float32 division), then E2M1 rounding (Rounding), saturating at ±6.
// Dequantized element = e2m1_decode(code) * scale (float32).
//
// Inf/NaN (algorithm.md §1.4): a block holding any NaN or ±Inf is marked as a whole:
//   - E8M0 rules (ocp_floor, fpquant, rceil): scale byte 0xFF (E8M0 NaN), all codes 0;
//     dequantize gives NaN for all 32 elements, and so does fake_quantize.
//   - dqv2_log8: such blocks are left out of lo/hi; fake_quantize sets all 32 elements to
//     NaN, but quantize_mxfp4 throws Error (a log8 byte cannot mark NaN).
// Finite values never fail: magnitudes beyond 6*scale saturate to ±6.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/mx/quant_options.h"

namespace mxlens {

// ggml's block_mxfp4 layout (formats.md §4.3): 17 bytes for 32 elements.
struct Mxfp4Block {
  static constexpr int kSize = 32;
  uint8_t e;       // scale byte: E8M0 (ocp_floor, fpquant, rceil) or the dqv2_log8 code q_b
  uint8_t qs[16];  // byte j: low nibble = code of element j, high nibble = code of element j+16
};
static_assert(sizeof(Mxfp4Block) == 17, "Mxfp4Block must be ggml's 17-byte block_mxfp4");

// Number of blocks in a row of n elements; throws Error(source, ...) unless n % 32 == 0.
size_t mxfp4_block_count(size_t n_elements, const char* source = "mxfp4");

// Scale for one block under an E8M0 rule (not dqv2_log8, which needs the whole tensor):
// `byte` is what is stored, `scale` what elements are divided by. amax must be finite, >= 0.
struct Mxfp4BlockScale {
  uint8_t byte;
  float scale;
};
Mxfp4BlockScale mxfp4_block_scale(float amax, ScaleRule rule);

// Float scale of a stored scale byte (E8M0 decode, times 4/3 for fpquant, log8 decode for
// dqv2_log8).
float mxfp4_scale_of(uint8_t byte, const TensorScale& tensor_scale);

// --- public API: runs the AVX2 path when the CPU has AVX2+FMA, else the reference ---------
// blocks.size() must be x.size()/32. Returns what dequantize needs besides the blocks.
TensorScale quantize_mxfp4(std::span<const float> x, std::span<Mxfp4Block> blocks,
                           const QuantOptions& options = {});
std::vector<Mxfp4Block> quantize_mxfp4(std::span<const float> x, const QuantOptions& options,
                                       TensorScale* tensor_scale);
void dequantize_mxfp4(std::span<const Mxfp4Block> blocks, const TensorScale& tensor_scale,
                      std::span<float> out);
// Fused quantize + dequantize in place (W4A4 fake quantization of an activation row); equals
// dequantize_mxfp4(quantize_mxfp4(x)) bit for bit, without materializing blocks.
void fake_quantize_mxfp4(std::span<float> x, const QuantOptions& options = {});

// "avx2" or "reference": which path the public functions above take on this CPU.
const char* mxfp4_active_path();

// --- the two implementations (the format table lists them; tests compare them) -----------
TensorScale quantize_mxfp4_ref(std::span<const float> x, std::span<Mxfp4Block> blocks,
                               const QuantOptions& options);
void dequantize_mxfp4_ref(std::span<const Mxfp4Block> blocks, const TensorScale& tensor_scale,
                          std::span<float> out);
void fake_quantize_mxfp4_ref(std::span<float> x, const QuantOptions& options);

// Callable only when mxfp4_avx2_available() (CPU has AVX2 and FMA).
bool mxfp4_avx2_available();
TensorScale quantize_mxfp4_avx2(std::span<const float> x, std::span<Mxfp4Block> blocks,
                                const QuantOptions& options);
void dequantize_mxfp4_avx2(std::span<const Mxfp4Block> blocks, const TensorScale& tensor_scale,
                           std::span<float> out);
void fake_quantize_mxfp4_avx2(std::span<float> x, const QuantOptions& options);

namespace detail {
// dqv2_log8 block scales from per-block amax (NaN marks a non-finite block, left out of
// lo/hi). Shared by both paths: it is per block, not per element, and plain arithmetic.
struct Dqv2Scales {
  double log2_lo = 0, log2_hi = 0;
  std::vector<uint8_t> code;  // q_b per block (0 for a non-finite block)
  std::vector<float> scale;   // float scale per block (NaN for a non-finite block)
};
Dqv2Scales dqv2_scales(std::span<const float> block_amax);
float dqv2_scale_of(uint8_t q, double log2_lo, double log2_hi);
void check_row(size_t n_elements, size_t n_blocks, const char* source);
}  // namespace detail

}  // namespace mxlens
