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
  // (the "exponent spread" badge).
  double mean_exponent_spread_before() const;
  double mean_exponent_spread_after() const;
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
};

// Rows per site that fit the budget for this model (≥ 0, ≤ max_sample_rows).
int sample_rows_for_budget(const LlamaConfig& cfg, const SiteStatsOptions& options);

// The collecting tap. Wraps another tap (the W4a4Taps of the plan, or null for FP): records
// `before`, computes `after` with plan.transform_activations on a copy, then hands x to the
// inner tap; weight_override is the inner tap's.
// Call begin_window(w) before each window's forward; windows × seqlen fixes which positions
// are sampled (evenly spread, seeded).
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
};

}  // namespace mxlens
