// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "core/rotation/greedy_search.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "core/rotation/block_kernels.h"
#include "core/util/error.h"

namespace mxlens {
namespace {

// Fixed tile of Z rows: results do not depend on the thread count.
constexpr int64_t kTileRows = 2048;
// Below this many entries of Z a step runs on one thread: a parallel region per step costs
// more than it saves on small inputs, and far more on a loaded machine (spinning threads).
constexpr int64_t kMinParallelEntries = int64_t(1) << 18;

struct TileExtrema {
  float max_value, min_value;
};

struct Extremum {
  int64_t row, col;
  float value;
};

// Position of the first (row-major) entry equal to `value` in the tile of rows [r0, r0+n).
Extremum locate(const RowMatrixXf& Z, int64_t r0, int64_t n, float value) {
  const int64_t cols = Z.cols();
  const float* p = Z.data() + r0 * cols;
  for (int64_t i = 0; i < n * cols; ++i)
    if (p[i] == value) return {r0 + i / cols, i % cols, value};
  return {r0, 0, value};  // unreachable: the value came from this tile
}

class GreedyEngine {
 public:
  GreedyEngine(RowMatrixXf z, int threads) : Z_(std::move(z)), threads_(threads) {
    tiles_ = (Z_.rows() + kTileRows - 1) / kTileRows;
    extrema_.resize(size_t(tiles_));
    if (threads_ <= 0) threads_ = omp_get_max_threads();
    if (Z_.size() < kMinParallelEntries) threads_ = 1;
    threads_ = int(std::min<int64_t>(threads_, tiles_));
  }

  // Z ← Z·S (when S is given), then returns the first max and first min of Z.
  std::pair<Extremum, Extremum> step(const Eigen::MatrixXf* S) {
    const int64_t rows = Z_.rows(), n = Z_.cols();
    if (S) S_rowmajor_ = *S;
    const SingleThreadedBlas single_threaded_blas;
#pragma omp parallel num_threads(threads_) if (threads_ > 1)
    {
      RowMatrixXf buf;
#pragma omp for schedule(static)
      for (int64_t tile = 0; tile < tiles_; ++tile) {
        const int64_t r0 = tile * kTileRows, m = std::min(kTileRows, rows - r0);
        Eigen::Map<RowMatrixXf> z(Z_.data() + r0 * n, m, n);
        if (S && !rotate_rows_fast(z.data(), m, int(n), S_rowmajor_.data())) {
          buf.noalias() = z * (*S);
          z = buf;
        }
        extrema_[size_t(tile)] = {z.maxCoeff(), z.minCoeff()};
      }
    }
    // Tiles in order, strict comparisons: the first tile holding the extreme value wins.
    int64_t max_tile = 0, min_tile = 0;
    for (int64_t t = 1; t < tiles_; ++t) {
      if (extrema_[size_t(t)].max_value > extrema_[size_t(max_tile)].max_value) max_tile = t;
      if (extrema_[size_t(t)].min_value < extrema_[size_t(min_tile)].min_value) min_tile = t;
    }
    auto tile_rows = [&](int64_t t) { return std::min(kTileRows, rows - t * kTileRows); };
    return {
        locate(Z_, max_tile * kTileRows, tile_rows(max_tile), extrema_[size_t(max_tile)].max_value),
        locate(Z_, min_tile * kTileRows, tile_rows(min_tile),
               extrema_[size_t(min_tile)].min_value)};
  }

 private:
  RowMatrixXf Z_;
  RowMatrixXf S_rowmajor_;
  int threads_;
  int64_t tiles_ = 0;
  std::vector<TileExtrema> extrema_;
};

double objective_of(float max_value, float min_value, GreedyObjective objective) {
  if (objective == GreedyObjective::range) return double(max_value) - double(min_value);
  return std::max(std::fabs(double(max_value)), std::fabs(double(min_value)));
}

}  // namespace

double greedy_objective(Eigen::Ref<const RowMatrixXf> z, GreedyObjective objective) {
  if (z.size() == 0) throw Error("greedy rotation", "objective of an empty matrix");
  return objective_of(z.maxCoeff(), z.minCoeff(), objective);
}

namespace {

GreedyResult run_greedy(RowMatrixXf z, const GreedyOptions& options, const Progress* progress) {
  const int n = options.block_size;
  if (n < 2) throw Error("greedy rotation", "block size must be ≥ 2, got " + std::to_string(n));
  if (z.cols() != n)
    throw Error("greedy rotation", "calibration blocks have " + std::to_string(z.cols()) +
                                       " columns, expected the block size " + std::to_string(n));
  if (z.rows() == 0) throw Error("greedy rotation", "no calibration rows");
  if (options.max_steps < 0)
    throw Error("greedy rotation",
                "max steps must be ≥ 0, got " + std::to_string(options.max_steps));
  if (!z.allFinite()) throw Error("greedy rotation", "calibration data holds NaN or Inf");

  GreedyTrace trace;
  trace.block_size = n;
  trace.selection = options.selection;
  trace.objective = options.objective;
  trace.q_seed = derive_seed(options.seed, options.layer, options.site, options.stage);
  trace.q_prime = random_orthogonal_d(n - 1, trace.q_seed);
  const Eigen::MatrixXd M = trace.step_matrix();

  GreedyEngine engine(std::move(z), options.threads);
  Eigen::MatrixXf S;
  const int S_max = options.max_steps;
  trace.steps.reserve(size_t(S_max) + 1);
  for (int t = 0; t <= S_max; ++t) {
    if (progress) {
      progress->check_cancel();
      progress->report(double(t) / double(S_max + 1), "greedy step");
    }
    const auto [mx, mn] = engine.step(t == 0 ? nullptr : &S);
    GreedyStep step;
    step.max_row = mx.row;
    step.max_col = mx.col;
    step.max_value = mx.value;
    step.min_row = mn.row;
    step.min_col = mn.col;
    step.min_value = mn.value;
    step.objective = objective_of(mx.value, mn.value, options.objective);
    const Extremum& outlier = std::fabs(mx.value) > std::fabs(mn.value) ? mx : mn;
    step.channel = options.selection == GreedySelection::paper ? int32_t(outlier.col)
                                                               : int32_t(outlier.row % n);
    trace.steps.push_back(step);
    if (t < S_max) S = swapped_step_matrix(M, step.channel).cast<float>();
  }
  trace.best_step = 0;
  for (int t = 1; t <= S_max; ++t)
    if (trace.steps[size_t(t)].objective < trace.steps[size_t(trace.best_step)].objective)
      trace.best_step = t;
  if (progress) progress->report(1.0, "greedy done");

  GreedyResult result;
  result.rotation.matrix = trace.rotation();
  result.trace = std::move(trace);
  return result;
}

}  // namespace

GreedyResult greedy_search_blocks(Eigen::Ref<const RowMatrixXf> z, const GreedyOptions& options,
                                  const Progress* progress) {
  return run_greedy(RowMatrixXf(z), options, progress);
}

GreedyResult greedy_search(Eigen::Ref<const RowMatrixXf> x, const GreedyOptions& options,
                           const Progress* progress) {
  const int n = options.block_size;
  if (n < 2) throw Error("greedy rotation", "block size must be ≥ 2, got " + std::to_string(n));
  if (x.cols() % n != 0)
    throw Error("greedy rotation", std::to_string(x.cols()) +
                                       " channels are not a multiple of the block size " +
                                       std::to_string(n));
  // Row-major T×C → (T·C/n)×n: token t, block j is row t·C/n + j.
  const int64_t per_row = x.cols() / n;
  RowMatrixXf z(x.rows() * per_row, n);
  for (int64_t t = 0; t < x.rows(); ++t)
    z.middleRows(t * per_row, per_row) = Eigen::Map<const RowMatrixXf>(x.row(t).data(), per_row, n);
  return run_greedy(std::move(z), options, progress);
}

}  // namespace mxlens
