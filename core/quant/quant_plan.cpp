// GCC 12 reports a false -Wmaybe-uninitialized inside its AVX-512 intrinsics when Eigen is inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "core/quant/quant_plan.h"

#include <string>

#include "core/util/error.h"

namespace mxlens {

std::array<std::vector<float>, 4> LayerTransforms::smoothing_factors() const {
  std::array<std::vector<float>, 4> s;
  for (Site site : kAllSites) s[size_t(site)] = sites[size_t(site)].smooth;
  return s;
}

std::array<SmoothFold, 4> LayerTransforms::smoothing_folds() const {
  std::array<SmoothFold, 4> f{};
  for (Site site : kAllSites) f[size_t(site)] = sites[size_t(site)].smooth_fold;
  return f;
}

void set_smoothing(std::vector<LayerTransforms>& transforms, const LlamaWeights& weights,
                   const ActAbsMaxTaps& stats, const SmoothingOptions& options) {
  const LlamaConfig& cfg = weights.config();
  if (transforms.empty()) transforms.resize(size_t(cfg.num_layers));
  LayerWeights lw;
  for (int l = 0; l < cfg.num_layers; ++l) {
    weights.load_layer(l, lw);
    auto s = layer_smoothing_factors(lw, stats, options);
    const bool gqa = cfg.num_kv_heads != cfg.num_heads;
    if (options.tie_gqa && gqa)
      s[size_t(Site::O)] = tied_smoothing_factors(stats.absmax(l, Site::O), lw.o, cfg.head_dim,
                                                  cfg.kv_group(), options);
    for (Site site : kAllSites) {
      transforms[size_t(l)].site(site).smooth = s[size_t(site)];
      transforms[size_t(l)].site(site).smooth_fold = smooth_fold(site, cfg, options.tie_gqa);
    }
  }
}

QuantPlan::QuantPlan(const LlamaConfig& cfg, QuantScheme scheme,
                     std::vector<LayerTransforms> transforms)
    : cfg_(cfg), scheme_(scheme), transforms_(std::move(transforms)) {
  validate(scheme_.weights, "weights");
  validate(scheme_.activations, "activations");
  if (transforms_.empty()) transforms_.resize(size_t(cfg_.num_layers));
  if (int(transforms_.size()) != cfg_.num_layers)
    throw Error("quantization plan", "has transforms for " + std::to_string(transforms_.size()) +
                                         " layers, the model has " +
                                         std::to_string(cfg_.num_layers));
  for (int l = 0; l < cfg_.num_layers; ++l)
    for (Site s : kAllSites) check_site(l, s, transforms_[size_t(l)].site(s));
  stored_.resize(size_t(cfg_.num_layers));
}

void QuantPlan::check_site(int l, Site s, const SiteTransform& t) const {
  const std::string where = "layer " + std::to_string(l) + " site " + std::string(site_name(s));
  const int channels = site_channels(s);
  if (t.has_rotation()) t.rotation.check_channels(channels, where);
  if (!t.has_smoothing()) return;
  if (int(t.smooth.size()) != channels)
    throw Error(where, "smoothing has " + std::to_string(t.smooth.size()) +
                           " factors, the site has " + std::to_string(channels) + " channels");
  // o folds into v rows without q/k/v biases, and under GQA only with s tied across groups.
  const bool o_rows_ok = s == Site::O &&
                         smooth_fold(s, cfg_, /*tie_gqa=*/true) == SmoothFold::previous_rows &&
                         (cfg_.num_kv_heads == cfg_.num_heads ||
                          smoothing_tied_across_groups(t.smooth, cfg_.head_dim, cfg_.kv_group()));
  const bool ok = t.smooth_fold == SmoothFold::online ||
                  (t.smooth_fold == SmoothFold::norm && (s == Site::Qkv || s == Site::GateUp)) ||
                  (t.smooth_fold == SmoothFold::previous_rows && (s == Site::Down || o_rows_ok));
  if (!ok)
    throw Error(where,
                "smoothing cannot be folded that way at this site (o folds into v_proj rows "
                "only without q/k/v biases and, under GQA, with s equal across each KV group)");
}

void QuantPlan::set_site(int layer, Site site, SiteTransform transform) {
  check_layer(layer);
  check_site(layer, site, transform);
  transforms_[size_t(layer)].site(site) = std::move(transform);
  // Stored weights of this layer were computed with the old transform: a site's smoothing
  // also reaches the rows of the previous linear (v for o, up for down).
  for (auto& w : stored_[size_t(layer)]) w.reset();
}

void QuantPlan::check_layer(int layer) const {
  if (layer < 0 || layer >= cfg_.num_layers)
    throw Error("quantization plan", "layer " + std::to_string(layer) + " out of range");
}

const SiteTransform& QuantPlan::site(int layer, Site site) const {
  check_layer(layer);
  return transforms_[size_t(layer)].site(site);
}

const LayerTransforms& QuantPlan::layer(int layer) const {
  check_layer(layer);
  return transforms_[size_t(layer)];
}

int QuantPlan::site_channels(Site site) const {
  switch (site) {
    case Site::Qkv:
    case Site::GateUp:
      return cfg_.hidden_size;
    case Site::O:
      return cfg_.num_heads * cfg_.head_dim;
    case Site::Down:
      return cfg_.intermediate_size;
  }
  return 0;
}

void QuantPlan::transform_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x,
                                      int threads, bool norm_folded) const {
  const SiteTransform& t = this->site(layer, site);
  const bool divide = t.smooth_fold == SmoothFold::online ||
                      (t.smooth_fold == SmoothFold::norm && !norm_folded);
  if (t.has_smoothing() && divide) {
    if (Eigen::Index(t.smooth.size()) != x.cols())
      throw Error("site " + std::string(site_name(site)),
                  "activations have " + std::to_string(x.cols()) + " channels, smoothing " +
                      std::to_string(t.smooth.size()));
    const Eigen::Map<const Eigen::RowVectorXf> s(t.smooth.data(), x.cols());
    if (t.smooth_fold == SmoothFold::norm)
      x.array().rowwise() *= s.array().inverse();  // stands in for γ ← γ/s
    else
      x.array().rowwise() /= s.array();  // online division (o under GQA)
  }
  if (t.has_rotation()) t.rotation.apply_rows(x, threads);
}

void QuantPlan::transform_weight(int layer, Linear which, std::span<const float> w, int out, int in,
                                 RowMatrixXf& dst, int threads) const {
  check_layer(layer);
  if (int64_t(w.size()) != int64_t(out) * in)
    throw Error(std::string(linear_name(which)), "weight size does not match its shape");
  dst = Eigen::Map<const RowMatrixXf>(w.data(), out, in);
  const LayerTransforms& lt = transforms_[size_t(layer)];
  fold_smoothing_into_weight(which, lt.smoothing_factors(), lt.smoothing_folds(), dst,
                             cfg_.head_dim);
  const SiteTransform& t = lt.site(site_of(which));
  if (t.has_rotation()) t.rotation.apply_rows(dst, threads);
}

void QuantPlan::quantized_weight(int layer, Linear which, std::span<const float> w, int out, int in,
                                 RowMatrixXf& dst, int threads) const {
  if (const RowMatrixXf* s = stored_weight(layer, which)) {
    if (s->rows() != out || s->cols() != in)
      throw Error(std::string(linear_name(which)), "stored weight has the wrong shape");
    dst = *s;
    return;
  }
  if (prequantized_) {
    if (int64_t(w.size()) != int64_t(out) * in)
      throw Error(std::string(linear_name(which)), "weight has the wrong size");
    dst = Eigen::Map<const RowMatrixXf>(w.data(), out, in);
    return;
  }
  transform_weight(layer, which, w, out, in, dst, threads);
  fake_quantize_rows(dst, scheme_.weights, TensorRole::weights, threads);
}

void QuantPlan::set_weight(int layer, Linear which, RowMatrixXf w) {
  check_layer(layer);
  stored_[size_t(layer)][size_t(which)] = std::move(w);
}

const RowMatrixXf* QuantPlan::stored_weight(int layer, Linear which) const {
  check_layer(layer);
  const auto& s = stored_[size_t(layer)][size_t(which)];
  return s ? &*s : nullptr;
}

void QuantPlan::store_all_weights(const LlamaWeights& weights, int threads) {
  LayerWeights lw;
  for (int l = 0; l < cfg_.num_layers; ++l) {
    weights.load_layer(l, lw, threads);
    for (Linear which : kAllLinears) {
      if (stored_weight(l, which)) continue;
      const MatrixRef& m = lw.linear(which);
      RowMatrixXf q;
      quantized_weight(l, which, m.span(), int(m.rows), int(m.cols), q, threads);
      set_weight(l, which, std::move(q));
    }
  }
}

int64_t QuantPlan::stored_floats() const {
  int64_t n = 0;
  for (const auto& layer : stored_)
    for (const auto& w : layer)
      if (w) n += w->size();
  return n;
}

std::vector<float> QuantPlan::folded_norm(int layer, Site site,
                                          std::span<const float> gamma) const {
  const SiteTransform& t = this->site(layer, site);
  if (site != Site::Qkv && site != Site::GateUp)
    throw Error("quantization plan", "only the qkv and gu sites are produced by a norm");
  if (!t.has_smoothing() || t.smooth_fold != SmoothFold::norm) return {gamma.begin(), gamma.end()};
  return fold_smoothing_into_norm(gamma, t.smooth);
}

}  // namespace mxlens
