#pragma once
// GPTQ over a whole model, DuQuant++* data flow (algorithm.md §6): layer by layer, the
// linears in groups {k,v,q}, {o}, {up,gate}, {down}. For each group the calibration windows run
// through the model with W4a4Taps of the plan — earlier layers and earlier groups of this layer
// already hold their GPTQ weights — and the Hessian H = (2/N)·Σ x̂ᵀx̂ of the group's site is
// accumulated from the smoothed, rotated and (by default) fake-quantized input x̂. Each weight
// of the group is then transformed (smoothing folded, rotated, not quantized) and quantized by
// gptq_quantize; the result is stored in the plan (QuantPlan::set_weight).
//
// Propagation: instead of keeping every window's layer input (128 × 2048 × hidden floats for
// the paper's setting), each group re-runs the forward from the embedding and stops at its
// site, so the inputs pass through the already quantized layers exactly as in §6, at a cost
// of about L/2 forwards per window per group. Meant for the small models this CPU build runs.
#include <cstdint>
#include <span>

#include "core/model/llama_model.h"
#include "core/quant/gptq.h"
#include "core/quant/quant_plan.h"
#include "core/util/progress.h"

namespace mxlens {

struct GptqModelOptions {
  GptqOptions gptq;
  // Hessian from the fake-quantized input (DuQuant++*, default) or from the transformed,
  // unquantized input (MR-GPTQ / FP-Quant).
  bool hessian_from_quantized_inputs = true;
  int threads = 1;
};

// The plan's weight quantization must be mxfp4. Reports progress per group, checks cancel
// between windows (throws Cancelled). Throws Error for an empty window list.
void gptq_quantize_model(const LlamaWeights& weights, QuantPlan& plan,
                         std::span<const std::span<const int32_t>> windows,
                         const GptqModelOptions& options, const Progress& progress = {});

}  // namespace mxlens
