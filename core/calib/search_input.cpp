#include "core/calib/search_input.h"

#include <cmath>

#include "core/quant/quant_scheme.h"

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

namespace {

// Histogram and error energies of one side from its rows.
void fill_side(const RowMatrixXf& rows, const QuantOptions& mx, int blocks,
               std::vector<uint8_t> bytes, std::vector<uint32_t>& hist, std::vector<double>& signal,
               std::vector<double>& noise) {
  hist.assign(size_t(blocks) * 256, 0);
  for (size_t i = 0; i < bytes.size(); ++i) ++hist[(i % size_t(blocks)) * 256 + bytes[i]];
  RowMatrixXf q = rows;
  TensorQuant tq;
  tq.format = QuantFormat::mxfp4;
  tq.options = mx;
  fake_quantize_rows(q, tq, TensorRole::activations);
  signal.assign(size_t(blocks), 0.0);
  noise.assign(size_t(blocks), 0.0);
  for (Eigen::Index r = 0; r < rows.rows(); ++r)
    for (Eigen::Index c = 0; c < rows.cols(); ++c) {
      const double x = rows(r, c), e = x - double(q(r, c));
      signal[size_t(c / kStatsBlock)] += x * x;
      noise[size_t(c / kStatsBlock)] += e * e;
    }
}

}  // namespace

SiteStats site_stats_from_rows(const RowMatrixXf& before, const RowMatrixXf& after,
                               const QuantOptions& mx) {
  SiteStats s;
  s.channels = int(before.cols());
  s.blocks = (s.channels + kStatsBlock - 1) / kStatsBlock;
  s.tokens = before.rows();
  s.sample_before = before;
  s.sample_after = after;
  s.sample_tokens.resize(size_t(before.rows()));
  for (Eigen::Index r = 0; r < before.rows(); ++r) s.sample_tokens[size_t(r)] = r;
  const size_t C = size_t(s.channels);
  s.absmax_before.assign(C, 0.0f);
  s.absmax_after.assign(C, 0.0f);
  s.mean_before.assign(C, 0.0f);
  s.rms_before.assign(C, 0.0f);
  for (Eigen::Index c = 0; c < before.cols(); ++c) {
    s.absmax_before[size_t(c)] = before.rows() ? before.col(c).cwiseAbs().maxCoeff() : 0.0f;
    s.absmax_after[size_t(c)] = after.rows() ? after.col(c).cwiseAbs().maxCoeff() : 0.0f;
    double sum = 0, sq = 0;
    for (Eigen::Index r = 0; r < before.rows(); ++r) {
      sum += before(r, c);
      sq += double(before(r, c)) * before(r, c);
    }
    const double n = double(std::max<Eigen::Index>(1, before.rows()));
    s.mean_before[size_t(c)] = float(sum / n);
    s.rms_before[size_t(c)] = float(std::sqrt(sq / n));
  }
  fill_side(before, mx, s.blocks, s.sample_e8m0_before(mx), s.e8m0_hist_before, s.signal_before,
            s.noise_before);
  fill_side(after, mx, s.blocks, s.sample_e8m0_after(mx), s.e8m0_hist_after, s.signal_after,
            s.noise_after);
  return s;
}

std::optional<SiteStats> site_stats_at_step(const Session& session, int layer, Site site, int k) {
  const RowMatrixXf z = search_input_blocks(session, layer, site);
  if (z.size() == 0) return std::nullopt;
  const GreedyTrace& trace = session.searches[size_t(layer)][size_t(site)].traces.back();
  const Eigen::MatrixXf r = trace.matrix_at_step(k).cast<float>();
  const SiteStats& st = session.stats[size_t(layer)][size_t(site)];
  const RowMatrixXf y = z * r;
  const RowMatrixXf after =
      Eigen::Map<const RowMatrixXf>(y.data(), st.sample_before.rows(), st.channels);
  return site_stats_from_rows(st.sample_before, after, session.settings.stats.mx);
}

}  // namespace mxlens
