// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "core/rotation/hadamard.h"

#include <string>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "core/util/error.h"

namespace mxlens {
namespace {

bool is_power_of_two(int n) {
  return n > 0 && (n & (n - 1)) == 0;
}

// Quadratic character of a mod the prime q: 0, +1 (non-zero square) or −1.
int legendre(int a, int q) {
  a = ((a % q) + q) % q;
  if (a == 0) return 0;
  for (int x = 1; x < q; ++x)
    if ((x * x) % q == a) return 1;
  return -1;
}

// Jacobsthal matrix Q[i][j] = χ(j − i), q×q.
Eigen::MatrixXd jacobsthal(int q) {
  Eigen::MatrixXd Q(q, q);
  for (int i = 0; i < q; ++i)
    for (int j = 0; j < q; ++j) Q(i, j) = legendre(j - i, q);
  return Q;
}

// Paley I, q prime ≡ 3 mod 4: H = I + S, S = [[0, 1ᵀ], [−1, Q]] skew-symmetric, order q+1.
Eigen::MatrixXd paley_one(int q) {
  const int n = q + 1;
  Eigen::MatrixXd S = Eigen::MatrixXd::Zero(n, n);
  S.block(0, 1, 1, q).setOnes();
  S.block(1, 0, q, 1).setConstant(-1.0);
  S.block(1, 1, q, q) = jacobsthal(q);
  return Eigen::MatrixXd::Identity(n, n) + S;
}

// Paley II, q prime ≡ 1 mod 4: C = [[0, 1ᵀ], [1, Q]] symmetric conference matrix of order
// q+1; H = C ⊗ [[1, 1], [1, −1]] + I ⊗ [[1, −1], [−1, −1]], order 2(q+1).
Eigen::MatrixXd paley_two(int q) {
  const int c = q + 1;
  Eigen::MatrixXd C = Eigen::MatrixXd::Zero(c, c);
  C.block(0, 1, 1, q).setOnes();
  C.block(1, 0, q, 1).setOnes();
  C.block(1, 1, q, q) = jacobsthal(q);
  Eigen::MatrixXd H(2 * c, 2 * c);
  for (int i = 0; i < c; ++i)
    for (int j = 0; j < c; ++j) {
      if (i == j) {
        H(2 * i, 2 * j) = 1;
        H(2 * i, 2 * j + 1) = -1;
        H(2 * i + 1, 2 * j) = -1;
        H(2 * i + 1, 2 * j + 1) = -1;
      } else {
        const double v = C(i, j);
        H(2 * i, 2 * j) = v;
        H(2 * i, 2 * j + 1) = v;
        H(2 * i + 1, 2 * j) = v;
        H(2 * i + 1, 2 * j + 1) = -v;
      }
    }
  return H;
}

template <typename T>
void fwht_impl(T* x, int n) {
  for (int h = 1; h < n; h <<= 1)
    for (int i = 0; i < n; i += 2 * h)
      for (int j = i; j < i + h; ++j) {
        const T a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
}

#if defined(__AVX512F__)
// Levels h = 1, 2, 4, 8 of the transform inside each 16-float register: lane i pairs with
// lane i^h; lanes with (i & h) == 0 get a + b, the others a − b (a = x[i^h], b = x[i]). The
// same float additions as the scalar loop, so the result is bit for bit the same.
void fwht_levels_below_16(float* x, int n) {
  __m512i pair[4];
  __mmask16 upper[4];
  for (int level = 0; level < 4; ++level) {
    alignas(64) int32_t idx[16];
    unsigned mask = 0;
    for (int i = 0; i < 16; ++i) {
      idx[i] = i ^ (1 << level);
      if (i & (1 << level)) mask |= 1u << i;
    }
    pair[level] = _mm512_load_si512(idx);
    upper[level] = __mmask16(mask);
  }
  for (int i = 0; i < n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    for (int level = 0; level < 4; ++level) {
      const __m512 p = _mm512_permutexvar_ps(pair[level], v);
      v = _mm512_mask_blend_ps(upper[level], _mm512_add_ps(v, p), _mm512_sub_ps(p, v));
    }
    _mm512_storeu_ps(x + i, v);
  }
}
#endif

void fwht_float(float* x, int n) {
  int h = 1;
#if defined(__AVX512F__)
  if (n >= 16) {
    fwht_levels_below_16(x, n);
    h = 16;
  }
#endif
  for (; h < n; h <<= 1)
    for (int i = 0; i < n; i += 2 * h)
      for (int j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
}

}  // namespace

Eigen::MatrixXd sylvester_hadamard(int n) {
  if (!is_power_of_two(n))
    throw Error("Hadamard", "Sylvester Hadamard of size " + std::to_string(n) +
                                " unsupported (needs a power of two)");
  Eigen::MatrixXd H = Eigen::MatrixXd::Ones(1, 1);
  while (H.rows() < n) {
    const Eigen::Index k = H.rows();
    Eigen::MatrixXd next(2 * k, 2 * k);
    next << H, H, H, -H;
    H = std::move(next);
  }
  return H;
}

Eigen::MatrixXd known_hadamard(int m) {
  if (m == 12) return paley_one(11);
  if (m == 20) return paley_one(19);
  if (m == 28) return paley_two(13);
  if (m == 1 || m == 2 || m == 4) return sylvester_hadamard(m);
  throw Error("Hadamard", "no known Hadamard matrix of order " + std::to_string(m) +
                              " (have 1, 2, 4, 12, 20, 28)");
}

bool full_hadamard_factor(int n, int* m, int* power_of_two) {
  if (n <= 0) return false;
  for (int base : {1, 12, 20, 28}) {
    if (n % base == 0 && is_power_of_two(n / base)) {
      if (m) *m = base;
      if (power_of_two) *power_of_two = n / base;
      return true;
    }
  }
  return false;
}

bool full_hadamard_supported(int n) {
  return full_hadamard_factor(n, nullptr, nullptr);
}

void check_full_hadamard_size(int n) {
  if (!full_hadamard_supported(n))
    throw Error("full Hadamard", "full Hadamard of size " + std::to_string(n) +
                                     " unsupported (sizes m·2^p with m in {1, 12, 20, 28})");
}

Eigen::MatrixXd full_hadamard_matrix(int n) {
  check_full_hadamard_size(n);
  int m = 1, k = 1;
  full_hadamard_factor(n, &m, &k);
  const Eigen::MatrixXd A = known_hadamard(m);
  const Eigen::MatrixXd B = sylvester_hadamard(k);
  Eigen::MatrixXd H(n, n);
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) H.block(a * k, b * k, k, k) = A(a, b) * B;
  return H;
}

void fwht(float* x, int n) {
  fwht_float(x, n);
}
void fwht(double* x, int n) {
  fwht_impl(x, n);
}

}  // namespace mxlens
