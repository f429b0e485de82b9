// AVX2 fast path for MXFP4. Same results as mxfp4_ref.cpp bit for bit, by construction:
//  - block scales from the float's exponent bits instead of frexp (exact either way);
//  - v = x * 2^-k where the scale 2^k is a power of two (the same correctly rounded value as
//    x / 2^k, both 2^k and 2^-k being representable for k in [-127, 127]), x / scale otherwise;
//  - codes from the threshold form of nearest rounding instead of a 16-way search;
//  - one pass over the data for the E8M0 rules, two for dqv2_log8 (it needs all blocks first).
// Functions are compiled for AVX2+FMA and called only when mxfp4_avx2_available().
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "core/mx/e2m1_avx2.h"
#include "core/mx/e8m0.h"
#include "core/mx/mxfp4.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

constexpr int kB = Mxfp4Block::kSize;
constexpr uint32_t kFourThirdsBits = 0x3FAAAAABu;  // 4.0f / 3.0f
static_assert(std::bit_cast<uint32_t>(4.0f / 3.0f) == kFourThirdsBits);

// floor(log2 a) of a finite float a > 0 from its bits (subnormals: highest set bit).
int floor_log2_bits(uint32_t bits) {
  const int biased = static_cast<int>(bits >> 23);
  return biased != 0 ? biased - 127 : (31 - std::countl_zero(bits)) - 149;
}

bool is_power_of_two_bits(uint32_t bits) {
  return (bits >> 23) != 0 ? (bits & 0x7FFFFFu) == 0 : std::has_single_bit(bits);
}

// 2^k for k in [-127, 127] (2^-127 is subnormal).
float pow2(int k) {
  return e8m0_decode(static_cast<uint8_t>(k + 127));
}

// Scale of one finite block under an E8M0 rule: elements are multiplied by `multiplier`
// when it is nonzero (power-of-two scales), else divided by `scale`.
struct FastScale {
  uint8_t byte;
  float scale;
  float multiplier;
};

template <ScaleRule kRule>
inline FastScale e8m0_block_scale(uint32_t amax_bits) {
  int k = kE8M0MinExponent;
  if constexpr (kRule == ScaleRule::ocp_floor) {
    if (amax_bits != 0) k = floor_log2_bits(amax_bits) - 2;
  } else if constexpr (kRule == ScaleRule::rceil) {
    const uint32_t d = std::bit_cast<uint32_t>(std::bit_cast<float>(amax_bits) / 6.0f);
    if (d != 0) k = floor_log2_bits(d) + (is_power_of_two_bits(d) ? 0 : 1);
  } else {  // fpquant: a clamped to 2^-126 is normal, floor(log2 a) <= 127 for finite a
    static_assert(kRule == ScaleRule::fpquant);
    k = static_cast<int>(std::max(amax_bits, 0x00800000u) >> 23) - 127 - 2;
  }
  k = std::clamp(k, kE8M0MinExponent, kE8M0MaxExponent);
  const uint8_t byte = static_cast<uint8_t>(k + 127);
  if constexpr (kRule != ScaleRule::fpquant) {
    return {byte, pow2(k), pow2(-k)};
  } else {
    const float scale = k > kE8M0MinExponent
                            ? std::bit_cast<float>(static_cast<uint32_t>(
                                  static_cast<int32_t>(kFourThirdsBits) + k * (1 << 23)))
                            : std::ldexp(4.0f / 3.0f, k);
    return {byte, scale, 0.0f};
  }
}

struct BlockVectors {
  __m256 x[4];
};

MXLENS_TARGET_AVX2 inline BlockVectors load_block(const float* x) {
  return {{_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8), _mm256_loadu_ps(x + 16),
           _mm256_loadu_ps(x + 24)}};
}

// Bits of max |x| over the block; >= kInfBits when the block holds Inf or NaN.
MXLENS_TARGET_AVX2 inline uint32_t block_amax_bits(const BlockVectors& b) {
  const __m256i m01 = _mm256_max_epi32(avx2::abs_bits(b.x[0]), avx2::abs_bits(b.x[1]));
  const __m256i m23 = _mm256_max_epi32(avx2::abs_bits(b.x[2]), avx2::abs_bits(b.x[3]));
  return avx2::horizontal_max_epi32(_mm256_max_epi32(m01, m23));
}

// Codes of one block: x * multiplier for power-of-two scales (the same correctly rounded
// value as x / scale), x / scale otherwise.
template <Rounding kRounding, bool kMultiply>
MXLENS_TARGET_AVX2 inline void block_codes(const BlockVectors& b, const FastScale& s,
                                           __m256i codes[4]) {
  const __m256 f = _mm256_set1_ps(kMultiply ? s.multiplier : s.scale);
  for (int i = 0; i < 4; ++i)
    codes[i] = avx2::e2m1_codes<kRounding>(kMultiply ? _mm256_mul_ps(b.x[i], f)
                                                     : _mm256_div_ps(b.x[i], f));
}

// ggml split packing: byte j = code j | code j+16 << 4.
MXLENS_TARGET_AVX2 inline void store_codes(const __m256i codes[4], Mxfp4Block& block) {
  avx2::store_low_bytes_16(_mm256_or_si256(codes[0], _mm256_slli_epi32(codes[2], 4)),
                           _mm256_or_si256(codes[1], _mm256_slli_epi32(codes[3], 4)), block.qs);
}

MXLENS_TARGET_AVX2 inline void store_values(const __m256i codes[4], float scale, float* out) {
  const __m256 s = _mm256_set1_ps(scale);
  for (int i = 0; i < 4; ++i) _mm256_storeu_ps(out + 8 * i, avx2::e2m1_values(codes[i], s));
}

MXLENS_TARGET_AVX2 inline void store_nan(float* out) {
  const __m256 nan = _mm256_set1_ps(std::numeric_limits<float>::quiet_NaN());
  for (int i = 0; i < 4; ++i) _mm256_storeu_ps(out + 8 * i, nan);
}

// Per-block amax for dqv2_log8 (NaN for a block holding Inf/NaN).
MXLENS_TARGET_AVX2 std::vector<float> all_block_amax(const float* x, size_t n_blocks) {
  std::vector<float> amax(n_blocks);
  for (size_t b = 0; b < n_blocks; ++b) {
    const uint32_t bits = block_amax_bits(load_block(x + b * kB));
    amax[b] = bits >= avx2::kInfBits ? std::numeric_limits<float>::quiet_NaN()
                                     : std::bit_cast<float>(bits);
  }
  return amax;
}

// Block maxima (as |x| bits) of 8 consecutive blocks, one per lane: a transposing max tree
// instead of 8 separate horizontal reductions.
constexpr size_t kGroup = 8;
MXLENS_TARGET_AVX2 inline __m256i group_amax_bits(const float* x) {
  __m256i m[kGroup];
  for (size_t j = 0; j < kGroup; ++j) {
    const BlockVectors v = load_block(x + j * kB);
    m[j] = _mm256_max_epi32(_mm256_max_epi32(avx2::abs_bits(v.x[0]), avx2::abs_bits(v.x[1])),
                            _mm256_max_epi32(avx2::abs_bits(v.x[2]), avx2::abs_bits(v.x[3])));
  }
  __m256i t[4];
  for (int j = 0; j < 4; ++j)  // [max pairs of m[2j] | of m[2j+1]] interleaved
    t[j] = _mm256_max_epi32(_mm256_unpacklo_epi32(m[2 * j], m[2 * j + 1]),
                            _mm256_unpackhi_epi32(m[2 * j], m[2 * j + 1]));
  const __m256i u0 =
      _mm256_max_epi32(_mm256_unpacklo_epi64(t[0], t[1]), _mm256_unpackhi_epi64(t[0], t[1]));
  const __m256i u1 =
      _mm256_max_epi32(_mm256_unpacklo_epi64(t[2], t[3]), _mm256_unpackhi_epi64(t[2], t[3]));
  return _mm256_max_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                          _mm256_permute2x128_si256(u0, u1, 0x31));
}

template <Rounding kRounding, ScaleRule kRule>
MXLENS_TARGET_AVX2 inline void quantize_block(const float* x, uint32_t amax_bits,
                                              Mxfp4Block& block) {
  if (amax_bits >= avx2::kInfBits) {
    block.e = kE8M0Nan;
    std::memset(block.qs, 0, sizeof block.qs);
    return;
  }
  const FastScale s = e8m0_block_scale<kRule>(amax_bits);
  __m256i codes[4];
  block_codes<kRounding, kRule != ScaleRule::fpquant>(load_block(x), s, codes);
  block.e = s.byte;
  store_codes(codes, block);
}

template <Rounding kRounding, ScaleRule kRule>
MXLENS_TARGET_AVX2 inline void fake_quantize_block(float* x, uint32_t amax_bits) {
  if (amax_bits >= avx2::kInfBits) {
    store_nan(x);
    return;
  }
  const FastScale s = e8m0_block_scale<kRule>(amax_bits);
  __m256i codes[4];
  block_codes<kRounding, kRule != ScaleRule::fpquant>(load_block(x), s, codes);
  store_values(codes, s.scale, x);
}

// E8M0 rules: maxima of 8 blocks at a time, then scale and codes block by block.
template <Rounding kRounding, ScaleRule kRule>
MXLENS_TARGET_AVX2 void quantize_e8m0(const float* x, Mxfp4Block* blocks, size_t n_blocks) {
  alignas(32) uint32_t amax[kGroup];
  size_t b = 0;
  for (; b + kGroup <= n_blocks; b += kGroup) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(amax), group_amax_bits(x + b * kB));
    for (size_t j = 0; j < kGroup; ++j)
      quantize_block<kRounding, kRule>(x + (b + j) * kB, amax[j], blocks[b + j]);
  }
  for (; b < n_blocks; ++b)
    quantize_block<kRounding, kRule>(x + b * kB, block_amax_bits(load_block(x + b * kB)),
                                     blocks[b]);
}

template <Rounding kRounding, ScaleRule kRule>
MXLENS_TARGET_AVX2 void fake_quantize_e8m0(float* x, size_t n_blocks) {
  alignas(32) uint32_t amax[kGroup];
  size_t b = 0;
  for (; b + kGroup <= n_blocks; b += kGroup) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(amax), group_amax_bits(x + b * kB));
    for (size_t j = 0; j < kGroup; ++j)
      fake_quantize_block<kRounding, kRule>(x + (b + j) * kB, amax[j]);
  }
  for (; b < n_blocks; ++b)
    fake_quantize_block<kRounding, kRule>(x + b * kB, block_amax_bits(load_block(x + b * kB)));
}

template <Rounding kRounding>
MXLENS_TARGET_AVX2 TensorScale quantize_impl(const float* x, Mxfp4Block* blocks, size_t n_blocks,
                                             ScaleRule rule) {
  TensorScale tensor_scale;
  tensor_scale.scale_rule = rule;
  if (rule == ScaleRule::dqv2_log8) {
    __m256i codes[4];
    detail::Dqv2Scales dq = detail::dqv2_scales(all_block_amax(x, n_blocks));
    tensor_scale.log2_lo = dq.log2_lo;
    tensor_scale.log2_hi = dq.log2_hi;
    for (size_t b = 0; b < n_blocks; ++b) {
      if (std::isnan(dq.scale[b]))
        throw Error("mxfp4", "block " + std::to_string(b) +
                                 " holds Inf or NaN; a dqv2_log8 scale byte cannot mark it");
      block_codes<kRounding, false>(load_block(x + b * kB), {0, dq.scale[b], 0.0f}, codes);
      blocks[b].e = dq.code[b];
      store_codes(codes, blocks[b]);
    }
    return tensor_scale;
  }
  switch (rule) {
    case ScaleRule::ocp_floor:
      quantize_e8m0<kRounding, ScaleRule::ocp_floor>(x, blocks, n_blocks);
      break;
    case ScaleRule::rceil:
      quantize_e8m0<kRounding, ScaleRule::rceil>(x, blocks, n_blocks);
      break;
    default:
      quantize_e8m0<kRounding, ScaleRule::fpquant>(x, blocks, n_blocks);
      break;
  }
  return tensor_scale;
}

template <Rounding kRounding>
MXLENS_TARGET_AVX2 void fake_quantize_impl(float* x, size_t n_blocks, ScaleRule rule) {
  if (rule == ScaleRule::dqv2_log8) {
    __m256i codes[4];
    const detail::Dqv2Scales dq = detail::dqv2_scales(all_block_amax(x, n_blocks));
    for (size_t b = 0; b < n_blocks; ++b) {
      float* block = x + b * kB;
      if (std::isnan(dq.scale[b])) {
        store_nan(block);
        continue;
      }
      block_codes<kRounding, false>(load_block(block), {0, dq.scale[b], 0.0f}, codes);
      store_values(codes, dq.scale[b], block);
    }
    return;
  }
  switch (rule) {
    case ScaleRule::ocp_floor:
      fake_quantize_e8m0<kRounding, ScaleRule::ocp_floor>(x, n_blocks);
      break;
    case ScaleRule::rceil:
      fake_quantize_e8m0<kRounding, ScaleRule::rceil>(x, n_blocks);
      break;
    default:
      fake_quantize_e8m0<kRounding, ScaleRule::fpquant>(x, n_blocks);
      break;
  }
}

MXLENS_TARGET_AVX2 void dequantize_impl(const Mxfp4Block* blocks, size_t n_blocks,
                                        const TensorScale& tensor_scale, float* out) {
  const bool plain_e8m0 = tensor_scale.scale_rule == ScaleRule::ocp_floor ||
                          tensor_scale.scale_rule == ScaleRule::rceil;
  for (size_t b = 0; b < n_blocks; ++b) {
    float* block = out + b * kB;
    const float scale =
        plain_e8m0 ? e8m0_decode(blocks[b].e) : mxfp4_scale_of(blocks[b].e, tensor_scale);
    if (std::isnan(scale)) {
      store_nan(block);
      continue;
    }
    __m256i codes[4];
    avx2::load_nibbles(blocks[b].qs, codes[0], codes[2]);
    avx2::load_nibbles(blocks[b].qs + 8, codes[1], codes[3]);
    store_values(codes, scale, block);
  }
}

}  // namespace

TensorScale quantize_mxfp4_avx2(std::span<const float> x, std::span<Mxfp4Block> blocks,
                                const QuantOptions& options) {
  detail::check_row(x.size(), blocks.size(), "mxfp4");
  return options.rounding == Rounding::rne
             ? quantize_impl<Rounding::rne>(x.data(), blocks.data(), blocks.size(),
                                            options.scale_rule)
             : quantize_impl<Rounding::ggml>(x.data(), blocks.data(), blocks.size(),
                                             options.scale_rule);
}

void dequantize_mxfp4_avx2(std::span<const Mxfp4Block> blocks, const TensorScale& tensor_scale,
                           std::span<float> out) {
  detail::check_row(out.size(), blocks.size(), "mxfp4");
  dequantize_impl(blocks.data(), blocks.size(), tensor_scale, out.data());
}

void fake_quantize_mxfp4_avx2(std::span<float> x, const QuantOptions& options) {
  const size_t n_blocks = mxfp4_block_count(x.size());
  if (options.rounding == Rounding::rne)
    fake_quantize_impl<Rounding::rne>(x.data(), n_blocks, options.scale_rule);
  else
    fake_quantize_impl<Rounding::ggml>(x.data(), n_blocks, options.scale_rule);
}

}  // namespace mxlens
