// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// What outlier plants do to W4A4 (algorithm.md §10b), measured side by side in one run on
// tinystories-656k, in-domain text: the original, norm-mode plants at several S and a
// residual-mode plant, each under RTN W4A4, smoothing + RTN W4A4 and block Hadamard + RTN W4A4
// (MXFP4, default scale rule). KL(FP ‖ quantized) per token against each model's own FP logits
// (a plant keeps those equal to the original's, which the first column checks).
//
//   bench_plant [--windows N] [--seqlen L] [--threads T] [--channels K]
#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/eval/kl.h"
#include "core/eval/perplexity.h"
#include "core/model/checkpoint.h"
#include "core/model/forward.h"
#include "core/plant/plant.h"
#include "core/quant/quant_plan.h"
#include "core/quant/smoothing.h"
#include "core/quant/w4a4_taps.h"
#include "core/rotation/block_rotation.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"

using namespace mxlens;
namespace fs = std::filesystem;

namespace {

struct Args {
  int windows = 8, seqlen = 256, threads = 1, channels = 4;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) throw Error(k, "needs a value");
    const int v = std::atoi(argv[++i]);
    if (k == "--windows")
      a.windows = v;
    else if (k == "--seqlen")
      a.seqlen = v;
    else if (k == "--threads")
      a.threads = v;
    else if (k == "--channels")
      a.channels = v;
    else
      throw Error(k, "unknown option");
  }
  if (a.windows < 1 || a.seqlen < 2 || a.threads < 1 || a.channels < 1)
    throw Error("bench_plant", "windows, seqlen, threads and channels must be positive");
  return a;
}

struct Row {
  std::string name;
  double fp_rel_diff = 0;  // max |logit diff| / max |logit| vs the original, all windows
  double kl[3] = {0, 0, 0};
};

Row measure(const std::string& name, const Checkpoint& ckpt,
            const std::vector<std::span<const int32_t>>& windows,
            const std::vector<RowMatrixXf>& original_fp, int threads) {
  const LlamaWeights weights(ckpt);
  const LlamaConfig& cfg = weights.config();
  ForwardOptions fo;
  fo.threads = threads;
  LlamaForward fwd(weights, fo);
  Row row;
  row.name = name;
  std::vector<RowMatrixXf> fp;
  double max_diff = 0, max_logit = 0;
  for (size_t w = 0; w < windows.size(); ++w) {
    fp.push_back(fwd.logits_all(windows[w]));
    max_diff = std::max(max_diff, double((fp.back() - original_fp[w]).cwiseAbs().maxCoeff()));
    max_logit = std::max(max_logit, double(original_fp[w].cwiseAbs().maxCoeff()));
  }
  row.fp_rel_diff = max_diff / max_logit;

  ActAbsMaxTaps stats(cfg);
  for (auto w : windows) fwd.hidden(w, &stats);
  std::vector<LayerTransforms> smooth, hadamard(size_t(cfg.num_layers));
  set_smoothing(smooth, weights, stats);
  for (auto& layer : hadamard)
    for (Site site : kAllSites) layer.site(site).rotation.add_block_rotation(block_hadamard(32));
  const QuantScheme scheme = QuantScheme::make(QuantMode::w4a4, QuantFormat::mxfp4, {});
  const std::vector<LayerTransforms>* transforms[3] = {nullptr, &smooth, &hadamard};
  for (int m = 0; m < 3; ++m) {
    const QuantPlan plan =
        transforms[m] ? QuantPlan(cfg, scheme, *transforms[m]) : QuantPlan(cfg, scheme);
    W4a4Taps taps(plan, {threads, false});
    KlStats kl;
    for (size_t w = 0; w < windows.size(); ++w)
      kl.add_rows(fp[w], fwd.logits_all(windows[w], &taps));
    row.kl[m] = kl.summary().mean;
  }
  return row;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  const fs::path data = MXLENS_DATA_DEFAULT;
  const Checkpoint original = Checkpoint::open(data / "tinystories-656k");
  const LlamaConfig& cfg = original.config();
  check_seqlen(cfg, args.seqlen);
  const Tokenizer tok = Tokenizer::load(*original.tokenizer_json());
  const fs::path text = data / "tinystories-text" / "stories.txt";
  const std::vector<int32_t> ids = tokenize_text_file(tok, text, false);
  const int64_t n_windows = std::min<int64_t>(args.windows, int64_t(ids.size()) / args.seqlen);
  std::vector<std::span<const int32_t>> windows;
  for (int64_t w = 0; w < n_windows; ++w)
    windows.emplace_back(ids.data() + w * args.seqlen, size_t(args.seqlen));
  // Residual-mode calibration on text after the evaluated windows.
  const size_t calib_begin = size_t(n_windows * args.seqlen);
  const std::vector<int32_t> calib(ids.begin() + std::ptrdiff_t(calib_begin),
                                   ids.begin() + std::ptrdiff_t(calib_begin + 512));
  std::printf("tinystories-656k on %s: %lld windows x %d tokens, K = %d planted channels\n",
              text.string().c_str(), (long long)n_windows, args.seqlen, args.channels);

  std::vector<RowMatrixXf> original_fp;
  {
    const LlamaWeights weights(original);
    ForwardOptions fo;
    fo.threads = args.threads;
    LlamaForward fwd(weights, fo);
    for (auto w : windows) original_fp.push_back(fwd.logits_all(w));
  }

  const fs::path tmp = fs::temp_directory_path() / ("bench_plant-" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  std::vector<Row> rows;
  rows.push_back(measure("original", original, windows, original_fp, args.threads));
  int i = 0;
  for (double s : {8.0, 16.0, 64.0}) {
    PlantOptions opt;
    opt.channels = args.channels;
    opt.scale = s;
    const fs::path out = tmp / ("norm" + std::to_string(i++));
    plant_outliers(original, out, opt);
    char name[64];
    std::snprintf(name, sizeof name, "norm S=%g", s);
    rows.push_back(measure(name, Checkpoint::open(out), windows, original_fp, args.threads));
  }
  {
    PlantOptions opt;
    opt.mode = PlantMode::Residual;
    opt.channels = args.channels;
    opt.calib_tokens = calib;
    plant_outliers(original, tmp / "residual", opt);
    rows.push_back(measure("residual", Checkpoint::open(tmp / "residual"), windows, original_fp,
                           args.threads));
  }
  fs::remove_all(tmp);

  std::printf("\nKL(FP || W4A4), nats per token (MXFP4 ocp_floor, all four sites)\n");
  std::printf("  %-12s %12s %12s %14s %16s %18s\n", "model", "FP rel diff", "RTN", "smooth + RTN",
              "Hadamard + RTN", "Hadamard / RTN");
  for (const Row& r : rows)
    std::printf("  %-12s %12.2e %12.4f %14.4f %16.4f %18.2f\n", r.name.c_str(), r.fp_rel_diff,
                r.kl[0], r.kl[1], r.kl[2], r.kl[2] / r.kl[0]);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_plant: %s\n", e.what());
  return 1;
}
