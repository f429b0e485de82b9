#pragma once
// Internal: the in-place 32×32 block product z ← z·R that both ChannelTransform::apply_rows
// and the greedy search run on every row of their [rows, 32] views.
#include <cstdint>

namespace mxlens {

// z (n rows of b floats, contiguous) ← z·R, R b×b row-major. Returns false, touching nothing,
// when no fast kernel exists for b on this build (then the caller runs a GEMM).
bool rotate_rows_fast(float* z, int64_t n, int b, const float* R);

// While alive, OpenBLAS runs single-threaded (all threading here is OpenMP's: two spinning
// thread pools on the same cores are many times slower); the caller's setting comes back after.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas();
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace mxlens
