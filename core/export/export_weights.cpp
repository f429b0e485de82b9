#include "core/export/export_weights.h"

#include <cstring>
#include <string>

#include "core/util/error.h"

namespace mxlens {

std::string hf_linear_module(int layer, Linear which) {
  std::string name = "model.layers." + std::to_string(layer) + ".";
  name += (site_of(which) == Site::Qkv || site_of(which) == Site::O) ? "self_attn." : "mlp.";
  name += linear_name(which);
  return name;
}

void check_exportable_scheme(const QuantScheme& scheme, std::string_view format) {
  const std::string fmt(format);
  if (scheme.weights.format != QuantFormat::mxfp4)
    throw Error(fmt, "the session's weights are " + scheme.describe() +
                         "; only MXFP4 weights can be exported");
  if (scheme.weights.options.scale_rule == ScaleRule::dqv2_log8)
    throw Error(fmt,
                "scale rule dqv2_log8 is an 8-bit logarithmic code, not an E8M0 exponent; "
                "no MXFP4 format can store it (recalibrate with --scale-rule ocp_floor, "
                "fpquant or rceil)");
  if (scheme.activations.enabled() && scheme.activations.format != QuantFormat::mxfp4)
    throw Error(fmt, "the session's activations are " + scheme.describe() +
                         "; only MXFP4 activations (or none) can be exported");
}

ExportedWeight export_weight_blocks(const QuantPlan& plan, const LayerWeights& lw, Linear which,
                                    int threads) {
  check_exportable_scheme(plan.scheme(), "export");
  const MatrixRef& w = lw.linear(which);
  const std::string module = hf_linear_module(lw.layer, which);
  if (w.cols % Mxfp4Block::kSize != 0)
    throw Error("export", module + ": " + std::to_string(w.cols) +
                              " input channels are not a multiple of the 32-element MXFP4 block");
  RowMatrixXf q;
  plan.quantized_weight(lw.layer, which, w.span(), int(w.rows), int(w.cols), q, threads);
  ExportedWeight out;
  out.out = w.rows;
  out.in = w.cols;
  out.blocks.resize(size_t(w.rows * w.cols / Mxfp4Block::kSize));
  const std::span<const float> values(q.data(), size_t(q.size()));
  out.scale = quantize_mxfp4(values, out.blocks, plan.scheme().weights.options);
  // The blocks must give back exactly the floats the session's forward multiplies with.
  std::vector<float> back(values.size());
  dequantize_mxfp4(out.blocks, out.scale, back);
  if (std::memcmp(back.data(), values.data(), back.size() * sizeof(float)) != 0) {
    size_t i = 0;
    while (i < back.size() && std::memcmp(&back[i], &values[i], sizeof(float)) == 0) ++i;
    throw Error("export", module +
                              ": the quantized weight is not exactly representable as "
                              "MXFP4 blocks (element " +
                              std::to_string(i) + ": " + std::to_string(values[i]) + " → " +
                              std::to_string(back[i]) + ")");
  }
  return out;
}

}  // namespace mxlens
