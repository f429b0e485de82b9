#pragma once
// GPTQ for MXFP4 weights as the DuQuant++* variant runs it (algorithm.md §6): block of 128
// columns, dampening 1 % of the mean Hessian diagonal, groups of 32 input channels (= the MX
// blocks, one scale per row and group), no act-order; dead columns (H[j,j] = 0) are zeroed.
// H⁻¹ and its upper Cholesky factor are computed in double.
#include <cstdint>

#include <Eigen/Core>

#include "core/model/site_taps.h"
#include "core/quant/quant_scheme.h"

namespace mxlens {

// H = (2/N)·Σ_windows X̂ᵀX̂ in the running form of §6: per window (a [tokens, in] input of the
// linear, already smoothed, rotated and fake-quantized), H ← H·n/(n+1) + (2/(n+1))·X̂ᵀX̂.
// Accumulated in double.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int in_features);

  void add_window(const Eigen::Ref<const RowMatrixXf>& x);
  const Eigen::MatrixXd& hessian() const { return h_; }
  int64_t windows() const { return n_; }

 private:
  Eigen::MatrixXd h_;
  int64_t n_ = 0;
};

// When a group's block scales are computed (algorithm.md §6 "Group scales").
enum class GptqScaleTiming {
  group_start,      // default: from W[:, j:j+32] when column j starts a group — error feedback of
                    // earlier 128-blocks included, that of the current 128-block not
  in_block_update,  // from the current block's updated copy W1 (all feedback so far)
  static_scales,    // from the weight before GPTQ (MR-GPTQ)
};

struct GptqOptions {
  int block_size = 128;  // columns per lazy-update block
  double damp = 0.01;    // fraction of mean(diag H) added to the diagonal
  GptqScaleTiming scale_timing = GptqScaleTiming::group_start;
};

struct GptqResult {
  RowMatrixXf q;  // [out, in] dequantized MXFP4 weight
  int dead_columns = 0;
  double loss = 0;  // Σ (w − q)² / U[j,j]² (GPTQ's own bookkeeping)
};

// Quantizes W [out, in] (in % 32 == 0) against H [in, in]. `quant` must be MXFP4 (any scale
// rule / rounding); Error otherwise, and for a Hessian that is not positive definite after
// dampening.
GptqResult gptq_quantize(const Eigen::Ref<const RowMatrixXf>& w, const Eigen::MatrixXd& h,
                         const TensorQuant& quant, const GptqOptions& options = {});

}  // namespace mxlens
