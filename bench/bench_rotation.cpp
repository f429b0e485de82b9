// Online rotation cost beside what it sits next to in a W4A4 forward: ChannelTransform::apply_rows
// for a block-32 rotation and for a full-size Hadamard (QuaRot) on [tokens, channels]
// activations, against MXFP4 fake quantization and memcpy of the same tensor, measured side by
// side in one run; and the DuQuant++ greedy search (T·C/32 rows × S steps), the fused tile
// kernel against a plain "Z = Z·S_d, then max/min" loop.
//   usage: bench_rotation [tokens = 2048] [greedy_rows = 262144] [greedy_steps = 128]
// Single-threaded (threads = 1), timed in thread CPU time: the build machine is shared.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <span>

#include "core/mx/mxfp4.h"
#include "core/rotation/block_rotation.h"
#include "core/rotation/channel_transform.h"
#include "core/rotation/greedy_search.h"

using namespace mxlens;

namespace {

double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Best seconds per call over `reps` repetitions.
double best_seconds(int reps, const std::function<void()>& fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = thread_seconds();
    fn();
    best = std::min(best, thread_seconds() - t0);
  }
  return best;
}

RowMatrixXf make_activations(int tokens, int channels, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> scale(size_t(channels), 0.0f);
  for (float& s : scale) s = std::exp(0.5f * normal(rng));
  scale[size_t(channels / 3)] *= 40.0f;
  RowMatrixXf x(tokens, channels);
  for (int t = 0; t < tokens; ++t)
    for (int c = 0; c < channels; ++c) x(t, c) = normal(rng) * scale[size_t(c)];
  return x;
}

volatile float g_sink = 0;

void bench_apply(int tokens, int channels) {
  RowMatrixXf x = make_activations(tokens, channels, 1);
  RowMatrixXf dst(tokens, channels);
  const double gb = double(x.size()) * sizeof(float) / 1e9;
  constexpr int kReps = 5;
  const double t_copy = best_seconds(kReps, [&] {
    std::memcpy(dst.data(), x.data(), sizeof(float) * size_t(x.size()));
    g_sink = g_sink + dst(0, 0);
  });
  const double t_fq = best_seconds(kReps, [&] {
    fake_quantize_mxfp4(std::span<float>(x.data(), size_t(x.size())));
    g_sink = g_sink + x(0, 0);
  });
  ChannelTransform block;
  block.add_block_rotation(random_orthogonal(32, 1));
  const double t_block = best_seconds(kReps, [&] {
    block.apply_rows(x, 1);
    g_sink = g_sink + x(0, 0);
  });
  ChannelTransform full;
  full.add_full_hadamard(channels, 7);
  const double t_full = best_seconds(kReps, [&] {
    full.apply_rows(x, 1);
    g_sink = g_sink + x(0, 0);
  });
  std::printf("\n[%d, %d] float32 (%.0f MB), 1 thread, best of %d:\n", tokens, channels, gb * 1e3,
              kReps);
  std::printf("  %-34s %8.2f ms  %6.2f GB/s  x%5.2f fake-quant  x%5.2f memcpy\n", "memcpy",
              t_copy * 1e3, gb / t_copy, t_copy / t_fq, 1.0);
  std::printf("  %-34s %8.2f ms  %6.2f GB/s  x%5.2f fake-quant  x%5.2f memcpy\n",
              "MXFP4 fake-quant (ocp_floor, RNE)", t_fq * 1e3, gb / t_fq, 1.0, t_fq / t_copy);
  std::printf("  %-34s %8.2f ms  %6.2f GB/s  x%5.2f fake-quant  x%5.2f memcpy\n",
              "block-32 rotation", t_block * 1e3, gb / t_block, t_block / t_fq, t_block / t_copy);
  char label[64];
  std::snprintf(label, sizeof label, "full Hadamard %d (FWHT%s)", channels,
                (channels & (channels - 1)) ? " + H_m mix" : "");
  std::printf("  %-34s %8.2f ms  %6.2f GB/s  x%5.2f fake-quant  x%5.2f memcpy\n", label,
              t_full * 1e3, gb / t_full, t_full / t_fq, t_full / t_copy);
}

// The plain loop the greedy engine replaces: a whole-matrix product per step, then separate
// max/min passes (what a direct transcription of algorithm.md §4.4 does).
double plain_greedy_seconds(const RowMatrixXf& z0, int steps, double* last_objective) {
  const Eigen::MatrixXd M =
      greedy_step_matrix(duquant_base_matrix(32), random_orthogonal_d(31, derive_seed(0, 0, 0)));
  RowMatrixXf Z = z0;
  const double t0 = thread_seconds();
  int d = 0;
  double objective = 0;
  for (int t = 0; t <= steps; ++t) {
    if (t > 0) {
      const Eigen::MatrixXf S = swapped_step_matrix(M, d).cast<float>();
      Z = Z * S;
    }
    Eigen::Index r1, c1, r2, c2;
    const float mx = Z.maxCoeff(&r1, &c1), mn = Z.minCoeff(&r2, &c2);
    objective = double(mx) - double(mn);
    d = int(std::fabs(mx) > std::fabs(mn) ? c1 : c2);
  }
  *last_objective = objective;
  return thread_seconds() - t0;
}

void bench_greedy(int64_t rows, int steps) {
  const RowMatrixXf z = make_activations(int(rows * 32 / 4096), 4096, 3);
  const RowMatrixXf blocks = Eigen::Map<const RowMatrixXf>(z.data(), rows, 32);
  GreedyOptions opt;
  opt.max_steps = steps;
  opt.threads = 1;
  double t0 = thread_seconds();
  const GreedyResult r = greedy_search_blocks(blocks, opt);
  const double t_fused = thread_seconds() - t0;
  double plain_objective = 0;
  const double t_plain = plain_greedy_seconds(blocks, steps, &plain_objective);
  const double flops = 2.0 * double(rows) * 32 * 32 * steps;
  std::printf("\ngreedy search, %lld rows x 32, S = %d (%d evaluations), 1 thread:\n",
              static_cast<long long>(rows), steps, steps + 1);
  std::printf("  %-34s %8.3f s  %6.1f GFLOP/s  %6.2f ms/step  k* = %d, objective %.2f -> %.2f\n",
              "tiled 32x32 kernel + fused max/min", t_fused, flops / t_fused * 1e-9,
              t_fused / (steps + 1) * 1e3, r.trace.best_step, r.trace.steps[0].objective,
              r.trace.steps[size_t(r.trace.best_step)].objective);
  std::printf("  %-34s %8.3f s  %6.1f GFLOP/s  %6.2f ms/step  (x%.2f the tiled time)\n",
              "plain Z = Z*S_d, then max/min", t_plain, flops / t_plain * 1e-9,
              t_plain / (steps + 1) * 1e3, t_plain / t_fused);
  std::printf("  last objective: tiled %.4f, plain %.4f (same path: both paper selection)\n",
              r.trace.steps.back().objective, plain_objective);
}

}  // namespace

int main(int argc, char** argv) {
  const int tokens = argc > 1 ? std::atoi(argv[1]) : 2048;
  const int64_t greedy_rows = argc > 2 ? std::atoll(argv[2]) : 262144;
  const int greedy_steps = argc > 3 ? std::atoi(argv[3]) : 128;
  std::printf("bench_rotation: MXFP4 path %s\n", mxfp4_active_path());
  bench_apply(tokens, 4096);
  bench_apply(tokens, 14336);
  bench_greedy(greedy_rows, greedy_steps);
  return 0;
}
