#include "core/backend/window_model.h"

namespace mxlens {

CpuWindowModel::CpuWindowModel(const LlamaWeights& weights, const ForwardOptions& options,
                               SiteTaps* taps)
    : weights_(&weights), forward_(weights, options), taps_(taps) {}

CpuWindowModel::CpuWindowModel(const LlamaWeights& weights, const QuantPlan* plan,
                               const ForwardOptions& options, W4a4Taps::Options taps_options)
    : weights_(&weights), forward_(weights, options) {
  if (plan) {
    taps_options.threads = options.threads;
    owned_taps_.emplace(*plan, taps_options);
    taps_ = &*owned_taps_;
  }
}

void CpuWindowModel::run(std::span<const int32_t> tokens, const LogitsChunkFn& fn) {
  forward_.run(tokens, taps_, fn);
}

WindowModelFactory cpu_window_model_factory() {
  return [](const LlamaWeights& weights, const QuantPlan* plan,
            const ForwardOptions& options) -> std::unique_ptr<WindowModel> {
    W4a4Taps::Options taps;
    taps.cache_weights = plan && weight_cache_fits(weights.config());
    return std::make_unique<CpuWindowModel>(weights, plan, options, taps);
  };
}

}  // namespace mxlens
