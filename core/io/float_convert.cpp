#include "core/io/float_convert.h"

#include <bit>
#include <cmath>

#include "core/util/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MXLENS_HAVE_X86 1
#endif

namespace mxlens {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

float f16_to_f32_ref(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  uint32_t bits;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24 is exact in FP32.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13) | (mantissa ? 0x00400000u : 0u);
  } else {
    bits = sign | ((exponent - 15 + 127) << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(bits);
}

uint16_t f32_to_f16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) return sign | (abs > 0x7F800000u ? 0x7E00u : 0x7C00u);
  if (abs >= 0x477FF000u) return sign | 0x7C00u;                   // >= 65520 rounds to infinity
  if (abs < 0x38800000u) {                                         // below 2^-14: subnormal or zero
    const float scaled = std::bit_cast<float>(abs) * 16777216.0f;  // exact: * 2^24
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));   // ties to even
  }
  const uint32_t exponent = (abs >> 23) - 127 + 15;
  const uint32_t mantissa = abs & 0x7FFFFFu;
  uint32_t h = (exponent << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent
  return sign | static_cast<uint16_t>(h);
}

namespace {

void f32_copy(const std::byte* src, float* dst, size_t n) {
  std::memcpy(dst, src, n * sizeof(float));
}

void bf16_to_f32_loop(const std::byte* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, sizeof h);
    const uint32_t bits = uint32_t(h) << 16;
    std::memcpy(dst + i, &bits, sizeof bits);
  }
}

void f16_to_f32_scalar(const std::byte* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, sizeof h);
    dst[i] = f16_to_f32_ref(h);
  }
}

#ifdef MXLENS_HAVE_X86
__attribute__((target("avx,f16c"))) void f16_to_f32_f16c(const std::byte* src, float* dst,
                                                         size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  f16_to_f32_scalar(src + 2 * i, dst + i, n - i);
}

bool cpu_has_f16c() {
  static const bool has = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  return has;
}
#endif

}  // namespace

void convert_to_f32(DType dtype, std::span<const std::byte> bytes, std::span<float> dst,
                    const std::string& source) {
  const int element_bytes = dtype_bits(dtype) / 8;
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16)
    throw Error(source, std::string("dtype ") + dtype_name(dtype) + " cannot be read as floats");
  if (bytes.size() != dst.size() * element_bytes)
    throw Error(source, std::to_string(bytes.size()) + " bytes do not hold " +
                            std::to_string(dst.size()) + " " + dtype_name(dtype) + " values");
  const size_t n = dst.size();
  switch (dtype) {
    case DType::F32:
      f32_copy(bytes.data(), dst.data(), n);
      break;
    case DType::BF16:
      bf16_to_f32_loop(bytes.data(), dst.data(), n);
      break;
    default:
#ifdef MXLENS_HAVE_X86
      if (cpu_has_f16c()) {
        f16_to_f32_f16c(bytes.data(), dst.data(), n);
        break;
      }
#endif
      f16_to_f32_scalar(bytes.data(), dst.data(), n);
      break;
  }
}

}  // namespace mxlens
