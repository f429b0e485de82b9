#pragma once
// E8M0 block scale (algorithm.md §1.2, formats.md §6.1): one unsigned byte e, value
// 2^(e-127) for e in 0..254, e = 0xFF is NaN. No zero, no infinity.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>

namespace mxlens {

inline constexpr uint8_t kE8M0Nan = 0xFF;
inline constexpr int kE8M0MinExponent = -127;
inline constexpr int kE8M0MaxExponent = 127;

// 2^(e-127) as float32; e = 0 is the subnormal 2^-127 (bits 0x00400000), 0xFF is NaN.
inline float e8m0_decode(uint8_t e) {
  if (e == kE8M0Nan) return std::numeric_limits<float>::quiet_NaN();
  if (e == 0) return std::bit_cast<float>(uint32_t{0x00400000});
  return std::bit_cast<float>(static_cast<uint32_t>(e) << 23);
}

// Byte for the unbiased exponent k, clamped to [-127, 127].
constexpr uint8_t e8m0_encode(int k) {
  return static_cast<uint8_t>(std::clamp(k, kE8M0MinExponent, kE8M0MaxExponent) + 127);
}

constexpr int e8m0_exponent(uint8_t e) {
  return static_cast<int>(e) - 127;
}

}  // namespace mxlens
