// Scalar reference for MXFP4: slow and obviously correct. Every element tries all 16 E2M1
// values (e2m1_encode_ref); exponents come from frexp. It is the oracle for mxfp4_avx2.cpp.
#include <cmath>
#include <limits>

#include "core/mx/e2m1.h"
#include "core/mx/e8m0.h"
#include "core/mx/mxfp4.h"
#include "core/mx/packing.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

constexpr int kB = Mxfp4Block::kSize;

// floor(log2 a) for finite a > 0, exact: frexp gives a = m 2^E with m in [0.5, 1).
int floor_log2(float a) {
  int exponent = 0;
  std::frexp(a, &exponent);
  return exponent - 1;
}

// ceil(log2 d) for finite d > 0, exact.
int ceil_log2(float d) {
  int exponent = 0;
  const float mantissa = std::frexp(d, &exponent);
  return mantissa == 0.5f ? exponent - 1 : exponent;
}

bool block_is_finite(std::span<const float> block) {
  for (float x : block)
    if (!std::isfinite(x)) return false;
  return true;
}

float block_amax(std::span<const float> block) {
  float amax = 0.0f;
  for (float x : block) amax = std::max(amax, std::fabs(x));
  return amax;
}

// Codes of one block with the given (finite, nonzero) scale.
void encode_block(std::span<const float> block, float scale, Rounding rounding, uint8_t codes[kB]) {
  for (int i = 0; i < kB; ++i) codes[i] = e2m1_encode_ref(block[i] / scale, rounding);
}

// Scale byte and float scale of every block: E8M0 rules block by block, dqv2 over the tensor.
// A block with Inf/NaN gets scale NaN (and byte 0xFF for the E8M0 rules).
void block_scales(std::span<const float> x, ScaleRule rule, std::vector<uint8_t>& bytes,
                  std::vector<float>& scales, TensorScale& tensor_scale) {
  const size_t n_blocks = x.size() / kB;
  bytes.assign(n_blocks, 0);
  scales.assign(n_blocks, 0.0f);
  tensor_scale = TensorScale{};
  tensor_scale.scale_rule = rule;
  std::vector<float> amax(n_blocks);
  for (size_t b = 0; b < n_blocks; ++b) {
    const auto block = x.subspan(b * kB, kB);
    amax[b] = block_is_finite(block) ? block_amax(block) : std::numeric_limits<float>::quiet_NaN();
  }
  if (rule == ScaleRule::dqv2_log8) {
    detail::Dqv2Scales dq = detail::dqv2_scales(amax);
    tensor_scale.log2_lo = dq.log2_lo;
    tensor_scale.log2_hi = dq.log2_hi;
    bytes = std::move(dq.code);
    scales = std::move(dq.scale);
    return;
  }
  for (size_t b = 0; b < n_blocks; ++b) {
    if (std::isnan(amax[b])) {
      bytes[b] = kE8M0Nan;
      scales[b] = std::numeric_limits<float>::quiet_NaN();
    } else {
      const Mxfp4BlockScale s = mxfp4_block_scale(amax[b], rule);
      bytes[b] = s.byte;
      scales[b] = s.scale;
    }
  }
}

}  // namespace

Mxfp4BlockScale mxfp4_block_scale(float amax, ScaleRule rule) {
  if (!std::isfinite(amax) || amax < 0.0f)
    throw Error("mxfp4", "block scale needs a finite amax >= 0");
  switch (rule) {
    case ScaleRule::ocp_floor: {
      const int k = amax == 0.0f ? kE8M0MinExponent : floor_log2(amax) - 2;
      const uint8_t e = e8m0_encode(k);
      return {e, std::ldexp(1.0f, e8m0_exponent(e))};
    }
    case ScaleRule::fpquant: {
      const float a = std::max(amax, std::ldexp(1.0f, -126));
      const int k = std::clamp(floor_log2(a), kE8M0MinExponent, kE8M0MaxExponent) - 2;
      const uint8_t e = e8m0_encode(k);
      return {e, std::ldexp(4.0f / 3.0f, e8m0_exponent(e))};
    }
    case ScaleRule::rceil: {
      const float d = amax / 6.0f;
      const int k = d == 0.0f ? kE8M0MinExponent : ceil_log2(d);
      const uint8_t e = e8m0_encode(k);
      return {e, std::ldexp(1.0f, e8m0_exponent(e))};
    }
    case ScaleRule::dqv2_log8:
      break;
  }
  throw Error("mxfp4", "scale rule dqv2_log8 needs the whole tensor, not one block");
}

TensorScale quantize_mxfp4_ref(std::span<const float> x, std::span<Mxfp4Block> blocks,
                               const QuantOptions& options) {
  detail::check_row(x.size(), blocks.size(), "mxfp4");
  std::vector<uint8_t> bytes;
  std::vector<float> scales;
  TensorScale tensor_scale;
  block_scales(x, options.scale_rule, bytes, scales, tensor_scale);
  for (size_t b = 0; b < blocks.size(); ++b) {
    uint8_t codes[kB] = {};
    if (std::isnan(scales[b])) {
      if (options.scale_rule == ScaleRule::dqv2_log8)
        throw Error("mxfp4", "block " + std::to_string(b) +
                                 " holds Inf or NaN; a dqv2_log8 scale byte cannot mark it");
    } else {
      encode_block(x.subspan(b * kB, kB), scales[b], options.rounding, codes);
    }
    blocks[b].e = bytes[b];
    pack_codes_split(codes, blocks[b].qs);
  }
  return tensor_scale;
}

void dequantize_mxfp4_ref(std::span<const Mxfp4Block> blocks, const TensorScale& tensor_scale,
                          std::span<float> out) {
  detail::check_row(out.size(), blocks.size(), "mxfp4");
  for (size_t b = 0; b < blocks.size(); ++b) {
    const float scale = mxfp4_scale_of(blocks[b].e, tensor_scale);
    if (std::isnan(scale)) {  // E8M0 NaN: the whole block is NaN
      for (int i = 0; i < kB; ++i) out[b * kB + i] = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    uint8_t codes[kB];
    unpack_codes_split(blocks[b].qs, codes);
    for (int i = 0; i < kB; ++i) out[b * kB + i] = e2m1_decode(codes[i]) * scale;
  }
}

void fake_quantize_mxfp4_ref(std::span<float> x, const QuantOptions& options) {
  const size_t n_blocks = mxfp4_block_count(x.size());
  std::vector<uint8_t> bytes;
  std::vector<float> scales;
  TensorScale tensor_scale;
  block_scales(x, options.scale_rule, bytes, scales, tensor_scale);
  for (size_t b = 0; b < n_blocks; ++b) {
    const auto block = x.subspan(b * kB, kB);
    if (std::isnan(scales[b])) {
      for (float& v : block) v = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    uint8_t codes[kB];
    encode_block(block, scales[b], options.rounding, codes);
    for (int i = 0; i < kB; ++i) block[i] = e2m1_decode(codes[i]) * scales[b];
  }
}

}  // namespace mxlens
