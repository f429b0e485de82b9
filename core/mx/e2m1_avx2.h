#pragma once
// AVX2 building blocks shared by the MXFP4 and NVFP4 fast paths. Internal to core/mx: include
// only from *_avx2.cpp files, whose functions carry MXLENS_TARGET_AVX2 and run only after
// __builtin_cpu_supports says AVX2 and FMA are there. Every function here has a scalar twin
// in the reference (e2m1_encode_ref, e2m1_decode, pack_codes_split) that it must match bit
// for bit; test_mxfp4.cpp / test_nvfp4.cpp hold them to that.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "core/mx/quant_options.h"

#define MXLENS_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace mxlens::avx2 {

// E2M1 codes (as int32 lanes, 0..15, never 8) of v = x/scale for 8 floats. Threshold form of
// nearest rounding (algorithm.md §1.1): m counts the decision points below |v|; a tie sits
// on a decision point, so RNE uses >= where the upper neighbour is even (0.75, 1.75, 3.5)
// and ggml uses > everywhere (ties to the smaller magnitude). |v| > 5 gives m = 7:
// saturation needs no extra step. The sign comes from v's sign bit, dropped when m = 0.
template <int kPredicate>
MXLENS_TARGET_AVX2 inline __m256i above(__m256 abs_v, float point) {  // lanes -1 or 0
  return _mm256_castps_si256(_mm256_cmp_ps(abs_v, _mm256_set1_ps(point), kPredicate));
}

template <Rounding kRounding>
MXLENS_TARGET_AVX2 inline __m256i e2m1_codes(__m256 v) {
  constexpr int kUp = kRounding == Rounding::rne ? _CMP_GE_OQ : _CMP_GT_OQ;
  const __m256 abs_v = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
  // m = number of decision points below |v|, summed as a tree (the masks are -1 or 0).
  const __m256i s01 = _mm256_add_epi32(above<_CMP_GT_OQ>(abs_v, 0.25f), above<kUp>(abs_v, 0.75f));
  const __m256i s23 = _mm256_add_epi32(above<_CMP_GT_OQ>(abs_v, 1.25f), above<kUp>(abs_v, 1.75f));
  const __m256i s45 = _mm256_add_epi32(above<_CMP_GT_OQ>(abs_v, 2.5f), above<kUp>(abs_v, 3.5f));
  const __m256i s6 = above<_CMP_GT_OQ>(abs_v, 5.0f);
  const __m256i m =
      _mm256_sub_epi32(_mm256_setzero_si256(),
                       _mm256_add_epi32(_mm256_add_epi32(s01, s23), _mm256_add_epi32(s45, s6)));
  const __m256i sign8 =
      _mm256_srli_epi32(_mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(INT32_MIN)), 28);
  const __m256i nonzero = _mm256_cmpgt_epi32(m, _mm256_setzero_si256());
  return _mm256_or_si256(m, _mm256_and_si256(sign8, nonzero));
}

// e2m1_decode(code) * scale for 8 codes (int32 lanes 0..15): the magnitude from an 8-entry
// table times scale, then the sign bit; identical to the scalar product since IEEE rounding
// is symmetric in sign. Code 8 gives -0.0 as the scalar table does.
MXLENS_TARGET_AVX2 inline __m256 e2m1_values(__m256i codes, __m256 scale) {
  const __m256 magnitudes = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
  const __m256i index = _mm256_and_si256(codes, _mm256_set1_epi32(7));
  const __m256 value = _mm256_mul_ps(_mm256_permutevar8x32_ps(magnitudes, index), scale);
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(codes, _mm256_set1_epi32(8)), 28);
  return _mm256_or_ps(value, _mm256_castsi256_ps(sign));
}

// The low byte of each of 8 int32 lanes, in lane order, as 8 bytes.
MXLENS_TARGET_AVX2 inline void store_low_bytes(__m256i lanes, uint8_t* out) {
  const __m256i gather =
      _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1,
                       -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  __m256i bytes = _mm256_shuffle_epi8(lanes, gather);
  bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
  const long long packed = _mm_cvtsi128_si64(_mm256_castsi256_si128(bytes));
  std::memcpy(out, &packed, 8);
}

// The low bytes of 16 int32 lanes (lo: lanes 0..7, hi: lanes 8..15; values < 256) as 16
// bytes in lane order.
MXLENS_TARGET_AVX2 inline void store_low_bytes_16(__m256i lo, __m256i hi, uint8_t* out) {
  // packus works per 128-bit half: words [lo0-3 hi0-3 | lo4-7 hi4-7], then bytes likewise.
  const __m256i words = _mm256_packus_epi32(lo, hi);
  const __m256i bytes = _mm256_packus_epi16(words, words);
  const __m256i ordered =
      _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(ordered));
}

// 8 bytes -> 8 codes each: low nibbles and high nibbles as int32 lanes.
MXLENS_TARGET_AVX2 inline void load_nibbles(const uint8_t* in, __m256i& low, __m256i& high) {
  const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(in)));
  low = _mm256_and_si256(bytes, _mm256_set1_epi32(0xF));
  high = _mm256_srli_epi32(bytes, 4);
}

// max over 8 int32 lanes.
MXLENS_TARGET_AVX2 inline uint32_t horizontal_max_epi32(__m256i v) {
  __m128i m = _mm_max_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(1, 0, 3, 2)));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(2, 3, 0, 1)));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(m));
}

// |x| as int bits (ordered like the floats they are; NaN above Inf).
MXLENS_TARGET_AVX2 inline __m256i abs_bits(__m256 x) {
  return _mm256_and_si256(_mm256_castps_si256(x), _mm256_set1_epi32(0x7FFFFFFF));
}

inline constexpr uint32_t kInfBits = 0x7F800000u;

}  // namespace mxlens::avx2
