// SiteDesc of a QuantPlan's site (site_desc_from_plan.h).
#include "site_desc_from_plan.h"

#include <cmath>
#include <string>

#include "core/rotation/hadamard.h"
#include "core/util/error.h"

namespace mxlens::gpu::detail {

SiteStep step_desc(const ChannelTransform::Step& s) {
  SiteStep d;
  switch (s.kind) {
    case ChannelTransform::StepKind::BlockRotation: {
      d.kind = SiteStep::Kind::block_rotation;
      const int b = int(s.rotation.rows());
      d.size = b;
      d.matrix.resize(size_t(b) * size_t(b));
      for (int i = 0; i < b; ++i)
        for (int j = 0; j < b; ++j) d.matrix[size_t(i) * b + j] = s.rotation(i, j);
      break;
    }
    case ChannelTransform::StepKind::Permutation:
      d.kind = SiteStep::Kind::permutation;
      d.size = s.channels;
      d.indices = s.permutation;
      break;
    case ChannelTransform::StepKind::FullHadamard: {
      d.kind = SiteStep::Kind::full_hadamard;
      d.size = s.channels;
      int m = 1, k = 1;
      if (!full_hadamard_factor(s.channels, &m, &k))
        throw Error("cuda", "full Hadamard of " + std::to_string(s.channels) +
                                " channels has no construction");
      d.hadamard_m = m;
      d.hadamard_k = k;
      // As channel_transform.cpp: the forward transform mixes the segments by H_mᵀ.
      if (m > 1) {
        const Eigen::MatrixXd hm = known_hadamard(m);
        d.matrix.resize(size_t(m) * size_t(m));
        for (int a = 0; a < m; ++a)
          for (int b = 0; b < m; ++b) d.matrix[size_t(a) * m + b] = float(hm(b, a));
      }
      d.hadamard_norm = float(1.0 / std::sqrt(double(s.channels)));
      d.signs = s.signs;
      break;
    }
  }
  return d;
}

SiteDesc site_desc(const QuantPlan& plan, int layer, Site site) {
  SiteDesc d;
  d.channels = plan.site_channels(site);
  const SiteTransform& t = plan.site(layer, site);
  // Norm-folded smoothing is not on the activations: the engine's norm weight is γ/s
  // (QuantPlan::folded_norm), exactly as W4a4Taps::norm_override on the CPU. Online smoothing
  // (o under GQA) divides here; a previous-rows fold lives in the weights.
  if (t.has_smoothing() && t.smooth_fold == SmoothFold::online) {
    if (int(t.smooth.size()) != d.channels)
      throw Error("layer " + std::to_string(layer) + " site " + std::string(site_name(site)),
                  "smoothing does not match the site's channels");
    d.scale_mode = SiteScale::divide;
    d.scale = t.smooth;
  }
  if (t.has_rotation()) {
    t.rotation.check_channels(
        d.channels, "layer " + std::to_string(layer) + " site " + std::string(site_name(site)));
    for (const ChannelTransform::Step& s : t.rotation.steps()) d.steps.push_back(step_desc(s));
  }
  const TensorQuant& a = plan.scheme().activations;
  d.quantize = a.format == QuantFormat::mxfp4;
  d.quant = a.options;
  return d;
}

}  // namespace mxlens::gpu::detail
