#pragma once
// The pieces both export formats share: the quantized weight of one linear as MXFP4 blocks
// (exactly the weight the session's forward uses), the Hugging Face module names, and the
// checks of what a session's plan can express.
#include <cstdint>
#include <string>
#include <vector>

#include "core/model/llama_model.h"
#include "core/mx/mxfp4.h"
#include "core/quant/quant_plan.h"

namespace mxlens {

// "model.layers.3.self_attn.q_proj", "model.layers.3.mlp.down_proj".
std::string hf_linear_module(int layer, Linear which);

struct ExportedWeight {
  int64_t out = 0, in = 0;
  std::vector<Mxfp4Block> blocks;  // [out, in/32] row-major, ggml block layout (scale + split)
  TensorScale scale;               // scale_rule of the blocks (E8M0 rules only)
};

// The plan's quantized weight of (layer, which) (QuantPlan::quantized_weight: GPTQ's stored
// weight, or smoothing-folded, transformed and fake-quantized), encoded as MXFP4 blocks with
// the scheme's weight rule. Verifies that the blocks dequantize to exactly those floats (bit
// for bit) and throws Error("export", "<module>: ...") when they do not, or when the scheme's
// weights are not MXFP4 with an E8M0 rule (ocp_floor, fpquant, rceil).
ExportedWeight export_weight_blocks(const QuantPlan& plan, const LayerWeights& layer_weights,
                                    Linear which, int threads = 1);

// Error("<format>", ...) unless the scheme is W4A4 or W4A16 MXFP4 with an E8M0 weight rule;
// names the scheme and says what the format supports.
void check_exportable_scheme(const QuantScheme& scheme, std::string_view format);

}  // namespace mxlens
