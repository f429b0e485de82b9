#include "core/export/export_weights.h"

#include <cstring>
#include <string>

#include "core/mx/e2m1.h"
#include "core/mx/packing.h"
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

namespace {

// Codes of one block for a given scale byte such that e2m1_decode(code) · scale equals each
// value bit for bit; false when some value is not on that grid.
bool encode_block_exactly(const float* v, uint8_t byte, const TensorScale& ts, Mxfp4Block& out) {
  const float scale = mxfp4_scale_of(byte, ts);
  uint8_t codes[Mxfp4Block::kSize];
  for (int i = 0; i < Mxfp4Block::kSize; ++i) {
    bool found = false;
    for (uint8_t c = 0; c < 16 && !found; ++c) {
      const float d = e2m1_decode(c) * scale;
      if (std::memcmp(&d, &v[i], sizeof(float)) == 0) {
        codes[i] = c;
        found = true;
      }
    }
    if (!found) return false;
  }
  out.e = byte;
  pack_codes_split(codes, out.qs);
  return true;
}

}  // namespace

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
  const QuantOptions& options = plan.scheme().weights.options;
  if (plan.stored_weight(lw.layer, which) == nullptr && !plan.prequantized_weights()) {
    // RTN: the blocks of the transformed weight are what the fake quantization dequantized.
    RowMatrixXf t;
    plan.transform_weight(lw.layer, which, w.span(), int(w.rows), int(w.cols), t, threads);
    out.scale =
        quantize_mxfp4(std::span<const float>(t.data(), size_t(t.size())), out.blocks, options);
  } else {
    // Stored values (GPTQ): their scale byte is not recorded. Re-quantizing finds it for E8M0
    // rules without the 4/3 factor; otherwise search the nearby bytes for the exact grid.
    out.scale = quantize_mxfp4(values, out.blocks, options);
    std::vector<float> back(Mxfp4Block::kSize);
    for (size_t b = 0; b < out.blocks.size(); ++b) {
      const float* v = values.data() + b * Mxfp4Block::kSize;
      dequantize_mxfp4(std::span<const Mxfp4Block>(&out.blocks[b], 1), out.scale, back);
      if (std::memcmp(back.data(), v, back.size() * sizeof(float)) == 0) continue;
      bool ok = false;
      for (int delta : {-1, 1, -2, 2, -3, 3, -4, 4}) {
        const int byte = int(out.blocks[b].e) + delta;
        if (byte < 0 || byte > 254) continue;
        if ((ok = encode_block_exactly(v, uint8_t(byte), out.scale, out.blocks[b]))) break;
      }
      if (!ok) break;  // reported below
    }
  }
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
