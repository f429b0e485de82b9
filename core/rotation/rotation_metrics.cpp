// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "core/rotation/rotation_metrics.h"

#include <cmath>
#include <string>

#include "core/mx/mxfp4.h"
#include "core/util/error.h"

namespace mxlens {

double mxfp4_relative_error(Eigen::Ref<const RowMatrixXf> x, const QuantOptions& options) {
  if (x.cols() % Mxfp4Block::kSize != 0)
    throw Error("MXFP4 error", std::to_string(x.cols()) + " channels are not a multiple of 32");
  RowMatrixXf q = x;
  fake_quantize_mxfp4(std::span<float>(q.data(), size_t(q.size())), options);
  double err = 0, ref = 0;
  for (Eigen::Index r = 0; r < x.rows(); ++r)
    for (Eigen::Index c = 0; c < x.cols(); ++c) {
      const double v = x(r, c), d = double(q(r, c)) - v;
      err += d * d;
      ref += v * v;
    }
  return ref > 0 ? std::sqrt(err / ref) : 0.0;
}

double mean_block_crest_log2(Eigen::Ref<const RowMatrixXf> x) {
  constexpr int kBlock = Mxfp4Block::kSize;
  if (x.cols() % kBlock != 0)
    throw Error("crest factor", std::to_string(x.cols()) + " channels are not a multiple of 32");
  double sum = 0;
  int64_t count = 0;
  for (Eigen::Index r = 0; r < x.rows(); ++r)
    for (Eigen::Index b = 0; b < x.cols(); b += kBlock) {
      double amax = 0, sq = 0;
      for (int j = 0; j < kBlock; ++j) {
        const double v = x(r, b + j);
        amax = std::max(amax, std::fabs(v));
        sq += v * v;
      }
      if (amax == 0) continue;
      sum += std::log2(amax / std::sqrt(sq / kBlock));
      ++count;
    }
  return count > 0 ? sum / double(count) : 0.0;
}

}  // namespace mxlens
