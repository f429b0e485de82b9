#pragma once
// Block rotations R (b×b orthogonal) applied as blockdiag(R) = I_{C/b} ⊗ R (algorithm.md §0,
// §5.3, §5.4), the seeded random pieces they are made of, and the seed derivation shared by
// every seeded transform (one stream per (seed, layer, site, stage)).
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "core/rotation/channel_transform.h"

namespace mxlens {

struct BlockRotation {
  Eigen::MatrixXf matrix;  // b×b, orthogonal
  int block_size() const { return int(matrix.rows()); }
  ChannelTransform transform() const;  // one block-rotation step
};

// Deterministic pseudo-random streams (splitmix64; identical on every platform and compiler,
// unlike std::normal_distribution).
class SeededRandom {
 public:
  explicit SeededRandom(uint64_t seed) : state_(seed) {}
  uint64_t next_u64();
  double uniform();   // [0, 1)
  double gaussian();  // standard normal (Box–Muller)

 private:
  uint64_t state_;
};

// One seed per (seed, layer, site, stage): a hash, so neighbouring inputs give unrelated streams.
uint64_t derive_seed(uint64_t seed, int layer, int site, int stage = 0);

// Q factor of the QR decomposition of a seeded n×n standard normal matrix, sign-normalized
// Q ← Q·diag(sign(diag(R_qr))) so it is a function of the seed alone (algorithm.md §4.3, §5.4).
Eigen::MatrixXd random_orthogonal_d(int n, uint64_t seed);
Eigen::MatrixXf random_orthogonal(int n, uint64_t seed);

// n values ±1 from the seed.
std::vector<float> random_signs(int n, uint64_t seed);

// Sylvester H_b/√b (b a power of two), with H·diag(s) random signs when sign_seed ≠ 0.
Eigen::MatrixXf block_hadamard(int b, uint64_t sign_seed = 0);

}  // namespace mxlens
