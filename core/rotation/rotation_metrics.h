#pragma once
// Two numbers that say how well a channel transform prepares a tensor for MXFP4
// (algorithm.md §10 item 10): the relative fake-quantization error and the mean per-block
// crest factor. Both are taken on the tensor as given (e.g. x·T); for an orthogonal T the error
// equals the error in the original basis, ‖Q(xT)Tᵀ − x‖ = ‖Q(xT) − xT‖.
#include <Eigen/Core>

#include "core/model/site_taps.h"
#include "core/mx/quant_options.h"

namespace mxlens {

// ‖Q(x) − x‖ / ‖x‖ with Q the MXFP4 fake quantization along each row (x.cols() % 32 == 0,
// else Error). 0 for an all-zero x.
double mxfp4_relative_error(Eigen::Ref<const RowMatrixXf> x, const QuantOptions& options = {});

// Mean over all 32-element blocks of all rows of log2(amax / rms); all-zero blocks are left out.
// 0 = flat block, 2.5 = one non-zero element in 32.
double mean_block_crest_log2(Eigen::Ref<const RowMatrixXf> x);

}  // namespace mxlens
