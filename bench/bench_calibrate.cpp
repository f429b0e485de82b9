// Calibration cost (algorithm.md §3, §4.6, §6, §7): for block Hadamard, DuQuant++ and DuQuant++
// with GPTQ, the time calibrate() spends in each stage — the FP smoothing-statistics forward,
// the rotation searches with their propagation forward, GPTQ, the SiteStats pass — and in
// total; then the cost of running the calibrated DuQuant++ plan (else the last method's): FP
// forward vs W4A4 fake-quant forward over the same windows (best of --repeats, interleaved),
// with the ratio.
//
//   bench_calibrate [--model DIR] [--data TEXT] [--windows N] [--seqlen L] [--steps S]
//                   [--threads T] [--repeats R] [--tokenizer FILE] [--methods LIST]
//
// Defaults: the shared tinystories-656k and WikiText-2 test text. Any checkpoint directory
// works (e.g. `mxlens-cli synth --preset llama-3.2-1b --out DIR`); a model without
// tokenizer.json and no --tokenizer runs on seeded pseudo-random ids (timings only).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/calib/calibrate.h"
#include "core/eval/perplexity.h"
#include "core/io/model_fingerprint.h"
#include "core/model/checkpoint.h"
#include "core/model/forward.h"
#include "core/quant/quant_plan.h"
#include "core/quant/w4a4_taps.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"

using namespace mxlens;
namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Args {
  fs::path model = fs::path(MXLENS_DATA_DEFAULT) / "tinystories-656k";
  fs::path data = fs::path(MXLENS_DATA_DEFAULT) / "wikitext-2-raw" / "wiki.test.raw";
  fs::path tokenizer;
  std::vector<Method> methods = {Method::hadamard, Method::duquantpp, Method::duquantpp_gptq};
  int windows = 16, seqlen = 256, steps = 128, threads = 1, repeats = 3;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") {
      std::printf(
          "bench_calibrate [--model DIR] [--data TEXT] [--windows N] [--seqlen L] [--steps S]\n"
          "                [--threads T] [--repeats R] [--tokenizer FILE] [--methods LIST]\n"
          "  --methods: comma-separated, default hadamard,duquantpp,duquantpp-gptq; the FP vs\n"
          "  W4A4 timing uses the last searched (or else last) method's plan\n");
      std::exit(0);
    }
    if (i + 1 >= argc) throw Error(k, "needs a value");
    const char* v = argv[++i];
    if (k == "--model")
      a.model = v;
    else if (k == "--data")
      a.data = v;
    else if (k == "--tokenizer")
      a.tokenizer = v;
    else if (k == "--windows")
      a.windows = std::atoi(v);
    else if (k == "--seqlen")
      a.seqlen = std::atoi(v);
    else if (k == "--steps")
      a.steps = std::atoi(v);
    else if (k == "--threads")
      a.threads = std::atoi(v);
    else if (k == "--repeats")
      a.repeats = std::atoi(v);
    else if (k == "--methods")
      a.methods = parse_method_list(v, "--methods");
    else
      throw Error(k, "unknown option");
  }
  if (a.windows < 1 || a.seqlen < 2 || a.steps < 0 || a.threads < 1 || a.repeats < 1)
    throw Error("bench_calibrate",
                "windows, threads and repeats must be positive, seqlen at least 2, steps >= 0");
  return a;
}

std::vector<int32_t> pseudo_random_ids(int64_t n, int vocab, uint32_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) {
    seed = seed * 1664525u + 1013904223u;
    t = int32_t((seed >> 8) % uint32_t(vocab));
  }
  return ids;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  const Checkpoint ckpt = Checkpoint::open(args.model);
  const LlamaWeights weights(ckpt);
  const LlamaConfig& cfg = weights.config();
  const int seqlen = capped_calibration_seqlen(cfg, args.seqlen);

  // Calibration text: the data file tokenized with the model's tokenizer, else seeded ids long
  // enough for the windows in a 10 % tail.
  std::vector<int32_t> ids;
  std::string text_path = args.data.string(), text_sha;
  fs::path tok_path = args.tokenizer;
  if (tok_path.empty() && ckpt.tokenizer_json()) tok_path = *ckpt.tokenizer_json();
  if (!tok_path.empty()) {
    const Tokenizer tok = Tokenizer::load(tok_path);
    ids = tokenize_text_file(tok, args.data, false);
    text_sha = sha256_file(args.data);
  } else {
    ids = pseudo_random_ids(int64_t(seqlen + 1) * 10 * 4, cfg.vocab_size, 1);
    text_path = "seeded pseudo-random ids (no tokenizer)";
    text_sha = "pseudo-random";
  }
  const CalibrationText text{text_path, text_sha, ids};

  CalibrationSettings base;
  base.windows.count = args.windows;
  base.windows.seqlen = seqlen;
  base.greedy.max_steps = args.steps;
  std::printf("%s (%d layers, hidden %d, intermediate %d), calibration text %s (%zu ids)\n",
              args.model.string().c_str(), cfg.num_layers, cfg.hidden_size, cfg.intermediate_size,
              text_path.c_str(), ids.size());
  std::printf("%d windows x %d tokens, greedy steps %d, threads %d\n\n", args.windows, seqlen,
              args.steps, args.threads);

  std::printf("%-16s %10s %10s %10s %10s %10s   (seconds)\n", "method", "forward", "search", "gptq",
              "statistics", "total");
  // The plan whose forward is timed below: DuQuant++ when it ran, else the last method.
  Session timed;
  bool timed_is_duquantpp = false;
  for (Method m : args.methods) {
    CalibrationSettings s = base;
    s.method = m;
    Session session;
    try {
      session = calibrate(ckpt, weights, text, s, args.threads);
    } catch (const Error& e) {
      if (m != Method::duquantpp_gptq) throw;
      std::printf("%-16s skipped: %s\n", method_name(m).data(), e.what());  // e.g. GPTQ widths
      continue;
    }
    const CalibrationTimings& t = session.timings;
    std::printf("%-16s %10.3f %10.3f %10.3f %10.3f %10.3f\n", method_name(m).data(), t.forward,
                t.search, t.gptq, t.statistics, t.total);
    for (const std::string& w : session.warnings) std::printf("  warning: %s\n", w.c_str());
    if (!timed_is_duquantpp) {
      timed = std::move(session);
      timed_is_duquantpp = m == Method::duquantpp;
    }
  }

  // The calibrated plan against FP over the calibration windows.
  if (timed.data.window_offsets.empty()) return 0;  // every method skipped
  std::vector<std::span<const int32_t>> windows;
  for (int64_t off : timed.data.window_offsets)
    windows.push_back(std::span<const int32_t>(ids).subspan(size_t(off), size_t(seqlen)));
  const QuantPlan plan = make_plan(timed, cfg);
  const std::string name = std::string(method_name(timed.settings.method));
  ForwardOptions fo;
  fo.threads = args.threads;
  LlamaForward fwd(weights, fo);
  W4a4Taps on_demand(plan, {args.threads, false});
  const double layer_floats = double(cfg.hidden_size) *
                              (2.0 * cfg.num_heads * cfg.head_dim +
                               2.0 * cfg.num_kv_heads * cfg.head_dim + 3.0 * cfg.intermediate_size);
  const bool cache_fits = layer_floats * cfg.num_layers * 4 <= double(int64_t(4) << 30);
  W4a4Taps cached(plan, {args.threads, cache_fits});
  auto time_all = [&](SiteTaps* taps) {
    const auto t0 = std::chrono::steady_clock::now();
    for (auto w : windows) fwd.run(w, taps, [](int64_t, const Eigen::Ref<const RowMatrixXf>&) {});
    return seconds_since(t0);
  };
  double t_fp = 1e30, t_q = 1e30, t_c = 1e30;
  for (int r = 0; r < args.repeats; ++r) {
    t_fp = std::min(t_fp, time_all(nullptr));
    t_q = std::min(t_q, time_all(&on_demand));
    if (cache_fits) t_c = std::min(t_c, time_all(&cached));
  }
  const double tokens = double(windows.size()) * seqlen;
  std::printf(
      "\nforward over the %zu calibration windows, best of %d (logits computed, not stored):\n",
      windows.size(), args.repeats);
  std::printf("  FP32                                %9.3f s  %10.0f tokens/s  1.00x\n", t_fp,
              tokens / t_fp);
  std::printf("  W4A4 %-18s per window  %9.3f s  %10.0f tokens/s  %.2fx FP\n", name.c_str(), t_q,
              tokens / t_q, t_q / t_fp);
  if (cache_fits)
    std::printf("  W4A4 %-18s cached      %9.3f s  %10.0f tokens/s  %.2fx FP\n", name.c_str(), t_c,
                tokens / t_c, t_c / t_fp);
  else
    std::printf("  (weights not cached: the model's quantized weights exceed 4 GiB)\n");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_calibrate: %s\n", e.what());
  return 1;
}
