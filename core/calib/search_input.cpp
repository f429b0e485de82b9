#include "core/calib/search_input.h"

namespace mxlens {

RowMatrixXf search_input_blocks(const Session& session, int layer, Site site) {
  if (layer < 0 || size_t(layer) >= session.stats.size() ||
      size_t(layer) >= session.searches.size() || size_t(layer) >= session.transforms.size())
    return {};
  const auto& traces = session.searches[size_t(layer)][size_t(site)].traces;
  const SiteStats& st = session.stats[size_t(layer)][size_t(site)];
  if (traces.empty() || st.sample_before.rows() == 0) return {};
  const int n = traces.back().block_size;
  if (n < 1 || st.channels % n != 0) return {};

  // The smoothing of this site only: a plan with every rotation removed divides exactly where
  // the forward divides (qkv/gu: the γ fold's stand-in; o under GQA: online), and leaves inputs
  // whose producer already absorbed s (down: up rows; o without GQA: v rows) as they arrived.
  std::vector<LayerTransforms> smoothing_only(session.transforms.size());
  for (size_t l = 0; l < session.transforms.size(); ++l)
    for (Site s : kAllSites) {
      SiteTransform& t = smoothing_only[l].site(s);
      t.smooth = session.transforms[l].site(s).smooth;
      t.smooth_fold = session.transforms[l].site(s).smooth_fold;
    }
  const QuantPlan plan(session.config, QuantScheme::make(QuantMode::none), smoothing_only);
  RowMatrixXf x = st.sample_before;
  plan.transform_activations(layer, site, x);
  // DuQuant's second search ran on x·R₁·P; its rows are rebuilt the same way.
  const SiteSearch& search = session.searches[size_t(layer)][size_t(site)];
  if (search.traces.size() == 2) {
    ChannelTransform first;
    first.add_block_rotation(search.traces.front().rotation());
    if (!search.permutation.empty()) first.add_permutation(search.permutation);
    if (!first.accepts(int(x.cols()))) return {};
    first.apply_rows(x, 1);
  }
  const Eigen::Index rows = x.rows() * x.cols() / n;
  return Eigen::Map<const RowMatrixXf>(x.data(), rows, n);
}

}  // namespace mxlens
