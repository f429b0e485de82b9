#pragma once
// QuantPlan: everything that turns the FP model into the fake-quantized one — the scheme, the
// four SiteTransforms of every layer, and optionally stored final weights (GPTQ results or a
// cache). The seven transformed, fake-quantized weights of a layer (FP32, dequantized values)
// are computed on demand from the FP weights one layer at a time; nothing of the whole model
// is held in FP32 unless the caller stores it (store_all_weights, set_weight): for 1B-8B models
// leave the plan without stored weights and let W4a4Taps compute each layer's weights when the
// forward reaches it.
#include <array>
#include <optional>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "core/model/llama_model.h"
#include "core/quant/quant_scheme.h"
#include "core/quant/site_transform.h"

namespace mxlens {

class QuantPlan {
 public:
  // `transforms`: one per layer, or empty for no transforms. Throws Error when a smoothing
  // vector or a rotation does not fit its site's channel count.
  QuantPlan(const LlamaConfig& cfg, QuantScheme scheme,
            std::vector<LayerTransforms> transforms = {});

  const LlamaConfig& config() const { return cfg_; }
  const QuantScheme& scheme() const { return scheme_; }
  const SiteTransform& site(int layer, Site site) const;
  const LayerTransforms& layer(int layer) const;
  const std::vector<LayerTransforms>& transforms() const { return transforms_; }
  // Replaces one site's transform (checked as in the constructor) and drops the layer's
  // stored weights, which were computed with the old one. Used while calibrating, where each
  // site's rotation is found only when the forward reaches it (algorithm.md §4.6).
  void set_site(int layer, Site site, SiteTransform transform);

  // Input channels of a site.
  int site_channels(Site site) const;

  // Activation side, in place: smoothing division where it is not folded into weights
  // (qkv/gu stand-in for the γ fold, o under GQA), then the rotation. No quantization.
  // `norm_folded`: the forward already used folded_norm() as the norm weight (W4a4Taps'
  // norm_override), so a norm-folded site's division is skipped.
  void transform_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x, int threads = 1,
                             bool norm_folded = false) const;

  // W' = (smoothing-folded W)·T, [out, in], not quantized. `w` is the FP weight as stored.
  void transform_weight(int layer, Linear which, std::span<const float> w, int out, int in,
                        RowMatrixXf& dst, int threads = 1) const;
  // The weight the quantized model uses: the stored one if set, else transform_weight then the
  // scheme's weight fake quantization.
  void quantized_weight(int layer, Linear which, std::span<const float> w, int out, int in,
                        RowMatrixXf& dst, int threads = 1) const;

  // Stores the final weight of (layer, linear) (e.g. GPTQ's output: already transformed and
  // quantized); quantized_weight returns it from then on.
  void set_weight(int layer, Linear which, RowMatrixXf w);
  const RowMatrixXf* stored_weight(int layer, Linear which) const;
  // Computes and stores every layer's quantized weights, loading one layer at a time
  // (a cache for small models: 7 FP32 matrices per layer).
  void store_all_weights(const LlamaWeights& weights, int threads = 1);
  int64_t stored_floats() const;

  // A plan for a checkpoint whose linears are stored already transformed and quantized
  // (fp_quant, core/quant/fp_quant_plan.h): quantized_weight() then returns the weight it is
  // given unchanged; the activation side (transforms, quantization) runs as usual.
  void set_prequantized_weights(bool on) { prequantized_ = on; }
  bool prequantized_weights() const { return prequantized_; }

  // γ/s of a norm-folded site (qkv → input norm, gu → post-attention norm) for export;
  // γ itself when the site is not smoothed.
  std::vector<float> folded_norm(int layer, Site site, std::span<const float> gamma) const;

 private:
  void check_layer(int layer) const;
  void check_site(int layer, Site site, const SiteTransform& transform) const;

  LlamaConfig cfg_;
  QuantScheme scheme_;
  std::vector<LayerTransforms> transforms_;
  std::vector<std::array<std::optional<RowMatrixXf>, 7>> stored_;
  bool prequantized_ = false;
};

}  // namespace mxlens
