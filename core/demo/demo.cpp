// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "core/demo/demo.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>
#include <random>
#include <span>
#include <string>

#include "core/model/site_taps.h"
#include "core/mx/e8m0.h"
#include "core/mx/mxfp4.h"
#include "core/rotation/channel_transform.h"
#include "core/rotation/greedy_search.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

constexpr int kB = 32;
constexpr long long kMaxElements = 1LL << 26;

// Seeded samplers written out so a seed gives the same data with any standard library.
class DemoRng {
 public:
  explicit DemoRng(uint64_t seed) : engine_(seed) {}
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  double normal() {  // Box-Muller
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  uint64_t below(uint64_t n) { return engine_() % n; }

 private:
  std::mt19937_64 engine_;
};

void validate(const DemoConfig& c) {
  if (c.tokens < 1) throw Error("--tokens", "must be at least 1");
  if (c.channels < kB || c.channels % kB != 0)
    throw Error("--channels", std::to_string(c.channels) + " is not a positive multiple of 32");
  if (static_cast<long long>(c.tokens) * c.channels > kMaxElements)
    throw Error("--tokens", "tokens x channels must stay below 2^26 values");
  if (c.outliers < 0 || c.outliers > c.channels)
    throw Error("--outliers", "must be between 0 and the number of channels");
  if (!(c.outlier_scale > 0.0f) || !std::isfinite(c.outlier_scale))
    throw Error("--scale", "must be a positive finite number");
  if (!(c.token_scale > 0.0f) || !std::isfinite(c.token_scale))
    throw Error("--token-scale", "must be a positive finite number");
  if (c.greedy_steps < 0 || c.greedy_steps > 4096)
    throw Error("--greedy-steps", "must be between 0 and 4096");
  if (c.calib_tokens < 1) throw Error("--calib-tokens", "must be at least 1");
  if (c.out_features < 1 || static_cast<long long>(c.out_features) * c.channels > kMaxElements)
    throw Error("--out-features", "must be at least 1, and out-features x channels below 2^26");
}

// out = in (I ⊗ R) for one row of n channels, R 32x32 row-major.
void rotate_blocks(const float* in, const std::vector<double>& r, float* out, int n) {
  for (int start = 0; start < n; start += kB)
    for (int j = 0; j < kB; ++j) {
      double acc = 0;
      for (int i = 0; i < kB; ++i) acc += double(in[start + i]) * r[i * kB + j];
      out[start + j] = static_cast<float>(acc);
    }
}

// x: the original activations. With `rotation` (orthonormal, 32x32, row-major) every block is
// rotated by R before quantization and back by Rᵀ after, so errors compare channel by channel.
DemoVariant summarize(std::string name, const std::vector<float>& x,
                      const std::vector<double>* rotation, const std::vector<int>& outliers,
                      const DemoConfig& c) {
  const int n_blocks = c.channels / kB;
  std::vector<bool> is_outlier(c.channels, false);
  for (int ch : outliers) is_outlier[ch] = true;
  DemoVariant v;
  v.name = std::move(name);
  v.exponent.assign(static_cast<size_t>(c.tokens) * n_blocks, 0);
  v.exponent_min.assign(n_blocks, kE8M0MaxExponent);
  v.exponent_max.assign(n_blocks, kE8M0MinExponent);
  v.crest_octaves.assign(n_blocks, 0.0);
  std::vector<double> err2(n_blocks, 0.0), sig2(n_blocks, 0.0), err2_ord(n_blocks, 0.0),
      sig2_ord(n_blocks, 0.0);
  std::vector<int> crest_count(n_blocks, 0);
  std::vector<Mxfp4Block> blocks(n_blocks);
  std::vector<float> input(c.channels), xq(c.channels), back(c.channels);
  std::vector<double> rotation_back;  // Rᵀ
  if (rotation) {
    rotation_back.resize(rotation->size());
    for (int i = 0; i < kB; ++i)
      for (int j = 0; j < kB; ++j) rotation_back[i * kB + j] = (*rotation)[j * kB + i];
  }
  for (int t = 0; t < c.tokens; ++t) {
    const float* row = x.data() + static_cast<size_t>(t) * c.channels;
    if (rotation)
      rotate_blocks(row, *rotation, input.data(), c.channels);
    else
      std::copy(row, row + c.channels, input.begin());
    quantize_mxfp4(input, blocks, c.quant);
    xq = input;
    fake_quantize_mxfp4(xq, c.quant);
    if (rotation)
      rotate_blocks(xq.data(), rotation_back, back.data(), c.channels);  // R Rᵀ = I
    else
      back = xq;
    for (int b = 0; b < n_blocks; ++b) {
      const int k = e8m0_exponent(blocks[b].e);
      v.exponent[static_cast<size_t>(t) * n_blocks + b] = k;
      v.exponent_min[b] = std::min(v.exponent_min[b], k);
      v.exponent_max[b] = std::max(v.exponent_max[b], k);
      double amax = 0, ss_in = 0;
      for (int i = b * kB; i < (b + 1) * kB; ++i) {
        amax = std::max(amax, std::fabs(double(input[i])));
        ss_in += double(input[i]) * input[i];
        const double s = double(row[i]) * row[i];
        const double e = (double(row[i]) - back[i]) * (double(row[i]) - back[i]);
        sig2[b] += s;
        err2[b] += e;
        if (!is_outlier[i]) {
          sig2_ord[b] += s;
          err2_ord[b] += e;
        }
      }
      if (ss_in > 0) {
        v.crest_octaves[b] += std::log2(amax / std::sqrt(ss_in / kB));
        ++crest_count[b];
      }
    }
  }
  double err_total = 0, sig_total = 0, crest_total = 0;
  int crest_n = 0;
  v.block_rel_error.resize(n_blocks);
  v.block_sqnr_db.resize(n_blocks);
  v.block_rel_error_ordinary.resize(n_blocks);
  for (int b = 0; b < n_blocks; ++b) {
    v.block_rel_error[b] = sig2[b] > 0 ? std::sqrt(err2[b] / sig2[b]) : 0.0;
    v.block_sqnr_db[b] = err2[b] > 0 ? 10.0 * std::log10(sig2[b] / err2[b]) : INFINITY;
    v.block_rel_error_ordinary[b] = sig2_ord[b] > 0 ? std::sqrt(err2_ord[b] / sig2_ord[b]) : 0.0;
    crest_total += v.crest_octaves[b];
    crest_n += crest_count[b];
    v.crest_octaves[b] = crest_count[b] ? v.crest_octaves[b] / crest_count[b] : 0.0;
    err_total += err2[b];
    sig_total += sig2[b];
  }
  v.rel_error = sig_total > 0 ? std::sqrt(err_total / sig_total) : 0.0;
  v.sqnr_db = err_total > 0 ? 10.0 * std::log10(sig_total / err_total) : INFINITY;
  v.mean_crest_octaves = crest_n ? crest_total / crest_n : 0.0;
  return v;
}

}  // namespace

std::vector<double> hadamard32() {
  std::vector<double> h(kB * kB);
  // Sylvester: H_{2n} = [[H, H], [H, -H]], so H[i][j] = (-1)^popcount(i & j).
  for (int i = 0; i < kB; ++i)
    for (int j = 0; j < kB; ++j)
      h[i * kB + j] =
          ((std::popcount(static_cast<unsigned>(i & j)) & 1) ? -1.0 : 1.0) / std::sqrt(double(kB));
  return h;
}

std::vector<float> demo_activations(const DemoConfig& c, std::vector<int>* outlier_channels,
                                    int* outlier_token) {
  validate(c);
  DemoRng rng(c.seed);
  std::vector<double> channel_scale(c.channels);
  for (double& s : channel_scale) s = std::exp(c.channel_sigma * rng.normal());
  // K distinct outlier channels: the first K of a seeded Fisher-Yates shuffle.
  std::vector<int> order(c.channels);
  std::iota(order.begin(), order.end(), 0);
  for (int i = 0; i < c.outliers; ++i)
    std::swap(order[i], order[i + static_cast<int>(rng.below(c.channels - i))]);
  std::vector<int> planted(order.begin(), order.begin() + c.outliers);
  std::sort(planted.begin(), planted.end());
  for (int ch : planted) channel_scale[ch] *= c.outlier_scale;
  const int token = static_cast<int>(rng.below(c.tokens));
  std::vector<float> x(static_cast<size_t>(c.tokens) * c.channels);
  for (int t = 0; t < c.tokens; ++t) {
    const double token_factor = t == token ? c.token_scale : 1.0;
    for (int ch = 0; ch < c.channels; ++ch)
      x[static_cast<size_t>(t) * c.channels + ch] =
          static_cast<float>(rng.normal() * channel_scale[ch] * token_factor);
  }
  if (outlier_channels) *outlier_channels = planted;
  if (outlier_token) *outlier_token = token;
  return x;
}

DemoReport run_demo(const DemoConfig& config) {
  DemoReport r;
  r.config = config;
  r.n_blocks = config.channels / kB;
  const std::vector<float> x = demo_activations(config, &r.outlier_channels, &r.outlier_token);
  for (int ch : r.outlier_channels)
    if (r.outlier_blocks.empty() || r.outlier_blocks.back() != ch / kB)
      r.outlier_blocks.push_back(ch / kB);
  r.identity = summarize("identity", x, nullptr, r.outlier_channels, config);
  const std::vector<double> h = hadamard32();
  r.hadamard = summarize("hadamard32", x, &h, r.outlier_channels, config);

  // DuQuant++: greedy-32 search (paper selection, range objective) on evenly spaced tokens.
  const Eigen::Map<const RowMatrixXf> xm(x.data(), config.tokens, config.channels);
  const int calib = std::min(config.calib_tokens, config.tokens);
  RowMatrixXf calib_rows(calib, config.channels);
  for (int i = 0; i < calib; ++i)
    calib_rows.row(i) = xm.row(static_cast<Eigen::Index>(int64_t(i) * config.tokens / calib));
  GreedyOptions options;
  options.max_steps = config.greedy_steps;
  options.seed = config.seed;
  const GreedyResult search = greedy_search(calib_rows, options);
  r.greedy.calib_tokens = calib;
  r.greedy.max_steps = search.trace.max_steps();
  r.greedy.best_step = search.trace.best_step;
  r.greedy.objective_start = search.trace.steps.front().objective;
  r.greedy.objective_best = search.trace.steps[size_t(search.trace.best_step)].objective;
  for (int t = 0; t < search.trace.best_step; ++t)
    r.greedy.channels.push_back(search.trace.steps[size_t(t)].channel);
  r.greedy.rotation.resize(kB * kB);
  for (int i = 0; i < kB; ++i)
    for (int j = 0; j < kB; ++j)
      r.greedy.rotation[i * kB + j] = double(search.rotation.matrix(i, j));
  r.duquant = summarize("duquant++32", x, &r.greedy.rotation, r.outlier_channels, config);

  // One linear layer: y = x Wᵀ against the W4A4 output Q(xR) Q(WR)ᵀ.
  DemoRng wrng(config.seed ^ 0x5EEDF00Dull);
  RowMatrixXf w(config.out_features, config.channels);
  const double w_scale = 1.0 / std::sqrt(double(config.channels));
  for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = float(wrng.normal() * w_scale);
  const Eigen::MatrixXd y = xm.cast<double>() * w.cast<double>().transpose();
  auto w4a4_error = [&](const ChannelTransform& t) {
    RowMatrixXf xq = xm, wq = w;
    t.apply_rows(xq);
    t.apply_rows(wq);
    fake_quantize_mxfp4(std::span<float>(xq.data(), size_t(xq.size())), config.quant);
    fake_quantize_mxfp4(std::span<float>(wq.data(), size_t(wq.size())), config.quant);
    const Eigen::MatrixXd yq = xq.cast<double>() * wq.cast<double>().transpose();
    return (yq - y).norm() / y.norm();
  };
  ChannelTransform hadamard_t;
  Eigen::MatrixXf hm(kB, kB);
  for (int i = 0; i < kB; ++i)
    for (int j = 0; j < kB; ++j) hm(i, j) = float(h[i * kB + j]);
  hadamard_t.add_block_rotation(hm);
  r.linear.out_features = config.out_features;
  r.linear.identity = w4a4_error(ChannelTransform{});
  r.linear.hadamard = w4a4_error(hadamard_t);
  r.linear.duquant = w4a4_error(search.rotation.transform());
  return r;
}

}  // namespace mxlens
