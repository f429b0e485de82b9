#pragma once
// Per-site calibration statistics (design.md "SiteStats", formats.md §5.1), collected by a tap
// while calibration windows run through the (fake-quantized) model:
//   before  the tensor as it arrives at the site (what RTN would quantize);
//   after   the same tensor after the site's smoothing division and channel transform (what the
//           method quantizes), in the transformed basis.
// For each: per-channel absmax, per-block E8M0 histograms (the 256 possible scale bytes, over
// every token), per-block MX quantization error as sums of signal and error energy (SQNR), and
// a bounded sample of activation rows (the same token positions at every site, so the views
// can line them up). Before-only: per-channel mean and RMS.
//
// Blocks: 32 channels each along the row, the last one short when C is not a multiple of 32
// (n_blocks = ceil(C/32)); E8M0 bytes and errors use the MXFP4 options given (scale rule, RNE).
// The error is what core/quant's fake_quantize_rows does to the tensor of one call (a short
// last block as if zero-padded). dqv2_log8 has no E8M0 byte (its code is relative to each
// tensor's range): its histograms and sample bytes use the block's ocp_floor byte, its error
// the dqv2_log8 fake quantization over the call's tensor, as W4a4Taps does.
#include <array>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "core/model/llama_config.h"
#include "core/model/site_taps.h"
#include "core/mx/quant_options.h"

namespace mxlens {

class QuantPlan;

inline constexpr int kStatsBlock = 32;

struct SiteStats {
  int channels = 0;
  int blocks = 0;      // ceil(channels / 32)
  int64_t tokens = 0;  // rows seen

  std::vector<float> absmax_before, absmax_after;  // [C] max |x| over all tokens
  std::vector<float> mean_before, rms_before;      // [C] mean x and sqrt(mean x²)
  // [blocks × 256], row-major: count of tokens whose block b got E8M0 byte e.
  std::vector<uint32_t> e8m0_hist_before, e8m0_hist_after;
  // [blocks]: Σ‖x_blk‖² and Σ‖x_blk − Q(x_blk)‖² over tokens (double).
  std::vector<double> signal_before, noise_before, signal_after, noise_after;

  // The sampled rows: `sample_tokens[i]` = window · seqlen + position of row i.
  std::vector<int64_t> sample_tokens;
  RowMatrixXf sample_before, sample_after;  // [rows, C]

  // 10·log10(signal/noise) per block; +inf where noise is 0, NaN where signal is 0.
  std::vector<double> sqnr_db_before() const;
  std::vector<double> sqnr_db_after() const;
  // Whole-site SQNR over all blocks.
  double total_sqnr_db_before() const;
  double total_sqnr_db_after() const;
  // Mean over tokens of (max − min) E8M0 byte across the blocks of a token, from the samples
  // (the "exponent spread" badge), bytes under `mx`'s scale rule; NaN without samples.
  double mean_exponent_spread_before(const QuantOptions& mx = {}) const;
  double mean_exponent_spread_after(const QuantOptions& mx = {}) const;
  // E8M0 bytes of the sampled rows, [rows × blocks] row-major.
  std::vector<uint8_t> sample_e8m0_before(const QuantOptions& mx) const;
  std::vector<uint8_t> sample_e8m0_after(const QuantOptions& mx) const;
};

// SiteStats of every layer, [layer][site].
using ModelSiteStats = std::vector<std::array<SiteStats, 4>>;

struct SiteStatsOptions {
  QuantOptions mx;  // scale rule and rounding for E8M0 bytes and the MX error
  // Rows sampled per site: at most max_sample_rows, and fewer when the samples of every
  // layer and site (before and after, float32) would exceed sample_budget_bytes.
  int max_sample_rows = 256;
  int64_t sample_budget_bytes = int64_t(64) << 20;
  uint64_t seed = 0;  // which token positions are sampled
  // OpenMP threads for the per-block work and the site's transform (0 = OpenMP's default);
  // results do not depend on it. Sites below parallel_min_elements stay on one thread.
  int threads = 0;
  int64_t parallel_min_elements = int64_t(1) << 18;
};

// Rows per site that fit the budget for this model (≥ 0, ≤ max_sample_rows).
int sample_rows_for_budget(const LlamaConfig& cfg, const SiteStatsOptions& options);

// The collecting tap. Wraps another tap (the W4a4Taps of the plan, or null for FP): records
// `before`, computes `after` with plan.transform_activations on a copy, then hands x to the
// inner tap; weight_override is the inner tap's.
// Call begin_window(w) before each window's forward; windows × seqlen fixes which positions
// are sampled (evenly spread, seeded). Row i of a site's samples is sample_tokens[i] (fixed at
// construction, the same at every site); rows of windows never run stay zero. Positions are
// counted per (layer, site) from begin_window, so x may come one row per call (the reference
// forward) or a whole window at once.
class SiteStatsTaps : public SiteTaps {
 public:
  SiteStatsTaps(const QuantPlan& plan, SiteTaps* inner, int windows, int seqlen,
                const SiteStatsOptions& options = {});

  void begin_window(int window);
  void on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) override;
  const float* weight_override(int layer, Linear linear, std::span<const float> w, int out,
                               int in) override;

  const ModelSiteStats& stats() const { return stats_; }
  ModelSiteStats take_stats() { return std::move(stats_); }

 private:
  const QuantPlan* plan_;
  SiteTaps* inner_;
  SiteStatsOptions opt_;
  int seqlen_;
  int window_ = 0;
  std::vector<int64_t> sample_tokens_;  // sorted global positions
  ModelSiteStats stats_;
  RowMatrixXf after_;  // scratch
  RowMatrixXf quant_;  // scratch: the fake-quantized tensor
  struct Running {
    std::vector<double> sum, sum_sq;  // [C] before, for mean and RMS
    int64_t cursor = 0;               // rows seen in this window
  };
  std::vector<std::array<Running, 4>> running_;  // [layer][site]
};

}  // namespace mxlens
