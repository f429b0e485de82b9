// MXFP4 / NVFP4 quantize (to packed blocks) and fused fake-quant throughput, in GB/s of
// float32 input, for the reference and the fast path, beside memcpy of the same buffer in
// the same run. Two sizes: a large buffer (memory bound) and one 4096-float activation row
// reused from cache (what W4A4 fake quantization sees per token).
//   usage: bench_mxfp4_quantize [large_buffer_MiB = 64]
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/mx/format_table.h"
#include "core/mx/mxfp4.h"

using namespace mxlens;

namespace {

// CPU time of this thread: the build machine is shared, so wall time would count the time
// other processes hold the core. Cache and memory contention still show.
double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Best (minimum) seconds per call over `reps` repetitions of `calls` calls.
double best_seconds(int reps, int calls, const std::function<void()>& fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = thread_seconds();
    for (int c = 0; c < calls; ++c) fn();
    const double s = (thread_seconds() - t0) / calls;
    best = std::min(best, s);
  }
  return best;
}

std::vector<float> make_input(size_t n) {
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> channel_scale(4096);
  for (float& s : channel_scale) s = std::exp(0.5f * normal(rng));
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = normal(rng) * channel_scale[i % 4096];
  return x;
}

volatile uint32_t g_sink = 0;  // keeps results alive

void run_case(const char* label, size_t n, int reps, int calls_fast, int calls_ref) {
  const std::vector<float> x = make_input(n);
  const double gb = double(n) * sizeof(float) / 1e9;
  std::vector<float> dst(n), work(n);
  const double t_memcpy = best_seconds(reps, calls_fast, [&] {
    std::memcpy(dst.data(), x.data(), n * sizeof(float));
    g_sink = g_sink + std::bit_cast<uint32_t>(dst[n / 2]);
  });
  const double memcpy_gbs = gb / t_memcpy;
  std::printf("\n== %s: %zu floats (%.1f MiB), fast path %s ==\n", label, n,
              double(n) * 4 / (1 << 20), mxfp4_active_path());
  std::printf("%-35s %9.2f GB/s   ratio to memcpy 1\n", "memcpy", memcpy_gbs);

  for (const QuantFormat& f : quant_formats()) {
    std::vector<uint8_t> records(n / f.block_size * f.record_bytes);
    std::vector<ScaleRule> rules(f.scale_rules.begin(), f.scale_rules.end());
    for (ScaleRule rule : rules) {
      const QuantOptions options{rule, Rounding::rne};
      char name[64];
      std::snprintf(name, sizeof name, "%s %s", std::string(f.name).c_str(),
                    f.name == "mxfp4" ? std::string(to_string(rule)).c_str() : "e4m3");
      const bool with_ref = rule == ScaleRule::ocp_floor;  // the reference is slow: one rule
      // Fake quantization runs in place on a work buffer filled once: after the first call it
      // holds quantized values, which costs the same (no per-element data-dependent work).
      double q_ref = 0, fq_ref = 0;
      if (with_ref) {
        q_ref = best_seconds(2, calls_ref, [&] {
          f.quantize_ref(x, records, options);
          g_sink = g_sink + records[records.size() / 2];
        });
        std::memcpy(work.data(), x.data(), n * sizeof(float));
        fq_ref = best_seconds(2, calls_ref, [&] {
          f.fake_quantize_ref(work, options);
          g_sink = g_sink + std::bit_cast<uint32_t>(work[n / 2]);
        });
      }
      const double q_fast = best_seconds(reps, calls_fast, [&] {
        f.quantize_fast(x, records, options);
        g_sink = g_sink + records[records.size() / 2];
      });
      std::memcpy(work.data(), x.data(), n * sizeof(float));
      const double fq_fast = best_seconds(reps, calls_fast, [&] {
        f.fake_quantize_fast(work, options);
        g_sink = g_sink + std::bit_cast<uint32_t>(work[n / 2]);
      });
      if (with_ref) {
        std::printf("%-20s %-14s %9.3f GB/s   ratio to memcpy %.4f\n", name, "quantize ref",
                    gb / q_ref, t_memcpy / q_ref);
        std::printf("%-20s %-14s %9.3f GB/s   ratio to memcpy %.4f\n", name, "fake-quant ref",
                    gb / fq_ref, t_memcpy / fq_ref);
      }
      std::printf("%-20s %-14s %9.2f GB/s   ratio to memcpy %.4f", name, "quantize fast",
                  gb / q_fast, t_memcpy / q_fast);
      if (with_ref) std::printf("   fast/ref %.1fx", q_ref / q_fast);
      std::printf("\n%-20s %-14s %9.2f GB/s   ratio to memcpy %.4f", name, "fake-quant fast",
                  gb / fq_fast, t_memcpy / fq_fast);
      if (with_ref) std::printf("   fast/ref %.1fx", fq_ref / fq_fast);
      std::printf("\n");
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const double mib = argc > 1 ? std::atof(argv[1]) : 64.0;
  if (!(mib >= 1.0)) {
    std::fprintf(stderr, "usage: %s [large_buffer_MiB >= 1]\n", argv[0]);
    return 1;
  }
  if (!mxfp4_avx2_available()) std::printf("note: no AVX2+FMA, fast entries are not run\n");
  const size_t n_large = static_cast<size_t>(mib * (1 << 20) / 4) / 32 * 32;
  std::printf(
      "single thread; GB/s = float32 input bytes / best thread CPU time; memcpy copies the same "
      "buffer in this run\n");
  run_case("large buffer", n_large, 7, 1, 1);
  run_case("one activation row in cache", 4096, 15, 20000, 200);
  std::printf("\n(sink %u)\n", static_cast<unsigned>(g_sink));
  return 0;
}
