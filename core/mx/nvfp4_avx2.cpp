// AVX2 fast path for NVFP4, bit-identical to the reference in nvfp4.cpp: the E2M1 kernel of
// e2m1_avx2.h on 16-element blocks, E4M3 block scales by arithmetic instead of search.
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "core/mx/e2m1_avx2.h"
#include "core/mx/nvfp4.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

constexpr int kB = Nvfp4Block::kSize;

const std::array<float, 256>& e4m3_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int byte = 0; byte < 256; ++byte) t[byte] = e4m3_decode(static_cast<uint8_t>(byte));
    return t;
  }();
  return table;
}

MXLENS_TARGET_AVX2 inline uint32_t block_amax_bits(const float* x) {
  return avx2::horizontal_max_epi32(
      _mm256_max_epi32(avx2::abs_bits(_mm256_loadu_ps(x)), avx2::abs_bits(_mm256_loadu_ps(x + 8))));
}

MXLENS_TARGET_AVX2 float global_scale(const float* x, size_t n_blocks) {
  uint32_t amax = 0;
  for (size_t b = 0; b < n_blocks; ++b) {
    const uint32_t bits = block_amax_bits(x + b * kB);
    if (bits < avx2::kInfBits) amax = std::max(amax, bits);
  }
  return std::bit_cast<float>(amax) / (6.0f * kE4M3Max);
}

struct BlockScale {
  uint8_t byte;
  float divisor;  // NaN: block holds Inf/NaN; 0: encode as zeros
};

MXLENS_TARGET_AVX2 inline BlockScale block_scale(const float* x, float g,
                                                 const std::array<float, 256>& e4m3) {
  const uint32_t bits = block_amax_bits(x);
  if (bits >= avx2::kInfBits) return {kE4M3Nan, std::numeric_limits<float>::quiet_NaN()};
  if (g == 0.0f) return {0, 0.0f};
  const uint8_t byte = e4m3_encode(std::bit_cast<float>(bits) / 6.0f / g);
  return {byte, e4m3[byte] * g};
}

template <Rounding kRounding>
MXLENS_TARGET_AVX2 inline void block_codes(const float* x, float divisor, __m256i codes[2]) {
  if (divisor == 0.0f) {
    codes[0] = codes[1] = _mm256_setzero_si256();
    return;
  }
  const __m256 d = _mm256_set1_ps(divisor);
  codes[0] = avx2::e2m1_codes<kRounding>(_mm256_div_ps(_mm256_loadu_ps(x), d));
  codes[1] = avx2::e2m1_codes<kRounding>(_mm256_div_ps(_mm256_loadu_ps(x + 8), d));
}

template <Rounding kRounding>
MXLENS_TARGET_AVX2 TensorScale quantize_impl(const float* x, Nvfp4Block* blocks, size_t n_blocks) {
  const auto& e4m3 = e4m3_table();
  TensorScale tensor_scale;
  tensor_scale.global_scale = global_scale(x, n_blocks);
  for (size_t b = 0; b < n_blocks; ++b) {
    const float* block = x + b * kB;
    const BlockScale s = block_scale(block, tensor_scale.global_scale, e4m3);
    blocks[b].scale = s.byte;
    if (std::isnan(s.divisor)) {
      std::memset(blocks[b].qs, 0, sizeof blocks[b].qs);
      continue;
    }
    __m256i codes[2];
    block_codes<kRounding>(block, s.divisor, codes);
    avx2::store_low_bytes(_mm256_or_si256(codes[0], _mm256_slli_epi32(codes[1], 4)), blocks[b].qs);
  }
  return tensor_scale;
}

template <Rounding kRounding>
MXLENS_TARGET_AVX2 void fake_quantize_impl(float* x, size_t n_blocks) {
  const auto& e4m3 = e4m3_table();
  const float g = global_scale(x, n_blocks);
  for (size_t b = 0; b < n_blocks; ++b) {
    float* block = x + b * kB;
    const BlockScale s = block_scale(block, g, e4m3);
    if (std::isnan(s.divisor)) {
      const __m256 nan = _mm256_set1_ps(s.divisor);
      _mm256_storeu_ps(block, nan);
      _mm256_storeu_ps(block + 8, nan);
      continue;
    }
    __m256i codes[2];
    block_codes<kRounding>(block, s.divisor, codes);
    const __m256 d = _mm256_set1_ps(s.divisor);
    _mm256_storeu_ps(block, avx2::e2m1_values(codes[0], d));
    _mm256_storeu_ps(block + 8, avx2::e2m1_values(codes[1], d));
  }
}

MXLENS_TARGET_AVX2 void dequantize_impl(const Nvfp4Block* blocks, size_t n_blocks, float g,
                                        float* out) {
  const auto& e4m3 = e4m3_table();
  for (size_t b = 0; b < n_blocks; ++b) {
    float* block = out + b * kB;
    const float divisor = e4m3[blocks[b].scale] * g;
    if (std::isnan(divisor)) {
      const __m256 nan = _mm256_set1_ps(std::numeric_limits<float>::quiet_NaN());
      _mm256_storeu_ps(block, nan);
      _mm256_storeu_ps(block + 8, nan);
      continue;
    }
    __m256i low, high;
    avx2::load_nibbles(blocks[b].qs, low, high);
    const __m256 d = _mm256_set1_ps(divisor);
    _mm256_storeu_ps(block, avx2::e2m1_values(low, d));
    _mm256_storeu_ps(block + 8, avx2::e2m1_values(high, d));
  }
}

void check_options(const QuantOptions& options) {
  if (options.scale_rule != QuantOptions{}.scale_rule)
    throw Error("nvfp4", "scale rule " + std::string(to_string(options.scale_rule)) +
                             " is an MXFP4 rule; NVFP4 has its own E4M3 + FP32 scales");
}

}  // namespace

TensorScale quantize_nvfp4_avx2(std::span<const float> x, std::span<Nvfp4Block> blocks,
                                const QuantOptions& options) {
  check_options(options);
  if (nvfp4_block_count(x.size()) != blocks.size())
    throw Error("nvfp4", std::to_string(x.size()) + " elements need " +
                             std::to_string(x.size() / kB) + " blocks, got " +
                             std::to_string(blocks.size()));
  return options.rounding == Rounding::rne
             ? quantize_impl<Rounding::rne>(x.data(), blocks.data(), blocks.size())
             : quantize_impl<Rounding::ggml>(x.data(), blocks.data(), blocks.size());
}

void dequantize_nvfp4_avx2(std::span<const Nvfp4Block> blocks, const TensorScale& tensor_scale,
                           std::span<float> out) {
  if (nvfp4_block_count(out.size()) != blocks.size())
    throw Error("nvfp4", std::to_string(out.size()) + " elements need " +
                             std::to_string(out.size() / kB) + " blocks, got " +
                             std::to_string(blocks.size()));
  dequantize_impl(blocks.data(), blocks.size(), tensor_scale.global_scale, out.data());
}

void fake_quantize_nvfp4_avx2(std::span<float> x, const QuantOptions& options) {
  check_options(options);
  const size_t n_blocks = nvfp4_block_count(x.size());
  if (options.rounding == Rounding::rne)
    fake_quantize_impl<Rounding::rne>(x.data(), n_blocks);
  else
    fake_quantize_impl<Rounding::ggml>(x.data(), n_blocks);
}

}  // namespace mxlens
