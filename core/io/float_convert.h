#pragma once
// Conversions between the stored 16-bit float formats and FP32. BF16 -> FP32 is a shift;
// F16 -> FP32 handles subnormals, infinities and NaN exactly (F16C when the CPU has it,
// otherwise the scalar path, which is the reference).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "core/io/safetensors.h"

namespace mxlens {

inline float bf16_to_f32(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest, ties to even; NaN stays NaN (quiet), infinities stay infinite.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu) != 0)
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  const uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

// Scalar reference, exact for every one of the 65536 patterns.
float f16_to_f32_ref(uint16_t h);
// Round to nearest, ties to even, overflow to infinity, subnormals kept.
uint16_t f32_to_f16(float f);

// Converts the little-endian bytes of `dtype` (F32, F16 or BF16; any alignment) to FP32.
// `source` names the tensor in the Error thrown for another dtype or a size mismatch.
void convert_to_f32(DType dtype, std::span<const std::byte> bytes, std::span<float> dst,
                    const std::string& source);

}  // namespace mxlens
