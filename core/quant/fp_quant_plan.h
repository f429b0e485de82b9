#pragma once
// The plan that runs an fp_quant checkpoint (formats.md §4.1) as its runtime would: the
// linears' weights as stored (already rotated and quantized; LlamaWeights decodes them), and
// on the activation side, per site, the stored forward_hadamard_matrix applied to every
// g-block followed by MXFP4 quantization of the activations.
//
// Activation rule: what mxlens recorded in quantization_config.mxlens (the session's rule, so
// an export evaluates to the session's numbers); without that record the FP-Quant runtime's
// abs_max, which is mxlens's fpquant rule (S2) with RNE.
#include "core/model/checkpoint.h"
#include "core/quant/quant_plan.h"

namespace mxlens {

// `quantize_activations` false: weights as stored, activations rotated but not quantized
// (the W4A16 view of the same file). Throws Error(checkpoint dir, ...) when the checkpoint is
// not fp_quant, when q/k/v (or gate/up) carry different matrices (mxlens runs one transform
// per input site), or when a matrix is not orthogonal to BF16 precision (1e-2).
QuantPlan fp_quant_plan(const Checkpoint& checkpoint, bool quantize_activations = true);

// One line for reports: "fp_quant: weights as stored (MXFP4), activations: block rotation
// g=32 per linear, mxfp4 ocp_floor rne (as the session measured)".
std::string describe_fp_quant_plan(const Checkpoint& checkpoint, const QuantPlan& plan);

}  // namespace mxlens
