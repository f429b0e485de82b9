// W4A4 fake quantization on tinystories-656k, in-domain text (tinystories-text/stories.txt),
// measured side by side in one run:
//   - quality: KL(FP ‖ quantized) per token and top-1 agreement for RTN W4A4 / W4A16 / W16A4
//     (MXFP4, the chosen scale rule), smoothing + W4A4 and block Hadamard + W4A4;
//   - cost: FP forward vs W4A4 fake-quant forward over the same windows (best of --repeats,
//     the two interleaved), weights computed on demand per window and cached.
//
//   bench_w4a4 [--windows N] [--seqlen L] [--threads T] [--repeats R] [--scale-rule RULE]
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
#include "core/quant/quant_plan.h"
#include "core/quant/smoothing.h"
#include "core/quant/w4a4_taps.h"
#include "core/rotation/block_rotation.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"

using namespace mxlens;
namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Args {
  int windows = 8, seqlen = 256, threads = 1, repeats = 5;
  ScaleRule rule = ScaleRule::ocp_floor;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) throw Error(k, "needs a value");
    const char* v = argv[++i];
    if (k == "--windows")
      a.windows = std::atoi(v);
    else if (k == "--seqlen")
      a.seqlen = std::atoi(v);
    else if (k == "--threads")
      a.threads = std::atoi(v);
    else if (k == "--repeats")
      a.repeats = std::atoi(v);
    else if (k == "--scale-rule")
      a.rule = parse_scale_rule(v);
    else
      throw Error(k, "unknown option");
  }
  if (a.windows < 1 || a.seqlen < 2 || a.threads < 1 || a.repeats < 1)
    throw Error("bench_w4a4", "windows, seqlen, threads and repeats must be positive");
  return a;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  const fs::path data = MXLENS_DATA_DEFAULT;
  const Checkpoint ckpt = Checkpoint::open(data / "tinystories-656k");
  const LlamaWeights weights(ckpt);
  const LlamaConfig& cfg = weights.config();
  check_seqlen(cfg, args.seqlen);
  const Tokenizer tok = Tokenizer::load(*ckpt.tokenizer_json());
  const fs::path text = data / "tinystories-text" / "stories.txt";
  const std::vector<int32_t> ids = tokenize_text_file(tok, text, false);
  const int64_t n_windows = std::min<int64_t>(args.windows, int64_t(ids.size()) / args.seqlen);
  std::vector<std::span<const int32_t>> windows;
  for (int64_t w = 0; w < n_windows; ++w)
    windows.emplace_back(ids.data() + w * args.seqlen, size_t(args.seqlen));
  std::printf("tinystories-656k on %s: %lld windows x %d tokens (first of %lld ids), threads %d\n",
              text.string().c_str(), (long long)n_windows, args.seqlen, (long long)ids.size(),
              args.threads);

  ForwardOptions fo;
  fo.threads = args.threads;
  LlamaForward fwd(weights, fo);
  std::vector<RowMatrixXf> fp;
  for (auto w : windows) fp.push_back(fwd.logits_all(w));

  // Smoothing statistics from the same windows (FP model).
  ActAbsMaxTaps stats(cfg);
  for (auto w : windows) fwd.hidden(w, &stats);
  std::vector<LayerTransforms> smooth, hadamard(size_t(cfg.num_layers));
  set_smoothing(smooth, weights, stats);
  for (auto& layer : hadamard)
    for (Site site : kAllSites) layer.site(site).rotation.add_block_rotation(block_hadamard(32));

  const QuantOptions qo{args.rule, Rounding::rne};
  struct Config {
    const char* name;
    QuantScheme scheme;
    std::vector<LayerTransforms> transforms;
  };
  const std::vector<Config> configs = {
      {"RTN W4A4", QuantScheme::make(QuantMode::w4a4, QuantFormat::mxfp4, qo), {}},
      {"RTN W4A16", QuantScheme::make(QuantMode::w4a16, QuantFormat::mxfp4, qo), {}},
      {"RTN W16A4", QuantScheme::make(QuantMode::w16a4, QuantFormat::mxfp4, qo), {}},
      {"smoothing + RTN W4A4", QuantScheme::make(QuantMode::w4a4, QuantFormat::mxfp4, qo), smooth},
      {"block Hadamard + RTN W4A4", QuantScheme::make(QuantMode::w4a4, QuantFormat::mxfp4, qo),
       hadamard},
  };
  std::printf("\nscale rule %s; KL(FP || quantized), nats per token over all positions\n",
              to_string(args.rule).data());
  for (const Config& c : configs) {
    const QuantPlan plan(cfg, c.scheme, c.transforms);
    W4a4Taps taps(plan, {args.threads, false});
    KlStats kl;
    for (size_t w = 0; w < windows.size(); ++w)
      kl.add_rows(fp[w], fwd.logits_all(windows[w], &taps));
    const KlSummary s = kl.summary();
    std::printf("  %-27s KL %.4f ± %.4f (median %.4f, p99 %.3f)  top-1 %.4f  [%lld tokens]\n",
                c.name, s.mean, s.mean_stderr, s.median, s.p99, s.top1_agreement,
                (long long)s.tokens);
  }

  // Cost: the same windows through the FP forward and the W4A4 forward, interleaved.
  const QuantPlan plan(cfg, QuantScheme::make(QuantMode::w4a4, QuantFormat::mxfp4, qo));
  const QuantPlan plan_h(cfg, QuantScheme::make(QuantMode::w4a4, QuantFormat::mxfp4, qo), hadamard);
  W4a4Taps on_demand(plan, {args.threads, false});
  W4a4Taps cached(plan, {args.threads, true});
  W4a4Taps on_demand_h(plan_h, {args.threads, false});
  auto time_all = [&](SiteTaps* taps) {
    const auto t0 = std::chrono::steady_clock::now();
    for (auto w : windows) fwd.run(w, taps, [](int64_t, const Eigen::Ref<const RowMatrixXf>&) {});
    return seconds_since(t0);
  };
  double t_fp = 1e30, t_q = 1e30, t_c = 1e30, t_h = 1e30;
  for (int r = 0; r < args.repeats; ++r) {
    t_fp = std::min(t_fp, time_all(nullptr));
    t_q = std::min(t_q, time_all(&on_demand));
    t_c = std::min(t_c, time_all(&cached));
    t_h = std::min(t_h, time_all(&on_demand_h));
  }
  const double tokens = double(n_windows) * args.seqlen;
  std::printf("\nforward over the same windows, best of %d (logits computed, not stored):\n",
              args.repeats);
  std::printf("  FP32                               %8.2f ms  %9.0f tokens/s  1.00x\n", t_fp * 1e3,
              tokens / t_fp);
  std::printf("  W4A4 RTN, weights per window       %8.2f ms  %9.0f tokens/s  %.2fx FP\n",
              t_q * 1e3, tokens / t_q, t_q / t_fp);
  std::printf("  W4A4 RTN, weights cached           %8.2f ms  %9.0f tokens/s  %.2fx FP\n",
              t_c * 1e3, tokens / t_c, t_c / t_fp);
  std::printf("  W4A4 block Hadamard, per window    %8.2f ms  %9.0f tokens/s  %.2fx FP\n",
              t_h * 1e3, tokens / t_h, t_h / t_fp);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_w4a4: %s\n", e.what());
  return 1;
}
