// NVFP4 scalar reference (brute-force E2M1 and E4M3 rounding) and the runtime choice.
#include "core/mx/nvfp4.h"

#include <bit>
#include <cmath>
#include <limits>
#include <string>

#include "core/mx/e2m1.h"
#include "core/mx/mxfp4.h"
#include "core/mx/packing.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

constexpr int kB = Nvfp4Block::kSize;
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

void check_options(const QuantOptions& options) {
  if (options.scale_rule != QuantOptions{}.scale_rule)
    throw Error("nvfp4", "scale rule " + std::string(to_string(options.scale_rule)) +
                             " is an MXFP4 rule; NVFP4 has its own E4M3 + FP32 scales");
}

void check_blocks(size_t n_elements, size_t n_blocks) {
  if (nvfp4_block_count(n_elements) != n_blocks)
    throw Error("nvfp4", std::to_string(n_elements) + " elements need " +
                             std::to_string(n_elements / kB) + " blocks, got " +
                             std::to_string(n_blocks));
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

// g over the finite blocks of the tensor.
float global_scale_ref(std::span<const float> x) {
  float amax = 0.0f;
  for (size_t b = 0; b < x.size() / kB; ++b) {
    const auto block = x.subspan(b * kB, kB);
    if (block_is_finite(block)) amax = std::max(amax, block_amax(block));
  }
  return amax / (6.0f * kE4M3Max);
}

// Scale byte and the divisor sb*g of one block; divisor NaN for a non-finite block.
struct BlockScale {
  uint8_t byte;
  float divisor;
};

BlockScale block_scale_ref(std::span<const float> block, float g) {
  if (!block_is_finite(block)) return {kE4M3Nan, kNan};
  if (g == 0.0f) return {0, 0.0f};
  const uint8_t byte = e4m3_encode_ref(block_amax(block) / 6.0f / g);
  return {byte, e4m3_decode(byte) * g};
}

void encode_block_ref(std::span<const float> block, float divisor, Rounding rounding,
                      uint8_t codes[kB]) {
  for (int i = 0; i < kB; ++i)
    codes[i] = divisor == 0.0f ? 0 : e2m1_encode_ref(block[i] / divisor, rounding);
}

}  // namespace

float e4m3_decode(uint8_t byte) {
  const float sign = (byte & 0x80) ? -1.0f : 1.0f;
  const int exponent = (byte >> 3) & 0xF, mantissa = byte & 0x7;
  if (exponent == 0xF && mantissa == 0x7) return kNan;
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -9);
  return sign * std::ldexp(1.0f + mantissa / 8.0f, exponent - 7);
}

uint8_t e4m3_encode_ref(float x) {
  int best = 0;
  double best_dist = std::fabs(static_cast<double>(x));
  for (int byte = 1; byte <= 0x7E; ++byte) {
    const double dist = std::fabs(static_cast<double>(x) - e4m3_decode(static_cast<uint8_t>(byte)));
    if (dist < best_dist || (dist == best_dist && (byte & 1) == 0 && (best & 1) == 1)) {
      best = byte;
      best_dist = dist;
    }
  }
  return static_cast<uint8_t>(best);
}

uint8_t e4m3_encode(float x) {
  if (!(x >= 0.0f) || std::isinf(x)) return x > 0.0f ? 0x7E : 0;  // callers pass finite x >= 0
  if (x > kE4M3Max) return 0x7E;
  if (x < std::ldexp(1.0f, -6))  // subnormal range: multiples of 2^-9 (8 * 2^-9 = 2^-6 is code 8)
    return static_cast<uint8_t>(std::nearbyint(std::ldexp(x, 9)));
  // Normal range: round the float32 mantissa to 3 bits, ties to even, on the bits; a carry
  // into the exponent is the right next value. Exponent bias 127 -> 7.
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t rounded = bits + 0x7FFFFu + ((bits >> 20) & 1u);
  const int code =
      (static_cast<int>(rounded >> 23) - 120) * 8 + static_cast<int>((rounded >> 20) & 7u);
  return static_cast<uint8_t>(std::min(code, 0x7E));
}

size_t nvfp4_block_count(size_t n_elements) {
  if (n_elements % kB != 0)
    throw Error("nvfp4", "row length " + std::to_string(n_elements) +
                             " is not a multiple of the block size " + std::to_string(kB));
  return n_elements / kB;
}

TensorScale quantize_nvfp4_ref(std::span<const float> x, std::span<Nvfp4Block> blocks,
                               const QuantOptions& options) {
  check_options(options);
  check_blocks(x.size(), blocks.size());
  TensorScale tensor_scale;
  tensor_scale.global_scale = global_scale_ref(x);
  for (size_t b = 0; b < blocks.size(); ++b) {
    const auto block = x.subspan(b * kB, kB);
    const BlockScale s = block_scale_ref(block, tensor_scale.global_scale);
    uint8_t codes[kB] = {};
    if (!std::isnan(s.divisor)) encode_block_ref(block, s.divisor, options.rounding, codes);
    blocks[b].scale = s.byte;
    pack_codes_split(codes, blocks[b].qs);
  }
  return tensor_scale;
}

void dequantize_nvfp4_ref(std::span<const Nvfp4Block> blocks, const TensorScale& tensor_scale,
                          std::span<float> out) {
  check_blocks(out.size(), blocks.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    const float divisor = e4m3_decode(blocks[b].scale) * tensor_scale.global_scale;
    uint8_t codes[kB];
    unpack_codes_split(blocks[b].qs, codes);
    for (int i = 0; i < kB; ++i)
      out[b * kB + i] = std::isnan(divisor) ? kNan : e2m1_decode(codes[i]) * divisor;
  }
}

void fake_quantize_nvfp4_ref(std::span<float> x, const QuantOptions& options) {
  check_options(options);
  const size_t n_blocks = nvfp4_block_count(x.size());
  const float g = global_scale_ref(x);
  for (size_t b = 0; b < n_blocks; ++b) {
    const auto block = x.subspan(b * kB, kB);
    const BlockScale s = block_scale_ref(block, g);
    uint8_t codes[kB] = {};
    if (!std::isnan(s.divisor)) encode_block_ref(block, s.divisor, options.rounding, codes);
    for (int i = 0; i < kB; ++i)
      block[i] = std::isnan(s.divisor) ? kNan : e2m1_decode(codes[i]) * s.divisor;
  }
}

TensorScale quantize_nvfp4(std::span<const float> x, std::span<Nvfp4Block> blocks,
                           const QuantOptions& options) {
  return mxfp4_avx2_available() ? quantize_nvfp4_avx2(x, blocks, options)
                                : quantize_nvfp4_ref(x, blocks, options);
}

void dequantize_nvfp4(std::span<const Nvfp4Block> blocks, const TensorScale& tensor_scale,
                      std::span<float> out) {
  if (mxfp4_avx2_available())
    dequantize_nvfp4_avx2(blocks, tensor_scale, out);
  else
    dequantize_nvfp4_ref(blocks, tensor_scale, out);
}

void fake_quantize_nvfp4(std::span<float> x, const QuantOptions& options) {
  if (mxfp4_avx2_available())
    fake_quantize_nvfp4_avx2(x, options);
  else
    fake_quantize_nvfp4_ref(x, options);
}

}  // namespace mxlens
