// MXFP4 public entry points: pick the AVX2 path at run time when the CPU has it, else the
// scalar reference. Also the per-tensor pieces both paths share.
#include "core/mx/mxfp4.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/mx/e8m0.h"
#include "core/util/error.h"

namespace mxlens {

size_t mxfp4_block_count(size_t n_elements, const char* source) {
  if (n_elements % Mxfp4Block::kSize != 0)
    throw Error(source, "row length " + std::to_string(n_elements) +
                            " is not a multiple of the block size " +
                            std::to_string(Mxfp4Block::kSize));
  return n_elements / Mxfp4Block::kSize;
}

namespace detail {

void check_row(size_t n_elements, size_t n_blocks, const char* source) {
  if (mxfp4_block_count(n_elements, source) != n_blocks)
    throw Error(source, std::to_string(n_elements) + " elements need " +
                            std::to_string(n_elements / Mxfp4Block::kSize) + " blocks, got " +
                            std::to_string(n_blocks));
}

float dqv2_scale_of(uint8_t q, double log2_lo, double log2_hi) {
  const double log2_scale =
      log2_hi == log2_lo ? log2_lo : log2_lo + (log2_hi - log2_lo) * q / 255.0;
  return static_cast<float>(std::exp2(log2_scale));
}

Dqv2Scales dqv2_scales(std::span<const float> block_amax) {
  const double t_min = std::ldexp(1.0, -126);
  Dqv2Scales out;
  out.code.assign(block_amax.size(), 0);
  out.scale.assign(block_amax.size(), std::numeric_limits<float>::quiet_NaN());
  std::vector<double> t(block_amax.size(), 0.0);
  bool any = false;
  for (size_t b = 0; b < block_amax.size(); ++b) {
    if (std::isnan(block_amax[b])) continue;
    const float s = block_amax[b] / 6.0f;  // float32, as the code does
    t[b] = std::log2(std::max(static_cast<double>(s), t_min));
    out.log2_lo = any ? std::min(out.log2_lo, t[b]) : t[b];
    out.log2_hi = any ? std::max(out.log2_hi, t[b]) : t[b];
    any = true;
  }
  const double range = out.log2_hi - out.log2_lo;
  for (size_t b = 0; b < block_amax.size(); ++b) {
    if (std::isnan(block_amax[b])) continue;
    double q = range > 0 ? std::floor(255.0 * (t[b] - out.log2_lo) / range) : 0.0;
    out.code[b] = static_cast<uint8_t>(std::clamp(q, 0.0, 255.0));
    out.scale[b] = dqv2_scale_of(out.code[b], out.log2_lo, out.log2_hi);
  }
  return out;
}

}  // namespace detail

float mxfp4_scale_of(uint8_t byte, const TensorScale& tensor_scale) {
  switch (tensor_scale.scale_rule) {
    case ScaleRule::ocp_floor:
    case ScaleRule::rceil:
      return e8m0_decode(byte);
    case ScaleRule::fpquant:
      return byte == kE8M0Nan ? std::numeric_limits<float>::quiet_NaN()
                              : std::ldexp(4.0f / 3.0f, e8m0_exponent(byte));
    case ScaleRule::dqv2_log8:
      return detail::dqv2_scale_of(byte, tensor_scale.log2_lo, tensor_scale.log2_hi);
  }
  return std::numeric_limits<float>::quiet_NaN();
}

bool mxfp4_avx2_available() {
  static const bool available = [] {
    __builtin_cpu_init();  // needed if this first runs during static initialization
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return available;
}

const char* mxfp4_active_path() {
  return mxfp4_avx2_available() ? "avx2" : "reference";
}

TensorScale quantize_mxfp4(std::span<const float> x, std::span<Mxfp4Block> blocks,
                           const QuantOptions& options) {
  return mxfp4_avx2_available() ? quantize_mxfp4_avx2(x, blocks, options)
                                : quantize_mxfp4_ref(x, blocks, options);
}

std::vector<Mxfp4Block> quantize_mxfp4(std::span<const float> x, const QuantOptions& options,
                                       TensorScale* tensor_scale) {
  std::vector<Mxfp4Block> blocks(mxfp4_block_count(x.size()));
  const TensorScale ts = quantize_mxfp4(x, blocks, options);
  if (tensor_scale) *tensor_scale = ts;
  return blocks;
}

void dequantize_mxfp4(std::span<const Mxfp4Block> blocks, const TensorScale& tensor_scale,
                      std::span<float> out) {
  if (mxfp4_avx2_available())
    dequantize_mxfp4_avx2(blocks, tensor_scale, out);
  else
    dequantize_mxfp4_ref(blocks, tensor_scale, out);
}

void fake_quantize_mxfp4(std::span<float> x, const QuantOptions& options) {
  if (mxfp4_avx2_available())
    fake_quantize_mxfp4_avx2(x, options);
  else
    fake_quantize_mxfp4_ref(x, options);
}

}  // namespace mxlens
