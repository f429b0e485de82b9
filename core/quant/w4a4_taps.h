#pragma once
// W4a4Taps: the SiteTaps that turns the FP forward into the fake-quantized model of a
// QuantPlan (algorithm.md §2 pseudo-code). At every site: smoothing division where it is not
// folded into weights, the site's channel transform, then per-token fake quantization of the
// activations (the fused core/mx path). Every linear's weight is replaced by the plan's
// transformed, fake-quantized weight: the stored one if the plan has it, else computed when
// the forward reaches that layer into one buffer per linear (reused by the next layer: both
// forwards use a layer's weights only while they run that layer), or kept for later windows
// when Options::cache_weights is set.
// With QuantMode::none and transforms on, the logits equal the FP ones up to float rounding
// (algorithm.md §10.9).
#include <array>
#include <cstdint>
#include <vector>

#include "core/model/site_taps.h"
#include "core/quant/quant_plan.h"

namespace mxlens {

// Whether every layer's transformed, fake-quantized weights (FP32) fit `budget_bytes`, i.e.
// whether Options::cache_weights is worth it across windows (a 1B model's 4.9 GB are
// recomputed per window instead).
bool weight_cache_fits(const LlamaConfig& cfg, int64_t budget_bytes = int64_t(1) << 30);

class W4a4Taps : public SiteTaps {
 public:
  struct Options {
    int threads = 1;             // OpenMP threads for rotation and quantization of a site
    bool cache_weights = false;  // keep every layer's weights after the first forward
    // A site tensor or weight below this many elements is handled on one thread: every
    // parallel region ends in a barrier, which on a busy machine can cost more than the work
    // (same default as the forward's parallel_min_macs / 128).
    int64_t parallel_min_elements = int64_t(1) << 18;
  };

  // `plan` must outlive the taps.
  explicit W4a4Taps(const QuantPlan& plan, Options options);
  explicit W4a4Taps(const QuantPlan& plan) : W4a4Taps(plan, Options{}) {}

  void on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) override;
  const float* weight_override(int layer, Linear linear, std::span<const float> w, int out,
                               int in) override;
  // Norm-folded smoothing (qkv, gu): γ/s, so the forward's norm computes x̂·(γ/s) exactly as
  // an exported checkpoint's folded norm does. Sites whose norm was not replaced (a wrapping
  // tap that does not forward this call) get the division x·(1/s) in on_activations instead.
  const float* norm_override(int layer, Site site, std::span<const float> gamma) override;

 protected:
  // The plan's activation transform of the site (smoothing not yet in the norm, rotation).
  void transform(int layer, Site site, Eigen::Ref<RowMatrixXf> x, int threads);
  int threads_for(int64_t elements) const;

 private:

  const QuantPlan* plan_;
  Options opt_;
  std::array<RowMatrixXf, 7> scratch_;             // per linear, reused layer to layer
  std::vector<std::array<RowMatrixXf, 7>> cache_;  // [layer][linear] when caching
  std::array<std::vector<float>, 4> folded_norm_;   // per site, the last γ/s handed out
  std::array<int, 4> folded_layer_{-1, -1, -1, -1};  // layer whose norm used folded_norm_
};

}  // namespace mxlens
