// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "core/rotation/block_rotation.h"

#include <cmath>
#include <numbers>

#include "core/rotation/hadamard.h"
#include "core/util/error.h"

namespace mxlens {

ChannelTransform BlockRotation::transform() const {
  ChannelTransform t;
  t.add_block_rotation(matrix);
  return t;
}

uint64_t SeededRandom::next_u64() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double SeededRandom::uniform() {
  return double(next_u64() >> 11) * 0x1.0p-53;
}

double SeededRandom::gaussian() {
  // Box–Muller on (0, 1]: u1 never 0, so log is finite.
  const double u1 = 1.0 - uniform();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

uint64_t derive_seed(uint64_t seed, int layer, int site, int stage) {
  SeededRandom r(seed);
  uint64_t h = r.next_u64();
  for (int64_t part : {int64_t(layer), int64_t(site), int64_t(stage)}) {
    SeededRandom mix(h ^ (uint64_t(part) * 0xD6E8FEB86659FD93ull));
    h = mix.next_u64();
  }
  return h;
}

Eigen::MatrixXd random_orthogonal_d(int n, uint64_t seed) {
  if (n <= 0) throw Error("random orthogonal", "size must be positive, got " + std::to_string(n));
  SeededRandom rng(seed);
  Eigen::MatrixXd G(n, n);
  // Row-major fill order, so the matrix does not depend on Eigen's storage order.
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) G(i, j) = rng.gaussian();
  // QR with a positive diagonal of R, column by column (Gram–Schmidt, orthogonalized twice
  // for float-level stability): this Q is exactly Householder's Q·diag(sign(diag(R_qr))).
  // Plain loops over the contiguous columns (Eigen's AVX-512 double reductions trip a GCC 12
  // -Wmaybe-uninitialized false positive).
  Eigen::MatrixXd Q = G;
  auto column = [&](int j) { return Q.data() + int64_t(j) * n; };
  auto dot = [n](const double* a, const double* b) {
    double s = 0;
    for (int t = 0; t < n; ++t) s += a[t] * b[t];
    return s;
  };
  for (int j = 0; j < n; ++j) {
    double* qj = column(j);
    for (int pass = 0; pass < 2; ++pass)
      for (int i = 0; i < j; ++i) {
        const double* qi = column(i);
        const double c = dot(qi, qj);
        for (int t = 0; t < n; ++t) qj[t] -= c * qi[t];
      }
    const double norm = std::sqrt(dot(qj, qj));
    if (!(norm > 0))
      throw Error("random orthogonal",
                  "singular Gaussian draw (seed " + std::to_string(seed) + ")");
    for (int t = 0; t < n; ++t) qj[t] /= norm;
  }
  return Q;
}

Eigen::MatrixXf random_orthogonal(int n, uint64_t seed) {
  return random_orthogonal_d(n, seed).cast<float>();
}

std::vector<float> random_signs(int n, uint64_t seed) {
  SeededRandom rng(seed);
  std::vector<float> s(size_t(std::max(n, 0)));
  for (float& v : s) v = (rng.next_u64() >> 63) ? -1.0f : 1.0f;
  return s;
}

Eigen::MatrixXf block_hadamard(int b, uint64_t sign_seed) {
  Eigen::MatrixXd H = sylvester_hadamard(b) / std::sqrt(double(b));
  if (sign_seed != 0) {
    const std::vector<float> s = random_signs(b, sign_seed);
    for (int j = 0; j < b; ++j) H.col(j) *= double(s[size_t(j)]);
  }
  return H.cast<float>();
}

}  // namespace mxlens
