#pragma once
// Scalar MXFP4 rules shared by the kernels (algorithm.md §1): block scale, element rounding,
// element values. Written as __host__ __device__ with plain float operators so that the same
// code is checked on the host against core/mx (tests/gpu/test_mxfp4_kernel_rules.cpp, which
// needs no device and no CUDA headers); the target is compiled with
// --fmad=false -prec-div=true -ftz=false, so `a / b` and `a * b` are single IEEE roundings
// on the device exactly as on the host.
#include <cstdint>
#include <cstring>

#include "core/mx/quant_options.h"

#if defined(__CUDACC__)
#define MXLENS_HD __host__ __device__ __forceinline__
#else
#define MXLENS_HD inline
#endif

namespace mxlens::gpu::detail {

using mxlens::Rounding;
using mxlens::ScaleRule;  // dqv2_log8 is not a kernel rule (the host API rejects it)

MXLENS_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
#endif
}

MXLENS_HD float bits_float(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
#endif
}

constexpr uint32_t kQuietNanBits = 0x7fc00000u;
constexpr uint8_t kE8m0Nan = 0xFF;

// 2^k for k in [-149, 127], built from bits: exact, no exp2f.
MXLENS_HD float exp2i(int k) {
  if (k >= -126) return bits_float(static_cast<uint32_t>(k + 127) << 23);
  return bits_float(1u << (k + 149));
}

MXLENS_HD int clamp_int(int v, int lo, int hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

struct BlockScale {
  uint8_t e8m0;  // the stored byte
  float scale;   // what the elements are divided by, and the codes multiplied with
};

// Block scale from the bits of max|x| (sign cleared). For non-negative floats the integer
// order of the bits is the order of the values, and anything from 0x7f800000 up is Inf/NaN.
MXLENS_HD BlockScale block_scale(uint32_t amax_bits, ScaleRule rule) {
  if (amax_bits >= 0x7f800000u) return {kE8m0Nan, bits_float(kQuietNanBits)};
  const int field = static_cast<int>(amax_bits >> 23);  // biased exponent; 0: zero/denormal
  switch (rule) {
    case ScaleRule::ocp_floor: {
      // k = floor(log2 a) - 2 clamped to [-127, 127]. floor(log2 a) is the unbiased exponent
      // field for a normal a; zero and denormals give k < -127, clamped to -127.
      const int k = field == 0 ? -127 : clamp_int(field - 127 - 2, -127, 127);
      return {static_cast<uint8_t>(k + 127), exp2i(k)};
    }
    case ScaleRule::fpquant: {
      // k = floor(log2 max(a, 2^-126)) - 2, then clamped to >= -127 as core/mx does, so the
      // byte and the scale agree; scale 2^k * 4/3 in float32.
      const int k = clamp_int((field < 1 ? 1 : field) - 127 - 2, -127, 127);
      return {static_cast<uint8_t>(k + 127), exp2i(k) * (4.0f / 3.0f)};
    }
    case ScaleRule::rceil: {
      // d = a / 6 in float32, k = ceil(log2 d) clamped to [-127, 127]: the mantissa test is
      // exact for normal d; a denormal d is above 2^-127 exactly when its top bit is set
      // with others, and everything at or below 2^-127 clamps to -127.
      const uint32_t d_bits = float_bits(bits_float(amax_bits) / 6.0f);
      const int d_field = static_cast<int>(d_bits >> 23);
      const uint32_t mantissa = d_bits & 0x7fffffu;
      int k = -127;
      if (d_field != 0) {
        k = d_field - 127 + (mantissa != 0 ? 1 : 0);
      } else if (mantissa > 0x400000u) {
        k = -126;
      }
      k = clamp_int(k, -127, 127);
      return {static_cast<uint8_t>(k + 127), exp2i(k)};
    }
    case ScaleRule::dqv2_log8:
      break;  // needs the whole tensor; never launched
  }
  return {kE8m0Nan, bits_float(kQuietNanBits)};
}

// Magnitude index 0..7 of m = |x / scale| on the E2M1 grid 0, .5, 1, 1.5, 2, 3, 4, 6,
// saturating at 6. RNE sends exact ties to the even mantissa bit (0.75 -> 1, 1.75 -> 2,
// 3.5 -> 4; 0.25 -> 0, 1.25 -> 1, 2.5 -> 2, 5 -> 4); ggml ties send every tie to the
// smaller magnitude (its first-best scan in code order).
MXLENS_HD uint32_t e2m1_magnitude(float m, Rounding rounding) {
  if (rounding == Rounding::rne) {
    return m <= 0.25f   ? 0u
           : m < 0.75f  ? 1u
           : m <= 1.25f ? 2u
           : m < 1.75f  ? 3u
           : m <= 2.5f  ? 4u
           : m < 3.5f   ? 5u
           : m <= 5.0f  ? 6u
                        : 7u;
  }
  return m <= 0.25f   ? 0u
         : m <= 0.75f ? 1u
         : m <= 1.25f ? 2u
         : m <= 1.75f ? 3u
         : m <= 2.5f  ? 4u
         : m <= 3.5f  ? 5u
         : m <= 5.0f  ? 6u
                      : 7u;
}

// 4-bit code of x: sign bit 8 | magnitude index. Zero results (and -0.0) give code 0, so
// code 8 is never produced.
MXLENS_HD uint32_t encode_e2m1(float x, float scale, Rounding rounding) {
  const float v = x / scale;
  const uint32_t magnitude = e2m1_magnitude(v < 0.0f ? -v : v, rounding);
  const uint32_t sign = (magnitude != 0 && (float_bits(x) >> 31)) ? 8u : 0u;
  return sign | magnitude;
}

// The same code with the quotient formed as x · 2^-k, for a power-of-two scale 2^k (every rule
// but fpquant; `inverse_scale` = inverse_power_scale(byte)): x · 2^-k and x / 2^k are the same
// real number, and 2^-k is exact for k in [-127, 127], so the single IEEE rounding of each gives
// the same float (denormals kept: the target is built with -ftz=false). A multiplication is
// far cheaper than an IEEE division on the device.
MXLENS_HD uint32_t encode_e2m1_pow2(float x, float inverse_scale, Rounding rounding) {
  const float v = x * inverse_scale;
  const uint32_t magnitude = e2m1_magnitude(v < 0.0f ? -v : v, rounding);
  const uint32_t sign = (magnitude != 0 && (float_bits(x) >> 31)) ? 8u : 0u;
  return sign | magnitude;
}

// 2^-k for the E8M0 byte k + 127 of a power-of-two scale (byte 0..254).
MXLENS_HD float inverse_power_scale(uint8_t e8m0) {
  return exp2i(127 - static_cast<int>(e8m0));
}

// Value of a code: the magnitudes doubled are the small integers 0,1,2,3,4,6,8,12.
MXLENS_HD float e2m1_value(uint32_t code) {
  constexpr uint32_t kDoubled = 0xC8643210u;  // nibble i = 2 * value of magnitude i
  const float magnitude = static_cast<float>((kDoubled >> (4 * (code & 7u))) & 0xFu) * 0.5f;
  return (code & 8u) ? -magnitude : magnitude;
}

// Dequantization scale of a stored E8M0 byte (0xFF is NaN).
MXLENS_HD float stored_scale(uint8_t e8m0, ScaleRule rule) {
  if (e8m0 == kE8m0Nan) return bits_float(kQuietNanBits);
  const float power = exp2i(static_cast<int>(e8m0) - 127);
  return rule == ScaleRule::fpquant ? power * (4.0f / 3.0f) : power;
}

}  // namespace mxlens::gpu::detail
