// GCC 12 reports a false -Wmaybe-uninitialized inside its AVX-512 intrinsics when Eigen is inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "core/quant/gptq.h"

#include <string>
#include <vector>

#include <Eigen/Cholesky>

#include "core/mx/e2m1.h"
#include "core/mx/mxfp4.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

constexpr int kGroup = 32;  // = Mxfp4Block::kSize: one scale per row and group

// One scale per row for the r×32 column slice `g` under the run's scale rule (dqv2_log8: its
// lo/hi range over this slice, as the released code does for a GPTQ group).
Eigen::VectorXf group_scales(const Eigen::Ref<const Eigen::MatrixXf>& g, const QuantOptions& opt) {
  const Eigen::Index rows = g.rows();
  Eigen::VectorXf scale(rows);
  const Eigen::VectorXf amax = g.cwiseAbs().rowwise().maxCoeff();
  if (opt.scale_rule == ScaleRule::dqv2_log8) {
    const auto s = detail::dqv2_scales(std::span<const float>(amax.data(), size_t(rows)));
    for (Eigen::Index r = 0; r < rows; ++r) scale[r] = s.scale[size_t(r)];
  } else {
    for (Eigen::Index r = 0; r < rows; ++r)
      scale[r] = mxfp4_block_scale(amax[r], opt.scale_rule).scale;
  }
  return scale;
}

// q = scale · E2M1(w / scale), per row (what fake_quantize_mxfp4 does element by element).
void fake_quantize_column(const Eigen::VectorXf& w, const Eigen::VectorXf& scale, Rounding rounding,
                          Eigen::Ref<Eigen::VectorXf> q) {
  for (Eigen::Index r = 0; r < w.size(); ++r) {
    const float v = w[r] / scale[r];
    q[r] = e2m1_decode(e2m1_encode_ref(v, rounding)) * scale[r];
  }
}

}  // namespace

HessianAccumulator::HessianAccumulator(int in_features)
    : h_(Eigen::MatrixXd::Zero(in_features, in_features)) {
  if (in_features < 1) throw Error("GPTQ Hessian", "needs at least one input channel");
}

void HessianAccumulator::add_window(const Eigen::Ref<const RowMatrixXf>& x) {
  if (x.cols() != h_.cols())
    throw Error("GPTQ Hessian", "window has " + std::to_string(x.cols()) + " channels, expected " +
                                    std::to_string(h_.cols()));
  // X̂ᵀX̂ in FP32 (sgemm), the running average in double.
  const Eigen::MatrixXf xtx = x.transpose() * x;
  const double n = double(n_);
  h_ = h_ * (n / (n + 1.0)) + (2.0 / (n + 1.0)) * xtx.cast<double>();
  ++n_;
}

GptqResult gptq_quantize(const Eigen::Ref<const RowMatrixXf>& w_in, const Eigen::MatrixXd& h_in,
                         const TensorQuant& quant, const GptqOptions& opt) {
  const Eigen::Index rows = w_in.rows(), cols = w_in.cols();
  if (quant.format != QuantFormat::mxfp4)
    throw Error("GPTQ",
                "implemented for mxfp4 weights only, got " + std::string(to_string(quant.format)));
  if (cols % kGroup != 0)
    throw Error("GPTQ", "input dimension " + std::to_string(cols) + " is not a multiple of 32");
  if (h_in.rows() != cols || h_in.cols() != cols)
    throw Error("GPTQ", "Hessian is " + std::to_string(h_in.rows()) + "×" +
                            std::to_string(h_in.cols()) + ", weight has " + std::to_string(cols) +
                            " input channels");
  if (opt.block_size < kGroup || opt.block_size % kGroup != 0)
    throw Error("GPTQ", "block size must be a positive multiple of 32");
  if (!(opt.damp >= 0.0)) throw Error("GPTQ", "dampening must be >= 0");

  GptqResult res;
  Eigen::MatrixXf W = w_in;  // column-major: columns contiguous
  Eigen::MatrixXd H = h_in;
  for (Eigen::Index j = 0; j < cols; ++j)
    if (H(j, j) == 0.0) {
      H(j, j) = 1.0;
      W.col(j).setZero();
      ++res.dead_columns;
    }
  H.diagonal().array() += opt.damp * H.diagonal().mean();
  const Eigen::LLT<Eigen::MatrixXd> chol_h(H);
  if (chol_h.info() != Eigen::Success)
    throw Error("GPTQ", "Hessian is not positive definite after dampening");
  const Eigen::MatrixXd h_inv = chol_h.solve(Eigen::MatrixXd::Identity(cols, cols));
  const Eigen::LLT<Eigen::MatrixXd> chol_inv(h_inv);
  if (chol_inv.info() != Eigen::Success)
    throw Error("GPTQ", "inverse Hessian is not positive definite");
  const Eigen::MatrixXf U = Eigen::MatrixXd(chol_inv.matrixU()).cast<float>();  // H⁻¹ = UᵀU

  Eigen::MatrixXf static_scales;
  if (opt.scale_timing == GptqScaleTiming::static_scales) {
    static_scales.resize(rows, cols / kGroup);
    for (Eigen::Index g = 0; g < cols / kGroup; ++g)
      static_scales.col(g) = group_scales(W.middleCols(g * kGroup, kGroup), quant.options);
  }

  Eigen::MatrixXf Q(rows, cols);
  Eigen::VectorXf scales(rows), wcol(rows);
  for (Eigen::Index b0 = 0; b0 < cols; b0 += opt.block_size) {
    const Eigen::Index b1 = std::min<Eigen::Index>(b0 + opt.block_size, cols), n = b1 - b0;
    Eigen::MatrixXf W1 = W.middleCols(b0, n);
    Eigen::MatrixXf E(rows, n);
    for (Eigen::Index i = 0; i < n; ++i) {
      const Eigen::Index j = b0 + i;
      if (j % kGroup == 0) {
        switch (opt.scale_timing) {
          case GptqScaleTiming::group_start:
            scales = group_scales(W.middleCols(j, kGroup), quant.options);
            break;
          case GptqScaleTiming::in_block_update:
            scales = group_scales(W1.middleCols(i, kGroup), quant.options);
            break;
          case GptqScaleTiming::static_scales:
            scales = static_scales.col(j / kGroup);
            break;
        }
      }
      wcol = W1.col(i);
      fake_quantize_column(wcol, scales, quant.options.rounding, Q.col(j));
      const float d = U(j, j);
      const Eigen::VectorXf err = wcol - Q.col(j);
      res.loss += double(err.squaredNorm()) / (double(d) * double(d));
      const Eigen::VectorXf e = err / d;
      W1.rightCols(n - i).noalias() -= e * U.row(j).segment(j, n - i);
      E.col(i) = e;
    }
    if (b1 < cols) W.rightCols(cols - b1).noalias() -= E * U.block(b0, b1, n, cols - b1);
  }
  res.q = Q;
  return res;
}

}  // namespace mxlens
