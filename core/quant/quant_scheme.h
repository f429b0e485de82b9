#pragma once
// What a W4A4 run quantizes and how (algorithm.md §2, §11): one TensorQuant for the weights
// of the seven linears of every decoder layer and one for the activations at their inputs.
// Embeddings, lm_head, norms and the attention math are never quantized.
//
// Formats:
//   mxfp4  32-element blocks along the input dimension, E2M1 elements, scale rule and element
//          rounding selectable (default S1 ocp_floor + RNE). Weights: per output row;
//          activations: per token. dqv2_log8's lo/hi range is taken over the whole tensor
//          passed (the weight matrix; the activation tensor of one forward call), as in §1.3.
//   nvfp4  16-element blocks, E4M3 block scales, one FP32 scale per tensor (§1.7); the
//          "tensor" is one token for activations and the whole matrix for weights.
//   int4   asymmetric uniform 4-bit (original DuQuant comparison, §4.7): per token for
//          activations, per output channel for weights; range = clip_ratio · [min, max] of
//          the row, scale = max(range / 15, 1e-5), zero = round(-min/scale), codes clamped to
//          [0, 15], round half to even.
// A row whose length is not a multiple of the block (stories260K's 172-wide down site) is
// quantized with a short last block: the same as zero-padding it to a whole block.
#include <string>
#include <string_view>

#include <Eigen/Core>

#include "core/model/site_taps.h"
#include "core/mx/quant_options.h"

namespace mxlens {

enum class QuantFormat { none, mxfp4, nvfp4, int4 };

// Which operands of the linears are quantized.
enum class QuantMode {
  none,   // FP (transforms may still be applied: the equivalence check)
  w4a4,   // weights and activations
  w4a16,  // weights only
  w16a4,  // activations only
};

// How one operand (weights or activations) is fake-quantized.
struct TensorQuant {
  QuantFormat format = QuantFormat::none;
  QuantOptions options;     // mxfp4: scale rule and rounding; nvfp4: rounding
  float clip_ratio = 1.0f;  // int4 only, in (0, 1]

  bool enabled() const { return format != QuantFormat::none; }
};

// Default INT4 clip ratios of the original DuQuant setting (algorithm.md §4.7).
inline constexpr float kInt4ActivationClip = 0.9f;
inline constexpr float kInt4WeightClip = 0.8f;

struct QuantScheme {
  TensorQuant weights;
  TensorQuant activations;

  // Both operands in `format` as `mode` says; int4 gets the clip ratios above.
  static QuantScheme make(QuantMode mode, QuantFormat format = QuantFormat::mxfp4,
                          QuantOptions options = {});
  QuantMode mode() const;
  // e.g. "w4a4 mxfp4 ocp_floor rne", "none".
  std::string describe() const;
};

std::string_view to_string(QuantFormat format);
std::string_view to_string(QuantMode mode);
// Parse the names above; throw Error(source, ...) listing the accepted names.
QuantFormat parse_quant_format(std::string_view name, std::string_view source = "--format");
QuantMode parse_quant_mode(std::string_view name, std::string_view source = "--mode");
// Checks the parameters (clip ratio range, nvfp4 with a non-default scale rule); Error otherwise.
void validate(const TensorQuant& quant, std::string_view source);

// Which operand a tensor is: decides what the "tensor" of tensor-level state is.
enum class TensorRole { weights, activations };

// Fake-quantizes m in place (quantize, then dequantize into the same floats); rows are output
// channels (weights) or tokens (activations), blocks run along the columns. Tensor-level
// state: dqv2_log8's lo/hi over all of m (both roles, §1.3/§2); nvfp4's global scale over all
// of m for weights and per row (token) for activations. `threads` > 1 splits the rows where
// rows are independent.
void fake_quantize_rows(Eigen::Ref<RowMatrixXf> m, const TensorQuant& quant, TensorRole role,
                        int threads = 1);

}  // namespace mxlens
