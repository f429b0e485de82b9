// mxlens-cli demo: the embedded example that needs no files. Core computes (core/demo);
// this file only prints.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "app/cli/commands.h"
#include "core/demo/demo.h"
#include "core/mx/mxfp4.h"
#include "core/util/error.h"

namespace mxlens::cli {

namespace {

constexpr int kHeatmapTokens = 12;  // first tokens shown, plus the outlier token
constexpr int kHeatmapBlocks = 32;  // columns shown at most
constexpr const char* kShades = " .:-=+*#%@";

bool is_outlier_block(const DemoReport& r, int b) {
  return std::find(r.outlier_blocks.begin(), r.outlier_blocks.end(), b) != r.outlier_blocks.end();
}

void print_heatmap(const DemoReport& r, const DemoVariant& v) {
  const int cols = std::min(r.n_blocks, kHeatmapBlocks);
  std::vector<int> rows;
  for (int t = 0; t < std::min(r.config.tokens, kHeatmapTokens); ++t) rows.push_back(t);
  if (r.outlier_token >= kHeatmapTokens) rows.push_back(r.outlier_token);
  int lo = 1000, hi = -1000;
  for (int t : rows)
    for (int b = 0; b < cols; ++b) {
      lo = std::min(lo, v.exponent[static_cast<size_t>(t) * r.n_blocks + b]);
      hi = std::max(hi, v.exponent[static_cast<size_t>(t) * r.n_blocks + b]);
    }
  std::printf(
      "\nE8M0 exponent k = e-127 per block, %s (rows: tokens; columns: blocks of 32 "
      "channels; shade: k from %d ' ' to %d '@'%s)\n",
      v.name.c_str(), lo, hi,
      cols < r.n_blocks ? (", first " + std::to_string(cols) + " blocks").c_str() : "");
  std::printf("token  ");
  for (int b = 0; b < cols; ++b)
    std::printf("%4s%c", ("b" + std::to_string(b)).c_str(), is_outlier_block(r, b) ? '*' : ' ');
  std::printf("\n");
  for (int t : rows) {
    std::printf("%5d%c ", t, t == r.outlier_token ? '!' : ' ');
    for (int b = 0; b < cols; ++b) {
      const int k = v.exponent[static_cast<size_t>(t) * r.n_blocks + b];
      const int shade = hi > lo ? (k - lo) * 9 / (hi - lo) : 0;
      std::printf("%4d%c", k, kShades[shade]);
    }
    std::printf("\n");
  }
}

void print_report(const DemoReport& r) {
  const DemoConfig& c = r.config;
  std::printf(
      "mxlens demo: synthetic activations, %d tokens x %d channels (%d blocks of 32), "
      "seed %llu\n",
      c.tokens, c.channels, r.n_blocks, static_cast<unsigned long long>(c.seed));
  std::printf("channel scales log-normal (sigma %.2f); outlier token %d (x%g)\n",
              double(c.channel_sigma), r.outlier_token, double(c.token_scale));
  std::printf("MXFP4: scale rule %s, rounding %s, %s path\n",
              std::string(to_string(c.quant.scale_rule)).c_str(),
              std::string(to_string(c.quant.rounding)).c_str(), mxfp4_active_path());
  std::printf("\n%d outlier channels (x%g):", c.outliers, double(c.outlier_scale));
  for (int ch : r.outlier_channels) std::printf(" %d (block %d)", ch, ch / 32);
  std::printf("\n");
  double plain_lo = 1e30, plain_hi = 0;
  for (int b = 0; b < r.n_blocks; ++b)
    if (!is_outlier_block(r, b)) {
      plain_lo = std::min(plain_lo, r.identity.block_rel_error_ordinary[b]);
      plain_hi = std::max(plain_hi, r.identity.block_rel_error_ordinary[b]);
    }
  if (plain_hi == 0) plain_lo = 0;
  for (int b : r.outlier_blocks) {
    double others = 0;
    int n = 0;
    for (int o = 0; o < r.n_blocks; ++o)
      if (!is_outlier_block(r, o)) {
        for (int t = 0; t < c.tokens; ++t) others += r.identity.exponent[t * r.n_blocks + o];
        n += c.tokens;
      }
    double mine = 0;
    for (int t = 0; t < c.tokens; ++t) mine += r.identity.exponent[t * r.n_blocks + b];
    std::printf(
        "  block %d: mean exponent %+.2f vs %+.2f in blocks without outliers (+%.2f octaves);\n"
        "           error of its ordinary channels %.4f (blocks without outliers: %.4f..%.4f), "
        "after hadamard32 %.4f, after duquant++32 %.4f\n",
        b, mine / c.tokens, n ? others / n : 0.0, mine / c.tokens - (n ? others / n : 0.0),
        r.identity.block_rel_error_ordinary[b], plain_lo, plain_hi,
        r.hadamard.block_rel_error_ordinary[b], r.duquant.block_rel_error_ordinary[b]);
  }

  print_heatmap(r, r.identity);
  print_heatmap(r, r.hadamard);

  std::printf(
      "\nper block: exponent range over tokens, crest log2(amax/rms) in octaves, "
      "MXFP4 relative error and SQNR\n(errors in the original channel basis: the rotated "
      "variants are rotated back after quantization)\n");
  std::printf(
      "block       identity: k range  crest  rel.err  SQNR dB  |  hadamard32: k range  "
      "crest  rel.err  SQNR dB  |  duquant++32: crest  rel.err\n");
  for (int b = 0; b < r.n_blocks; ++b) {
    const DemoVariant& i = r.identity;
    const DemoVariant& h = r.hadamard;
    const DemoVariant& d = r.duquant;
    std::printf(
        "%5d%c  %10d..%-4d %6.2f  %7.4f  %7.2f  |  %12d..%-4d %6.2f  %7.4f  %7.2f  |  %18.2f  "
        "%7.4f\n",
        b, is_outlier_block(r, b) ? '*' : ' ', i.exponent_min[b], i.exponent_max[b],
        i.crest_octaves[b], i.block_rel_error[b], i.block_sqnr_db[b], h.exponent_min[b],
        h.exponent_max[b], h.crest_octaves[b], h.block_rel_error[b], h.block_sqnr_db[b],
        d.crest_octaves[b], d.block_rel_error[b]);
  }
  std::printf(
      "\ntotal MXFP4 error: identity %.4f (SQNR %.2f dB, mean crest %.2f oct) -> "
      "block Hadamard-32 %.4f (SQNR %.2f dB, mean crest %.2f oct)\n",
      r.identity.rel_error, r.identity.sqnr_db, r.identity.mean_crest_octaves, r.hadamard.rel_error,
      r.hadamard.sqnr_db, r.hadamard.mean_crest_octaves);
  const DemoGreedy& g = r.greedy;
  std::printf(
      "\nDuQuant++ greedy-32 search (paper selection, range objective max-min, seed %llu): "
      "%d calibration tokens, S = %d steps\n"
      "  best prefix k* = %d of %d; objective %.4g -> %.4g (%.1f%% lower)\n",
      static_cast<unsigned long long>(c.seed), g.calib_tokens, g.max_steps, g.best_step,
      g.max_steps, g.objective_start, g.objective_best,
      g.objective_start > 0 ? 100.0 * (1.0 - g.objective_best / g.objective_start) : 0.0);
  if (!g.channels.empty()) {
    std::printf("  channels spread (in block, first %d of %d):",
                std::min<int>(24, int(g.channels.size())), int(g.channels.size()));
    for (size_t t = 0; t < g.channels.size() && t < 24; ++t) std::printf(" %d", g.channels[t]);
    std::printf("\n");
  }
  std::printf(
      "total MXFP4 error: identity %.4f -> block Hadamard-32 %.4f -> DuQuant++ greedy-32 %.4f "
      "(SQNR %.2f dB, mean crest %.2f oct)\n",
      r.identity.rel_error, r.hadamard.rel_error, r.duquant.rel_error, r.duquant.sqnr_db,
      r.duquant.mean_crest_octaves);
  std::printf(
      "\none linear y = x W^T (W random %d x %d), W4A4 output error |y_q - y| / |y|:\n"
      "  identity %.4f   block Hadamard-32 %.4f   DuQuant++ greedy-32 %.4f\n",
      r.linear.out_features, c.channels, r.linear.identity, r.linear.hadamard, r.linear.duquant);
  std::printf("(* = block with an outlier channel, ! = outlier token)\n");
}

}  // namespace

void register_demo(CLI::App& app) {
  auto config = std::make_shared<DemoConfig>();
  auto* cmd = app.add_subcommand(
      "demo",
      "Embedded example, no files: synthetic activations with planted outliers, their "
      "MXFP4 block exponents and error, before and after a 32x32 block Hadamard and the "
      "DuQuant++ greedy-32 rotation, and the W4A4 output error of one linear");
  cmd->add_option("--tokens", config->tokens, "rows of synthetic activations")
      ->capture_default_str();
  cmd->add_option("--channels", config->channels, "channels (a multiple of 32)")
      ->capture_default_str();
  cmd->add_option("--outliers", config->outliers, "planted outlier channels")
      ->capture_default_str();
  cmd->add_option("--scale", config->outlier_scale, "magnitude factor of the outlier channels")
      ->capture_default_str();
  cmd->add_option("--token-scale", config->token_scale, "magnitude factor of the outlier token")
      ->capture_default_str();
  cmd->add_option("--seed", config->seed, "random seed")->capture_default_str();
  cmd->add_option("--greedy-steps", config->greedy_steps, "DuQuant++ greedy search steps S")
      ->capture_default_str();
  cmd->add_option("--calib-tokens", config->calib_tokens,
                  "tokens the greedy search is calibrated on (evenly spaced)")
      ->capture_default_str();
  cmd->add_option("--out-features", config->out_features,
                  "rows of the random weight of the linear-layer check")
      ->capture_default_str();
  cmd->footer(
      "Activations x[t][c] = N(0,1) * exp(0.5 * N(0,1))_c, times --scale on the outlier\n"
      "channels and --token-scale on one token. MXFP4 uses the default scale rule (ocp_floor,\n"
      "RNE). The Hadamard variant applies H_32/sqrt(32) (Sylvester) to every 32-block of every\n"
      "token before quantization and rotates back after, so errors compare channel by channel.\n"
      "DuQuant++ (algorithm.md 4.4): greedy search of one 32x32 rotation on the calibration\n"
      "tokens, best prefix of S steps kept, applied like the Hadamard (rotated back with R^T).\n"
      "Linear check: y = x W^T against Q(x R) Q(W R)^T, both operands MXFP4 (W4A4).");
  cmd->callback([config] { print_report(run_demo(*config)); });
}

}  // namespace mxlens::cli
