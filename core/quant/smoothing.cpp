// GCC 12 reports a false -Wmaybe-uninitialized inside its AVX-512 intrinsics when Eigen is inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "core/quant/smoothing.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/util/error.h"

namespace mxlens {

namespace {

int site_channels(const LlamaConfig& cfg, Site site) {
  switch (site) {
    case Site::Qkv:
    case Site::GateUp:
      return cfg.hidden_size;
    case Site::O:
      return cfg.num_heads * cfg.head_dim;
    case Site::Down:
      return cfg.intermediate_size;
  }
  return 0;
}

}  // namespace

SmoothFold smooth_fold(Site site, const LlamaConfig& cfg, bool tie_gqa) {
  switch (site) {
    case Site::Qkv:
    case Site::GateUp:
      return SmoothFold::norm;
    case Site::Down:
      return SmoothFold::previous_rows;
    case Site::O:
      // A v bias would need the same division, and taps cannot change biases.
      return (cfg.num_kv_heads == cfg.num_heads || tie_gqa) && !cfg.qkv_bias
                 ? SmoothFold::previous_rows
                 : SmoothFold::online;
  }
  return SmoothFold::online;
}

ActAbsMaxTaps::ActAbsMaxTaps(const LlamaConfig& cfg) : absmax_(size_t(cfg.num_layers)) {
  for (auto& layer : absmax_)
    for (Site s : kAllSites) layer[size_t(s)].assign(size_t(site_channels(cfg, s)), 0.0f);
}

void ActAbsMaxTaps::on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) {
  if (layer < 0 || layer >= int(absmax_.size()))
    throw Error("smoothing statistics", "layer " + std::to_string(layer) + " out of range");
  std::vector<float>& m = absmax_[size_t(layer)][size_t(site)];
  if (int64_t(m.size()) != x.cols())
    throw Error("smoothing statistics", "site " + std::string(site_name(site)) + " has " +
                                            std::to_string(x.cols()) + " channels, expected " +
                                            std::to_string(m.size()));
  Eigen::Map<Eigen::RowVectorXf> mv(m.data(), Eigen::Index(m.size()));
  mv = mv.cwiseMax(x.cwiseAbs().colwise().maxCoeff());
  if (layer == 0 && site == Site::Qkv) tokens_ += x.rows();
}

const std::vector<float>& ActAbsMaxTaps::absmax(int layer, Site site) const {
  if (layer < 0 || layer >= int(absmax_.size()))
    throw Error("smoothing statistics", "layer " + std::to_string(layer) + " out of range");
  return absmax_[size_t(layer)][size_t(site)];
}

namespace {

// s[c] from act[c] and w[c] (algorithm.md §3).
std::vector<float> factors_from_maxima(std::span<const float> act, const Eigen::RowVectorXf& wmax,
                                       const SmoothingOptions& opt) {
  if (!(opt.alpha >= 0.0f && opt.alpha <= 1.0f))
    throw Error("--smooth-alpha", "must be in [0, 1], got " + std::to_string(opt.alpha));
  std::vector<float> s(act.size());
  for (size_t c = 0; c < act.size(); ++c) {
    const double a = std::max(act[c], opt.min_value);
    const double wc = std::max(wmax[Eigen::Index(c)], opt.min_value);
    const double v = std::pow(a, double(opt.alpha)) / std::pow(wc, 1.0 - double(opt.alpha));
    s[c] = std::max(std::max(float(v), opt.min_value), opt.floor_value);
  }
  return s;
}

Eigen::RowVectorXf column_absmax(std::span<const float> act, const MatrixRef& w) {
  if (int64_t(act.size()) != w.cols)
    throw Error("smoothing", "statistics have " + std::to_string(act.size()) +
                                 " channels, key weight has " + std::to_string(w.cols));
  const Eigen::Map<const RowMatrixXf> W(w.data, w.rows, w.cols);
  return W.cwiseAbs().colwise().maxCoeff();
}

void check_groups(size_t channels, int head_dim, int group) {
  if (head_dim <= 0 || group <= 0 || channels % size_t(head_dim * group) != 0)
    throw Error("smoothing", std::to_string(channels) + " channels are not whole groups of " +
                                 std::to_string(group) + " heads of " + std::to_string(head_dim));
}

}  // namespace

std::vector<float> smoothing_factors(std::span<const float> act, const MatrixRef& w,
                                     const SmoothingOptions& opt) {
  return factors_from_maxima(act, column_absmax(act, w), opt);
}

std::vector<float> tied_smoothing_factors(std::span<const float> act, const MatrixRef& w,
                                          int head_dim, int group, const SmoothingOptions& opt) {
  Eigen::RowVectorXf wmax = column_absmax(act, w);
  check_groups(act.size(), head_dim, group);
  std::vector<float> tied_act(act.begin(), act.end());
  const size_t D = size_t(head_dim), span = D * size_t(group);
  for (size_t g0 = 0; g0 < act.size(); g0 += span)
    for (size_t d = 0; d < D; ++d) {
      float a = 0, m = 0;
      for (size_t h = 0; h < size_t(group); ++h) {
        a = std::max(a, act[g0 + h * D + d]);
        m = std::max(m, wmax[Eigen::Index(g0 + h * D + d)]);
      }
      for (size_t h = 0; h < size_t(group); ++h) {
        tied_act[g0 + h * D + d] = a;
        wmax[Eigen::Index(g0 + h * D + d)] = m;
      }
    }
  return factors_from_maxima(tied_act, wmax, opt);
}

bool smoothing_tied_across_groups(std::span<const float> s, int head_dim, int group) {
  if (head_dim <= 0 || group <= 0 || s.size() % size_t(head_dim * group) != 0) return false;
  const size_t D = size_t(head_dim), span = D * size_t(group);
  for (size_t g0 = 0; g0 < s.size(); g0 += span)
    for (size_t h = 1; h < size_t(group); ++h)
      for (size_t d = 0; d < D; ++d)
        if (s[g0 + h * D + d] != s[g0 + d]) return false;
  return true;
}

Linear smoothing_key_linear(Site site) {
  switch (site) {
    case Site::Qkv:
      return Linear::Q;
    case Site::O:
      return Linear::O;
    case Site::GateUp:
      return Linear::Up;
    case Site::Down:
      return Linear::Down;
  }
  return Linear::Q;
}

std::array<std::vector<float>, 4> layer_smoothing_factors(const LayerWeights& w,
                                                          const ActAbsMaxTaps& stats,
                                                          const SmoothingOptions& opt) {
  std::array<std::vector<float>, 4> s;
  for (Site site : kAllSites)
    s[size_t(site)] =
        smoothing_factors(stats.absmax(w.layer, site), w.linear(smoothing_key_linear(site)), opt);
  return s;
}

void fold_smoothing_into_weight(Linear which, const std::array<std::vector<float>, 4>& s,
                                const std::array<SmoothFold, 4>& folds, Eigen::Ref<RowMatrixXf> w,
                                int head_dim) {
  auto vec = [](const std::vector<float>& v) {
    return Eigen::Map<const Eigen::RowVectorXf>(v.data(), Eigen::Index(v.size()));
  };
  auto check = [&](const std::vector<float>& v, Eigen::Index n, const char* what) {
    if (Eigen::Index(v.size()) != n)
      throw Error("smoothing", std::string(linear_name(which)) + ": " + what + " has " +
                                   std::to_string(v.size()) + " factors for " + std::to_string(n) +
                                   " channels");
  };
  const std::vector<float>& own = s[size_t(site_of(which))];
  if (!own.empty()) {
    check(own, w.cols(), "input side");
    w.array().rowwise() *= vec(own).array();
  }
  const std::vector<float>* rows = nullptr;
  if (which == Linear::Up && folds[size_t(Site::Down)] == SmoothFold::previous_rows)
    rows = &s[size_t(Site::Down)];
  if (which == Linear::V && folds[size_t(Site::O)] == SmoothFold::previous_rows)
    rows = &s[size_t(Site::O)];
  if (rows && !rows->empty() && which == Linear::V && Eigen::Index(rows->size()) != w.rows()) {
    // GQA with tied s: v row g·D + d ← s of the group's first head.
    const Eigen::Index D = head_dim;
    if (D <= 0 || w.rows() % D != 0 || Eigen::Index(rows->size()) % w.rows() != 0)
      check(*rows, w.rows(), "output side");
    const Eigen::Index group = Eigen::Index(rows->size()) / w.rows();
    for (Eigen::Index r = 0; r < w.rows(); ++r)
      w.row(r) /= (*rows)[size_t((r / D) * group * D + r % D)];
  } else if (rows && !rows->empty()) {
    check(*rows, w.rows(), "output side");
    w.array().colwise() /= vec(*rows).transpose().array();
  }
}

std::vector<float> fold_smoothing_into_norm(std::span<const float> gamma,
                                            std::span<const float> s) {
  if (gamma.size() != s.size())
    throw Error("smoothing", "norm has " + std::to_string(gamma.size()) + " channels, factors " +
                                 std::to_string(s.size()));
  std::vector<float> out(gamma.size());
  for (size_t c = 0; c < gamma.size(); ++c) out[c] = gamma[c] / s[c];
  return out;
}

}  // namespace mxlens
