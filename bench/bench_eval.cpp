// FP32 evaluation speed (the perplexity path: forward over each window, logits streamed in
// chunks, log-softmax scoring), measured side by side in one run:
//   - the OpenBLAS sgemm ceiling (2048³) at the same threads, just before each row;
//   - tinystories-656k on WikiText-2 at seqlen 256 and 2048 (2048 exceeds its 512-token
//     context: the forward is run anyway, for speed only; no perplexity is claimed);
//   - a synthetic checkpoint with Llama-3.2-1B shapes, BF16, written to a temp dir (1 window).
//
//   bench_eval [--no-1b] [--1b-dir DIR]    (DIR: reuse/keep the synthetic model there)
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/eval/kl.h"
#include "core/eval/perplexity.h"
#include "core/model/checkpoint.h"
#include "core/model/forward.h"
#include "core/model/synthetic_checkpoint.h"
#include "core/text/tokenizer.h"

extern "C" void openblas_set_num_threads(int) __attribute__((weak));

using namespace mxlens;
namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Best of `repeats` sgemm 2048×2048×2048 through Eigen (EIGEN_USE_BLAS), OpenBLAS threads set.
double sgemm_gflops(int threads, int repeats = 3) {
  if (openblas_set_num_threads) openblas_set_num_threads(threads);
  constexpr int n = 2048;
  const Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n), b = Eigen::MatrixXf::Random(n, n);
  Eigen::MatrixXf c(n, n);
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    c.noalias() = a * b;
    best = std::min(best, seconds_since(t0));
  }
  if (openblas_set_num_threads) openblas_set_num_threads(1);
  return 2.0 * n * n * double(n) / best / 1e9;
}

struct Measured {
  double tokens_per_s = 0;
  double seconds = 0;
  double gflops = 0;
  int64_t windows = 0;
};

// The perplexity path, window by window, without the seqlen check (for the out-of-context
// speed row): forward over L-1 positions, logits in chunks, log-sum-exp per row.
Measured run_windows(const LlamaWeights& w, std::span<const int32_t> ids, int L, int64_t windows,
                     int threads) {
  ForwardOptions opt;
  opt.threads = threads;
  LlamaForward fwd(w, opt);
  double sink = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t k = 0; k < windows; ++k) {
    fwd.hidden(ids.subspan(size_t(k * L), size_t(L - 1)));
    fwd.logits([&](int64_t, const Eigen::Ref<const RowMatrixXf>& chunk) {
      for (Eigen::Index i = 0; i < chunk.rows(); ++i)
        sink += log_sum_exp(std::span<const float>(chunk.row(i).data(), size_t(chunk.cols())));
    });
  }
  Measured m;
  m.seconds = seconds_since(t0);
  m.windows = windows;
  m.tokens_per_s = double(windows * (L - 1)) / m.seconds;
  m.gflops = forward_flops(w.config(), L - 1) * double(windows) / m.seconds / 1e9;
  if (sink == 12345.678) std::printf(" ");
  return m;
}

Measured run_ppl(const LlamaWeights& w, std::span<const int32_t> ids, int L, int64_t windows,
                 int threads) {
  PerplexityOptions opt;
  opt.seqlen = L;
  opt.max_windows = windows;
  opt.forward.threads = threads;
  Progress progress;
  const PerplexityResult r = evaluate_perplexity(w, ids, opt, progress);
  Measured m;
  m.seconds = r.seconds;
  m.windows = r.windows;
  m.tokens_per_s = r.tokens_per_s;
  m.gflops = forward_flops(w.config(), L - 1) * double(r.windows) / r.seconds / 1e9;
  return m;
}

// The sgemm ceiling is measured again just before each row (the machine is shared; its load
// changes from minute to minute), so each ratio compares numbers taken side by side.
void print_row(const char* model, int L, int threads, const Measured& m, double ceiling,
               const char* note) {
  std::printf("%-22s %6d %7d %7lld %10.1f %9.2f %9.1f %9.1f %8.0f%%  %s\n", model, L, threads,
              static_cast<long long>(m.windows), m.tokens_per_s, m.seconds, m.gflops, ceiling,
              100.0 * m.gflops / ceiling, note);
  std::fflush(stdout);
}

std::vector<int32_t> pseudo_random_ids(int64_t n, int vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint32_t s = 2;
  for (auto& t : ids) {
    s = s * 1664525u + 1013904223u;
    t = int32_t((s >> 8) % uint32_t(vocab));
  }
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  bool run_1b = true;
  fs::path dir_1b;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--no-1b")) run_1b = false;
    if (!std::strcmp(argv[i], "--1b-dir") && i + 1 < argc) dir_1b = argv[++i];
  }
  const fs::path data = std::getenv("MXLENS_DATA") ? fs::path(std::getenv("MXLENS_DATA"))
                                                   : fs::path(MXLENS_DATA_DEFAULT);
  try {
    std::printf(
        "sgemm = OpenBLAS sgemm 2048^3 GFLOP/s at the same threads (Eigen, EIGEN_USE_BLAS, best "
        "of 3), measured just before the row\n\n");
    std::printf("%-22s %6s %7s %7s %10s %9s %9s %9s %9s\n", "model", "seqlen", "threads", "windows",
                "tokens/s", "seconds", "GFLOP/s", "sgemm", "of sgemm");

    // tinystories-656k on WikiText-2 (real ids).
    const Checkpoint small = Checkpoint::open(data / "tinystories-656k");
    const LlamaWeights small_w(small);
    const Tokenizer tok = Tokenizer::load(*small.tokenizer_json());
    const auto wiki = tokenize_text_file(tok, data / "wikitext-2-raw" / "wiki.test.raw", false);
    run_ppl(small_w, wiki, 256, 4, 1);  // warm-up: page faults of the mapped file
    for (int threads : {1, 2}) {
      print_row("tinystories-656k", 256, threads, run_ppl(small_w, wiki, 256, 64, threads),
                sgemm_gflops(threads), "");
    }
    for (int threads : {1, 2}) {
      print_row("tinystories-656k", 2048, threads, run_windows(small_w, wiki, 2048, 8, threads),
                sgemm_gflops(threads), "beyond its 512 context: speed only, no PPL");
    }

    if (run_1b) {
      const bool temp = dir_1b.empty();
      if (temp)
        dir_1b = fs::temp_directory_path() / ("mxlens_bench_1b_" + std::to_string(getpid()));
      if (!fs::exists(dir_1b / "config.json")) {
        SyntheticOptions so;
        so.preset = "llama-3.2-1b";
        so.dtype = DType::BF16;
        const auto t0 = std::chrono::steady_clock::now();
        const SyntheticSummary s = write_synthetic_checkpoint(dir_1b, so);
        std::printf("\n(wrote synthetic llama-3.2-1b BF16: %d shards, %.2f GB, %.1f s)\n",
                    s.n_shards, double(s.tensor_bytes) / 1e9, seconds_since(t0));
      }
      {
        const Checkpoint big = Checkpoint::open(dir_1b);
        const LlamaWeights big_w(big);
        const auto ids = pseudo_random_ids(2048, big.config().vocab_size);
        // The first window touches every page of the mapped shards (page faults, and disk reads
        // when the files are not in the page cache): shown apart, then the timed rows.
        print_row("synthetic 1B BF16", 256, 2, run_ppl(big_w, ids, 256, 1, 2), sgemm_gflops(2),
                  "first window after opening (cold mapping), not a speed figure");
        for (int L : {256, 2048})
          for (int threads : {1, 2})
            print_row("synthetic 1B BF16", L, threads, run_ppl(big_w, ids, L, 1, threads),
                      sgemm_gflops(threads), "1 window, random ids");
      }
      if (temp) fs::remove_all(dir_1b);
    }
    std::printf(
        "\nGFLOP/s counts the seven linears, causal attention (QK^T and PV over the lower "
        "triangle) and the lm_head per scored position (forward_flops); the perplexity "
        "path runs L-1 positions per window.\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_eval: %s\n", e.what());
    return 1;
  }
  return 0;
}
