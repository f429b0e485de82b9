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

SmoothFold smooth_fold(Site site, const LlamaConfig& cfg) {
  switch (site) {
    case Site::Qkv:
    case Site::GateUp:
      return SmoothFold::norm;
    case Site::Down:
      return SmoothFold::previous_rows;
    case Site::O:
      // A v bias would need the same division, and taps cannot change biases.
      return cfg.num_kv_heads == cfg.num_heads && !cfg.qkv_bias ? SmoothFold::previous_rows
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

std::vector<float> smoothing_factors(std::span<const float> act, const MatrixRef& w,
                                     const SmoothingOptions& opt) {
  if (int64_t(act.size()) != w.cols)
    throw Error("smoothing", "statistics have " + std::to_string(act.size()) +
                                 " channels, key weight has " + std::to_string(w.cols));
  if (!(opt.alpha >= 0.0f && opt.alpha <= 1.0f))
    throw Error("--smooth-alpha", "must be in [0, 1], got " + std::to_string(opt.alpha));
  const Eigen::Map<const RowMatrixXf> W(w.data, w.rows, w.cols);
  const Eigen::RowVectorXf wmax = W.cwiseAbs().colwise().maxCoeff();
  std::vector<float> s(act.size());
  for (size_t c = 0; c < act.size(); ++c) {
    const double a = std::max(act[c], opt.min_value);
    const double wc = std::max(wmax[Eigen::Index(c)], opt.min_value);
    const double v = std::pow(a, double(opt.alpha)) / std::pow(wc, 1.0 - double(opt.alpha));
    s[c] = std::max(std::max(float(v), opt.min_value), opt.floor_value);
  }
  return s;
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
                                const std::array<SmoothFold, 4>& folds, Eigen::Ref<RowMatrixXf> w) {
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
  if (rows && !rows->empty()) {
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
