#include "core/quant/fp_quant_plan.h"

#include <cstring>
#include <string>
#include <vector>

#include "core/util/error.h"

namespace mxlens {

namespace {

std::string module_of(int layer, Linear which) {
  const bool attn = site_of(which) == Site::Qkv || site_of(which) == Site::O;
  return "model.layers." + std::to_string(layer) + (attn ? ".self_attn." : ".mlp.") +
         std::string(linear_name(which));
}

}  // namespace

QuantPlan fp_quant_plan(const Checkpoint& ckpt, bool quantize_activations) {
  const FpQuantConfig* fpq = ckpt.fp_quant();
  const std::string src = ckpt.dir().string();
  if (!fpq)
    throw Error(src,
                "is not an fp_quant checkpoint (config.json has no "
                "quantization_config with quant_method fp_quant)");
  const LlamaConfig& cfg = ckpt.config();
  const int g = fpq->group_size;

  QuantOptions act;
  act.scale_rule =
      fpq->activation_scale_rule.empty()
          ? ScaleRule::fpquant
          : parse_scale_rule(fpq->activation_scale_rule, "config.json quantization_config.mxlens");
  act.rounding =
      fpq->activation_rounding.empty()
          ? Rounding::rne
          : parse_rounding(fpq->activation_rounding, "config.json quantization_config.mxlens");
  QuantScheme scheme = QuantScheme::make(
      quantize_activations && fpq->activations_quantized ? QuantMode::w4a4 : QuantMode::w4a16,
      QuantFormat::mxfp4, act);

  std::vector<LayerTransforms> transforms(size_t(cfg.num_layers));
  for (int l = 0; l < cfg.num_layers; ++l) {
    for (Site site : kAllSites) {
      std::vector<float> first;
      std::string first_module;
      bool any = false;
      for (Linear which : kAllLinears) {
        if (site_of(which) != site) continue;
        const std::string module = module_of(l, which);
        if (!fpq->quantizes(module))
          throw Error(src, module +
                               " is listed in modules_to_not_convert; mxlens runs the seven "
                               "linears of a layer either all quantized or not at all");
        std::vector<float> m(size_t(g) * size_t(g));
        ckpt.read_f32(module + ".forward_hadamard_matrix", m);
        if (!any) {
          first = std::move(m);
          first_module = module;
          any = true;
        } else if (std::memcmp(first.data(), m.data(), m.size() * sizeof(float)) != 0) {
          throw Error(src, module + ".forward_hadamard_matrix differs from " + first_module +
                               "'s; linears that share an input must share its rotation");
        }
      }
      const Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>
          M(first.data(), g, g);
      if (M.isIdentity(0.0f)) continue;  // RTN-style linears: nothing to do online
      try {
        transforms[size_t(l)].site(site).rotation.add_block_rotation(Eigen::MatrixXf(M), 1e-2);
      } catch (const Error& e) {
        throw Error(src, first_module + ".forward_hadamard_matrix: " + e.problem());
      }
    }
  }
  QuantPlan plan(cfg, scheme, std::move(transforms));
  plan.set_prequantized_weights(true);
  return plan;
}

std::string describe_fp_quant_plan(const Checkpoint& ckpt, const QuantPlan& plan) {
  const FpQuantConfig* fpq = ckpt.fp_quant();
  if (!fpq) return "not an fp_quant checkpoint";
  std::string s = "fp_quant: weights as stored (MXFP4), activations: stored " +
                  std::to_string(fpq->group_size) + "x" + std::to_string(fpq->group_size) +
                  " matrix per linear, then ";
  s += plan.scheme().activations.enabled() ? plan.scheme().describe() : "not quantized (w4a16)";
  s += fpq->activation_scale_rule.empty() ? " (the FP-Quant runtime's abs_max)"
                                          : " (the rule the exported session measured)";
  return s;
}

}  // namespace mxlens
