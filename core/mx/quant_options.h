#pragma once
// Options shared by the 4-bit block formats (MXFP4, NVFP4): how block scales are chosen,
// how element ties round, and what a reader needs besides the blocks (algorithm.md §1).
#include <cstdint>
#include <string_view>

namespace mxlens {

// How exact ties between two FP4 grid points are broken (algorithm.md §1.1).
enum class Rounding : uint8_t {
  rne,   // nearest, ties to the code whose mantissa bit is 0 (OCP, FP-Quant) — default
  ggml,  // nearest, ties to the smaller magnitude (ggml's first-best code search)
};

// How an MXFP4 block's scale is chosen from its absolute maximum a (algorithm.md §1.3).
enum class ScaleRule : uint8_t {
  ocp_floor,  // S1: E8M0, k = floor(log2 a) - 2 (OCP MX v1.0, ggml) — default
  fpquant,    // S2: E8M0 byte k+127 as S1, fake-quant scale 2^k * 4/3 (FP-Quant code)
  rceil,      // S3: E8M0, smallest power of two >= a/6 (cuBLAS / torchao RCEIL)
  dqv2_log8,  // S4: NOT E8M0: 8-bit log code over the tensor's [lo, hi] (DuQuant-v2 code)
};

struct QuantOptions {
  ScaleRule scale_rule = ScaleRule::ocp_floor;  // MXFP4 only; NVFP4 requires the default
  Rounding rounding = Rounding::rne;
};

// What a reader needs, besides the blocks, to turn a quantized tensor back into floats.
struct TensorScale {
  ScaleRule scale_rule = ScaleRule::ocp_floor;  // MXFP4: what a block's scale byte means
  double log2_lo = 0, log2_hi = 0;  // MXFP4 dqv2_log8 only: range of log2(max(amax/6, 2^-126))
  float global_scale = 1.0f;        // NVFP4 only: the FP32 per-tensor scale g
};

std::string_view to_string(ScaleRule rule);
std::string_view to_string(Rounding rounding);
// Parse the names above ("ocp_floor", "rne", ...); throws Error(source, ...) on anything else.
ScaleRule parse_scale_rule(std::string_view name, std::string_view source = "--scale-rule");
Rounding parse_rounding(std::string_view name, std::string_view source = "--rounding");

}  // namespace mxlens
