#include "core/rotation/block_kernels.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// OpenBLAS's thread count is process-wide with no standard BLAS interface; looked up weakly so
// another BLAS still links.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
extern "C" int openblas_get_num_threads(void) __attribute__((weak));

namespace mxlens {

SingleThreadedBlas::SingleThreadedBlas() {
  if (openblas_set_num_threads && openblas_get_num_threads) {
    previous_ = openblas_get_num_threads();
    if (previous_ != 1) openblas_set_num_threads(1);
  }
}

SingleThreadedBlas::~SingleThreadedBlas() {
  if (previous_ > 1) openblas_set_num_threads(previous_);
}

namespace {

#if defined(__AVX512F__)
// z ← z·R in place for n rows of 32 floats, R 32×32 row-major: four rows at a time, each
// output row in two registers, R's rows streamed from L1 (a 32×32 GEMM through BLAS spends
// most of its time packing).
void rotate_rows32_avx512(float* z, int64_t n, const float* R) {
  int64_t r = 0;
  for (; r + 4 <= n; r += 4) {
    float* x = z + r * 32;
    __m512 acc[8];
    for (__m512& a : acc) a = _mm512_setzero_ps();
    for (int i = 0; i < 32; ++i) {
      const __m512 lo = _mm512_loadu_ps(R + i * 32), hi = _mm512_loadu_ps(R + i * 32 + 16);
      for (int q = 0; q < 4; ++q) {
        const __m512 v = _mm512_set1_ps(x[q * 32 + i]);
        acc[2 * q] = _mm512_fmadd_ps(v, lo, acc[2 * q]);
        acc[2 * q + 1] = _mm512_fmadd_ps(v, hi, acc[2 * q + 1]);
      }
    }
    for (int q = 0; q < 4; ++q) {
      _mm512_storeu_ps(x + q * 32, acc[2 * q]);
      _mm512_storeu_ps(x + q * 32 + 16, acc[2 * q + 1]);
    }
  }
  for (; r < n; ++r) {
    float* x = z + r * 32;
    __m512 lo_acc = _mm512_setzero_ps(), hi_acc = _mm512_setzero_ps();
    for (int i = 0; i < 32; ++i) {
      const __m512 v = _mm512_set1_ps(x[i]);
      lo_acc = _mm512_fmadd_ps(v, _mm512_loadu_ps(R + i * 32), lo_acc);
      hi_acc = _mm512_fmadd_ps(v, _mm512_loadu_ps(R + i * 32 + 16), hi_acc);
    }
    _mm512_storeu_ps(x, lo_acc);
    _mm512_storeu_ps(x + 16, hi_acc);
  }
}
#endif

}  // namespace

bool rotate_rows_fast(float* z, int64_t n, int b, const float* R) {
#if defined(__AVX512F__)
  if (b == 32) {
    rotate_rows32_avx512(z, n, R);
    return true;
  }
#endif
  (void)z;
  (void)n;
  (void)b;
  (void)R;
  return false;
}

}  // namespace mxlens
