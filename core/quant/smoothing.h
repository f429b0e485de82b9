#pragma once
// SmoothQuant-style smoothing as in the released DuQuant++ code (algorithm.md §3):
// per-channel activation statistics, the factors s per site, and how s is folded.
//
// For a site with factors s (one per input channel), the linears see x/s and W·diag(s), so
// x·Wᵀ is unchanged. Where x/s comes from (SmoothFold):
//   norm           qkv, gu: the producing RMSNorm's γ ← γ/s. The forward reads γ from the
//                  checkpoint, so W4a4Taps applies the fold as x ← x·(1/s) right after the norm
//                  (the same product up to float rounding); folded_norm() gives γ/s for export.
//   previous_rows  down: rows of W_up ÷ s (silu(g)⊙u is linear in u); o without GQA and
//                  without q/k/v biases: rows of W_v ÷ s.
//   online         o under GQA (s has H·D entries, W_v only Hkv·D rows): x ← x/s at the
//                  o_proj input, every forward — unless SmoothingOptions::tie_gqa, which makes
//                  s equal across the query heads that share a KV head, so that o folds into
//                  W_v rows under GQA too (algorithm.md §3 note b, §11 option).
#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "core/model/llama_config.h"
#include "core/model/llama_model.h"
#include "core/model/site_taps.h"

namespace mxlens {

enum class SmoothFold { norm, previous_rows, online };

// How `site`'s factors are folded for this model (see above); `tie_gqa` as in
// SmoothingOptions.
SmoothFold smooth_fold(Site site, const LlamaConfig& cfg, bool tie_gqa = false);

// Records act[c] = max |x[:, c]| per layer, site and input channel over every token of every
// window run through a forward with this tap (algorithm.md §3 "Statistics"). Leaves x as is.
class ActAbsMaxTaps : public SiteTaps {
 public:
  explicit ActAbsMaxTaps(const LlamaConfig& cfg);

  void on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) override;

  // [channels of the site] (zeros before any window).
  const std::vector<float>& absmax(int layer, Site site) const;
  int64_t tokens_seen() const { return tokens_; }  // tokens that reached layer 0's qkv site

 private:
  std::vector<std::array<std::vector<float>, 4>> absmax_;  // [layer][site][channel]
  int64_t tokens_ = 0;
};

struct SmoothingOptions {
  float alpha = 0.6f;         // migration strength
  float min_value = 1e-5f;    // clamp of act, of w and of s (code)
  float floor_value = 0.01f;  // the later "truncate" step: s ≥ 0.01
  // o under GQA: take act[c] and w[c] as their maxima over the query heads sharing a KV head
  // (same head_dim offset), so s is equal across each group and folds into W_v rows (an
  // exportable model: no online division). Off = the released code's online division.
  bool tie_gqa = false;
};

// s for one site: s[c] = max(max(act[c], 1e-5)^α / max(w[c], 1e-5)^(1-α), 1e-5), then s ≥ 0.01,
// with w[c] = max_o |W_key[o, c]| over the rows of the key linear ([out, in] row-major).
std::vector<float> smoothing_factors(std::span<const float> act_absmax, const MatrixRef& key_weight,
                                     const SmoothingOptions& options = {});
// The same with act and w replaced by their maxima over each GQA group of `group` query heads
// of `head_dim` channels (channel h·D + d of head h in group h / group): equal s per group.
std::vector<float> tied_smoothing_factors(std::span<const float> act_absmax,
                                          const MatrixRef& key_weight, int head_dim, int group,
                                          const SmoothingOptions& options = {});

// The key linear of each site (algorithm.md §3 table): q_proj, o_proj, up_proj, down_proj.
Linear smoothing_key_linear(Site site);

// s of the four sites of one layer from the statistics and that layer's FP weights.
std::array<std::vector<float>, 4> layer_smoothing_factors(const LayerWeights& weights,
                                                          const ActAbsMaxTaps& stats,
                                                          const SmoothingOptions& options = {});

// Folds the layer's factors into weight `which` ([out, in] row-major, in place):
// columns × s of its own site; W_up rows ÷ s_down; W_v rows ÷ s_o when o folds into v (under
// GQA, v row g·D + d takes s of the group's first head, channel (g·group)·D + d; `head_dim`
// is needed then). `site_factors` is indexed by Site (empty vector = that site is not smoothed).
void fold_smoothing_into_weight(Linear which, const std::array<std::vector<float>, 4>& site_factors,
                                const std::array<SmoothFold, 4>& folds, Eigen::Ref<RowMatrixXf> w,
                                int head_dim = 0);
// Whether s ([H·D]) is equal across the heads of every GQA group (what the v fold needs).
bool smoothing_tied_across_groups(std::span<const float> s, int head_dim, int group);

// γ/s: the RMSNorm weight that absorbs a norm-folded site's factors.
std::vector<float> fold_smoothing_into_norm(std::span<const float> gamma, std::span<const float> s);

}  // namespace mxlens
