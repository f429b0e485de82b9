// GCC 12 reports a false -Wmaybe-uninitialized inside its AVX-512 intrinsics when Eigen is inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "core/quant/gptq_model.h"

#include <array>
#include <string>

#include "core/model/forward.h"
#include "core/quant/w4a4_taps.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

// Thrown by the capture tap once the site of interest has been seen: the rest of the forward
// is not needed.
struct SiteReached {};

// The plan's W4A4 taps, plus: at (layer, site) accumulate the Hessian and stop the forward.
class HessianCaptureTaps : public W4a4Taps {
 public:
  HessianCaptureTaps(const QuantPlan& plan, int threads, int layer, Site site, bool quantized,
                     HessianAccumulator& acc)
      : W4a4Taps(plan, {threads, false}),
        plan_(&plan),
        threads_(threads),
        layer_(layer),
        site_(site),
        quantized_(quantized),
        acc_(&acc) {}

  void on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) override {
    if (layer != layer_ || site != site_) {
      W4a4Taps::on_activations(layer, site, x);
      return;
    }
    transform(layer, site, x, threads_);
    if (quantized_)
      fake_quantize_rows(x, plan_->scheme().activations, TensorRole::activations, threads_);
    acc_->add_window(x);
    throw SiteReached{};
  }

 private:
  const QuantPlan* plan_;
  int threads_;
  int layer_;
  Site site_;
  bool quantized_;
  HessianAccumulator* acc_;
};

struct Group {
  Site site;
  std::array<Linear, 3> linears;
  int count;
};
// §6 order: {k,v,q}, {o}, {up,gate}, {down}.
constexpr std::array<Group, 4> kGroups = {
    {{Site::Qkv, {Linear::K, Linear::V, Linear::Q}, 3},
     {Site::O, {Linear::O, Linear::O, Linear::O}, 1},
     {Site::GateUp, {Linear::Up, Linear::Gate, Linear::Up}, 2},
     {Site::Down, {Linear::Down, Linear::Down, Linear::Down}, 1}}};

}  // namespace

void gptq_quantize_model(const LlamaWeights& weights, QuantPlan& plan,
                         std::span<const std::span<const int32_t>> windows,
                         const GptqModelOptions& opt, const Progress& progress) {
  if (windows.empty()) throw Error("GPTQ calibration", "no calibration windows");
  if (plan.scheme().weights.format != QuantFormat::mxfp4)
    throw Error("GPTQ", "the plan's weights must be mxfp4, got " +
                            std::string(to_string(plan.scheme().weights.format)));
  const LlamaConfig& cfg = weights.config();
  ForwardOptions fo;
  fo.threads = opt.threads;
  LlamaForward fwd(weights, fo);
  LayerWeights lw;
  RowMatrixXf wt;
  const double total = double(cfg.num_layers) * double(kGroups.size());
  for (int layer = 0; layer < cfg.num_layers; ++layer) {
    for (size_t g = 0; g < kGroups.size(); ++g) {
      const Group& group = kGroups[g];
      progress.report(
          (double(layer) * double(kGroups.size()) + double(g)) / total,
          "GPTQ layer " + std::to_string(layer) + " " + std::string(site_name(group.site)));
      HessianAccumulator acc(plan.site_channels(group.site));
      HessianCaptureTaps taps(plan, opt.threads, layer, group.site,
                              opt.hessian_from_quantized_inputs, acc);
      for (std::span<const int32_t> w : windows) {
        progress.check_cancel();
        try {
          fwd.hidden(w, &taps);
        } catch (const SiteReached&) {
        }
      }
      if (acc.windows() != int64_t(windows.size()))
        throw Error("GPTQ calibration", "site was not reached in every window");
      weights.load_layer(layer, lw, opt.threads);
      for (int i = 0; i < group.count; ++i) {
        const Linear which = group.linears[size_t(i)];
        const MatrixRef& m = lw.linear(which);
        plan.transform_weight(layer, which, m.span(), int(m.rows), int(m.cols), wt, opt.threads);
        GptqResult r = gptq_quantize(wt, acc.hessian(), plan.scheme().weights, opt.gptq);
        plan.set_weight(layer, which, std::move(r.q));
      }
    }
  }
  progress.report(1.0, "GPTQ done");
}

}  // namespace mxlens
