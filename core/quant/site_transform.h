#pragma once
// What is done to the input of one site of one layer before its linears (algorithm.md §2,
// §3, §4.5, §5.6): optional smoothing factors s (with where they are folded) and an optional
// orthogonal channel transform T. Order on the activation side: smoothing (x/s) → x·T →
// fake quantization; on the weight side: W·diag(s) (and the row folds of §3) → W·T → quantize.
#include <array>
#include <vector>

#include "core/model/site_taps.h"
#include "core/quant/smoothing.h"
#include "core/rotation/channel_transform.h"

namespace mxlens {

struct SiteTransform {
  std::vector<float> smooth;                  // s per input channel; empty = no smoothing
  SmoothFold smooth_fold = SmoothFold::norm;  // where s is folded (smooth_fold(site, cfg))
  ChannelTransform rotation;                  // empty() = no rotation

  bool has_smoothing() const { return !smooth.empty(); }
  bool has_rotation() const { return !rotation.empty(); }
};

// The four site transforms of one decoder layer, indexed by Site.
struct LayerTransforms {
  std::array<SiteTransform, 4> sites;

  SiteTransform& site(Site s) { return sites[size_t(s)]; }
  const SiteTransform& site(Site s) const { return sites[size_t(s)]; }
  // s of every site (empty where a site is not smoothed) and their folds, as
  // fold_smoothing_into_weight takes them.
  std::array<std::vector<float>, 4> smoothing_factors() const;
  std::array<SmoothFold, 4> smoothing_folds() const;
};

// Sets s and its fold at every site of every layer from FP activation statistics
// (algorithm.md §3), leaving rotations as they are; `transforms` is resized to the model's
// layer count when empty.
void set_smoothing(std::vector<LayerTransforms>& transforms, const LlamaWeights& weights,
                   const ActAbsMaxTaps& stats, const SmoothingOptions& options = {});

}  // namespace mxlens
