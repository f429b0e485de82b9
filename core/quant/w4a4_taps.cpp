// GCC 12 reports a false -Wmaybe-uninitialized inside its AVX-512 intrinsics when Eigen is inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "core/quant/w4a4_taps.h"

#include <string>

#include "core/util/error.h"

namespace mxlens {

W4a4Taps::W4a4Taps(const QuantPlan& plan, Options options) : plan_(&plan), opt_(options) {
  if (opt_.threads < 1) throw Error("--threads", "must be at least 1");
  if (opt_.cache_weights) cache_.resize(size_t(plan.config().num_layers));
}

int W4a4Taps::threads_for(int64_t elements) const {
  return elements >= opt_.parallel_min_elements ? opt_.threads : 1;
}

const float* W4a4Taps::norm_override(int layer, Site site, std::span<const float> gamma) {
  const SiteTransform& t = plan_->site(layer, site);
  if (!t.has_smoothing() || t.smooth_fold != SmoothFold::norm) return nullptr;
  folded_norm_[size_t(site)] = plan_->folded_norm(layer, site, gamma);
  folded_layer_[size_t(site)] = layer;
  return folded_norm_[size_t(site)].data();
}

void W4a4Taps::transform(int layer, Site site, Eigen::Ref<RowMatrixXf> x, int threads) {
  const bool folded = folded_layer_[size_t(site)] == layer;
  folded_layer_[size_t(site)] = -1;
  plan_->transform_activations(layer, site, x, threads, folded);
}

void W4a4Taps::on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) {
  const int threads = threads_for(x.size());
  transform(layer, site, x, threads);
  fake_quantize_rows(x, plan_->scheme().activations, TensorRole::activations, threads);
}

const float* W4a4Taps::weight_override(int layer, Linear linear, std::span<const float> w, int out,
                                       int in) {
  if (const RowMatrixXf* stored = plan_->stored_weight(layer, linear)) {
    if (stored->rows() != out || stored->cols() != in)
      throw Error(std::string(linear_name(linear)), "stored weight has the wrong shape");
    return stored->data();
  }
  if (opt_.cache_weights) {
    if (layer < 0 || layer >= int(cache_.size()))
      throw Error("quantization taps", "layer " + std::to_string(layer) + " out of range");
    RowMatrixXf& c = cache_[size_t(layer)][size_t(linear)];
    if (c.rows() != out || c.cols() != in)
      plan_->quantized_weight(layer, linear, w, out, in, c, threads_for(int64_t(w.size())));
    return c.data();
  }
  RowMatrixXf& buf = scratch_[size_t(linear)];
  plan_->quantized_weight(layer, linear, w, out, in, buf, threads_for(int64_t(w.size())));
  return buf.data();
}

bool weight_cache_fits(const LlamaConfig& c, int64_t budget_bytes) {
  const int64_t d = c.hidden_size, f = c.intermediate_size;
  const int64_t q = int64_t(c.num_heads) * c.head_dim, kv = int64_t(c.num_kv_heads) * c.head_dim;
  return (d * q + 2 * d * kv + q * d + 3 * d * f) * c.num_layers * 4 <= budget_bytes;
}

}  // namespace mxlens
