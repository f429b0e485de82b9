#pragma once
// FP4 E2M1 element codes (algorithm.md §1.1, formats.md §6.2). A code is 4 bits: bit 3 sign,
// bits 2..0 the magnitude index m (two exponent bits, one mantissa bit, bias 1).
// No Inf, no NaN; largest magnitude 6.
#include <cmath>
#include <cstdint>

#include "core/mx/quant_options.h"

namespace mxlens {

// Value of every code; code 8 is -0 (decoders accept it, mxlens encoders never write it).
inline constexpr float kE2M1Values[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                          -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
inline constexpr float kE2M1Max = 6.0f;
inline constexpr uint8_t kE2M1SignBit = 0x8;

constexpr float e2m1_decode(uint8_t code) {
  return kE2M1Values[code & 0xF];
}

// Reference encoder, brute force: the code whose value is nearest to v among all 16. Ties go
// to the even-mantissa code (rne) or to the first code in index order, i.e. the smaller
// magnitude (ggml). Magnitudes of 6 and beyond (±Inf too) saturate to ±6.
// -0.0 and every v that rounds to zero give code 0. NaN gives code 0 (block code never
// passes NaN here: a block holding NaN is marked as a whole, see mxfp4.h).
inline uint8_t e2m1_encode_ref(float v, Rounding rounding) {
  // Saturation first (§1.1: |v| >= 6 -> m = 7): for huge |v| the distances below would all
  // round to the same double.
  if (std::fabs(v) >= kE2M1Max) return std::signbit(v) ? 0xF : 0x7;
  int best = 0;
  double best_dist = std::fabs(static_cast<double>(v) - kE2M1Values[0]);
  for (int code = 1; code < 16; ++code) {
    // In double the difference of a float and a grid value is exact wherever a tie can occur.
    const double dist = std::fabs(static_cast<double>(v) - kE2M1Values[code]);
    bool better = dist < best_dist;
    if (rounding == Rounding::rne && dist == best_dist && (code & 1) == 0 && (best & 1) == 1)
      better = true;
    if (better) {
      best = code;
      best_dist = dist;
    }
  }
  return best == 0x8 ? 0 : static_cast<uint8_t>(best);
}

}  // namespace mxlens
