// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "core/rotation/channel_transform.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <type_traits>

#include "core/rotation/block_kernels.h"
#include "core/rotation/block_rotation.h"
#include "core/rotation/hadamard.h"
#include "core/util/error.h"

namespace mxlens {
namespace {

constexpr int64_t kChunkBlockRows = 2048;  // [2048, b] tile of the reshaped view

// Below this many values a step runs on one thread (a parallel region costs more than it saves,
// and far more on a loaded machine).
constexpr int64_t kMinParallelValues = int64_t(1) << 16;

int thread_count(int threads, int64_t values) {
  if (values < kMinParallelValues) return 1;
  return threads > 0 ? threads : omp_get_max_threads();
}

template <typename Scalar>
using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename Scalar>
using RowMap = Eigen::Map<RowMatrix<Scalar>, 0, Eigen::OuterStride<>>;

// x ← x·blockdiag(R) (or Rᵀ): every row of x is C/b consecutive blocks of b channels.
template <typename Scalar>
void apply_block_rotation(RowMap<Scalar> x, const Eigen::MatrixXf& R_float, bool transpose,
                          int threads) {
  const int64_t b = R_float.rows();
  RowMatrix<Scalar> R = R_float.cast<Scalar>();
  if (transpose) R.transposeInPlace();
  const int64_t rows = x.rows(), cols = x.cols();
  const bool contiguous = x.outerStride() == cols;
  // Contiguous: one [rows·C/b, b] view cut into tiles; strided: one tile per row.
  const int64_t block_rows = contiguous ? rows * cols / b : cols / b;
  const int64_t tiles = contiguous ? (block_rows + kChunkBlockRows - 1) / kChunkBlockRows : rows;
  const SingleThreadedBlas single_threaded_blas;
#pragma omp parallel num_threads(thread_count(threads, x.rows() * x.cols()))
  {
    RowMatrix<Scalar> buf;
#pragma omp for schedule(static)
    for (int64_t tile = 0; tile < tiles; ++tile) {
      Scalar* base;
      int64_t n;
      if (contiguous) {
        base = x.data() + tile * kChunkBlockRows * b;
        n = std::min(kChunkBlockRows, block_rows - tile * kChunkBlockRows);
      } else {
        base = x.data() + tile * x.outerStride();
        n = block_rows;
      }
      if constexpr (std::is_same_v<Scalar, float>) {
        if (rotate_rows_fast(base, n, int(b), R.data())) continue;
      }
      Eigen::Map<RowMatrix<Scalar>> z(base, n, b);
      buf.noalias() = z * R;
      z = buf;
    }
  }
}

template <typename Scalar>
void apply_permutation(RowMap<Scalar> x, const std::vector<int32_t>& perm, bool inverse,
                       int threads) {
  const int64_t rows = x.rows(), cols = x.cols();
#pragma omp parallel num_threads(thread_count(threads, x.rows() * x.cols()))
  {
    std::vector<Scalar> buf(static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      Scalar* row = x.data() + r * x.outerStride();
      if (inverse) {
        for (int64_t j = 0; j < cols; ++j) buf[size_t(perm[size_t(j)])] = row[j];
      } else {
        for (int64_t j = 0; j < cols; ++j) buf[size_t(j)] = row[perm[size_t(j)]];
      }
      std::copy(buf.begin(), buf.end(), row);
    }
  }
}

// Forward: x ← x·(H_m ⊗ H_k)·diag(s)/√n. Inverse: x ← x·diag(s)·(H_mᵀ ⊗ H_k)/√n.
// A row viewed as X (m×k, row-major) maps to H_mᵀ·X·H_k (or H_m·X·H_k): fast Walsh–Hadamard
// along each of the m segments, then an m×m mix of the segments.
template <typename Scalar>
void apply_full_hadamard(RowMap<Scalar> x, const ChannelTransform::Step& step, bool inverse,
                         int threads) {
  const int n = step.channels;
  int m = 1, k = 1;
  full_hadamard_factor(n, &m, &k);
  RowMatrix<Scalar> mix;  // left factor applied to X
  if (m > 1) {
    const Eigen::MatrixXd Hm = known_hadamard(m);
    if (inverse)
      mix = Hm.cast<Scalar>();
    else
      mix = Hm.transpose().cast<Scalar>();
  }
  const Scalar norm = Scalar(1.0 / std::sqrt(double(n)));
  const bool has_signs = !step.signs.empty();
  const int64_t rows = x.rows();
  const SingleThreadedBlas single_threaded_blas;
#pragma omp parallel num_threads(thread_count(threads, x.rows() * x.cols()))
  {
    RowMatrix<Scalar> buf(m, k);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      Scalar* row = x.data() + r * x.outerStride();
      if (inverse && has_signs)
        for (int j = 0; j < n; ++j) row[j] *= Scalar(step.signs[size_t(j)]);
      for (int a = 0; a < m; ++a) fwht(row + int64_t(a) * k, k);
      if (m > 1) {
        Eigen::Map<RowMatrix<Scalar>> X(row, m, k);
        buf.noalias() = mix * X;
        X = buf;
      }
      if (!inverse && has_signs) {
        for (int j = 0; j < n; ++j) row[j] *= norm * Scalar(step.signs[size_t(j)]);
      } else {
        for (int j = 0; j < n; ++j) row[j] *= norm;
      }
    }
  }
}

template <typename Scalar>
void apply_step(RowMap<Scalar> x, const ChannelTransform::Step& step, bool inverse, int threads) {
  switch (step.kind) {
    case ChannelTransform::StepKind::BlockRotation:
      apply_block_rotation<Scalar>(x, step.rotation, inverse, threads);
      return;
    case ChannelTransform::StepKind::Permutation:
      apply_permutation<Scalar>(x, step.permutation, inverse, threads);
      return;
    case ChannelTransform::StepKind::FullHadamard:
      apply_full_hadamard<Scalar>(x, step, inverse, threads);
      return;
  }
}

}  // namespace

void ChannelTransform::add_block_rotation(Eigen::MatrixXf R, double orthogonality_tolerance) {
  if (R.rows() == 0 || R.rows() != R.cols())
    throw Error("block rotation", "R must be square and non-empty, got " +
                                      std::to_string(R.rows()) + "×" + std::to_string(R.cols()));
  const Eigen::MatrixXd Rd = R.cast<double>();
  const double err =
      (Rd * Rd.transpose() - Eigen::MatrixXd::Identity(R.rows(), R.rows())).cwiseAbs().maxCoeff();
  if (!(err < orthogonality_tolerance))
    throw Error("block rotation",
                "R is not orthogonal (max |RRᵀ − I| = " + std::to_string(err) + ")");
  Step step;
  step.kind = StepKind::BlockRotation;
  step.rotation = std::move(R);
  steps_.push_back(std::move(step));
}

void ChannelTransform::add_permutation(std::vector<int32_t> perm) {
  std::vector<char> seen(perm.size(), 0);
  for (int32_t p : perm) {
    if (p < 0 || size_t(p) >= perm.size() || seen[size_t(p)])
      throw Error("permutation", "not a permutation of 0.." + std::to_string(perm.size()) +
                                     "−1 (bad or repeated entry " + std::to_string(p) + ")");
    seen[size_t(p)] = 1;
  }
  if (perm.empty()) throw Error("permutation", "empty permutation");
  Step step;
  step.kind = StepKind::Permutation;
  step.channels = int(perm.size());
  step.permutation = std::move(perm);
  steps_.push_back(std::move(step));
}

void ChannelTransform::add_full_hadamard(int channels, uint64_t sign_seed) {
  check_full_hadamard_size(channels);
  Step step;
  step.kind = StepKind::FullHadamard;
  step.channels = channels;
  step.sign_seed = sign_seed;
  if (sign_seed != 0) step.signs = random_signs(channels, sign_seed);
  steps_.push_back(std::move(step));
}

void ChannelTransform::append(const ChannelTransform& other) {
  steps_.insert(steps_.end(), other.steps_.begin(), other.steps_.end());
}

int ChannelTransform::channels_required() const {
  for (const Step& s : steps_)
    if (s.kind != StepKind::BlockRotation) return s.channels;
  return 0;
}

int ChannelTransform::channel_multiple() const {
  int multiple = 1;
  for (const Step& s : steps_)
    if (s.kind == StepKind::BlockRotation) multiple = std::lcm(multiple, int(s.rotation.rows()));
  return multiple;
}

bool ChannelTransform::accepts(int channels) const {
  if (channels <= 0 || channels % channel_multiple() != 0) return false;
  for (const Step& s : steps_)
    if (s.kind != StepKind::BlockRotation && s.channels != channels) return false;
  return true;
}

void ChannelTransform::check_channels(int channels, const std::string& source) const {
  if (accepts(channels)) return;
  std::string need;
  if (const int required = channels_required(); required > 0) {
    need = "exactly " + std::to_string(required) + " channels";
    for (const Step& s : steps_)
      if (s.kind != StepKind::BlockRotation && s.channels != required)
        need = "steps of different sizes (" + std::to_string(required) + " and " +
               std::to_string(s.channels) + ")";
  }
  if (channel_multiple() > 1) {
    if (!need.empty()) need += ", ";
    need += "a multiple of " + std::to_string(channel_multiple()) + " channels";
  }
  throw Error(source, "channel transform does not fit " + std::to_string(channels) +
                          " channels (it needs " + need + ")");
}

void ChannelTransform::apply_rows(Eigen::Ref<RowMatrixXf> x, int threads) const {
  if (steps_.empty()) return;
  check_channels(int(x.cols()), "channel transform");
  RowMap<float> map(x.data(), x.rows(), x.cols(), Eigen::OuterStride<>(x.outerStride()));
  for (const Step& s : steps_) apply_step<float>(map, s, false, threads);
}

void ChannelTransform::apply_rows_inverse(Eigen::Ref<RowMatrixXf> x, int threads) const {
  if (steps_.empty()) return;
  check_channels(int(x.cols()), "channel transform");
  RowMap<float> map(x.data(), x.rows(), x.cols(), Eigen::OuterStride<>(x.outerStride()));
  for (auto it = steps_.rbegin(); it != steps_.rend(); ++it)
    apply_step<float>(map, *it, true, threads);
}

Eigen::MatrixXd ChannelTransform::dense(int channels) const {
  if (!steps_.empty()) check_channels(channels, "channel transform");
  RowMatrix<double> T = RowMatrix<double>::Identity(channels, channels);
  RowMap<double> map(T.data(), channels, channels, Eigen::OuterStride<>(channels));
  for (const Step& s : steps_) apply_step<double>(map, s, false, 1);
  return T;
}

}  // namespace mxlens
