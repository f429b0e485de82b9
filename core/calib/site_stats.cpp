// Per-site calibration statistics (design.md "SiteStats", formats.md §5.1).
// GCC 12 reports a false -Wmaybe-uninitialized inside its AVX-512 intrinsics when Eigen is inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// The 32-byte vector helpers below are file-local, so the AVX-less ABI note does not matter.
#pragma GCC diagnostic ignored "-Wpsabi"

#include "core/calib/site_stats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include <omp.h>

#include "core/mx/mxfp4.h"
#include "core/quant/quant_plan.h"
#include "core/quant/quant_scheme.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

constexpr int kHistBins = 256;

int blocks_of(int channels) {
  return (channels + kStatsBlock - 1) / kStatsBlock;
}

// The rule whose byte the histograms and samples record: dqv2_log8's code is relative to the
// range of one tensor, so it records the block's ocp_floor exponent instead (see the header).
ScaleRule byte_rule(ScaleRule rule) {
  return rule == ScaleRule::dqv2_log8 ? ScaleRule::ocp_floor : rule;
}

// E8M0 byte of a block with max |x| = amax; `finite` false marks a block holding NaN or Inf.
uint8_t block_byte(float amax, bool finite, ScaleRule rule) {
  if (!finite) return 0xFF;
  return mxfp4_block_scale(amax, rule).byte;
}

// Uniform in [0, range) without modulo bias (rejects draws below 2^64 mod range).
uint64_t uniform_below(std::mt19937_64& rng, uint64_t range) {
  const uint64_t reject_below = (0 - range) % range;
  for (;;) {
    const uint64_t r = rng();
    if (r >= reject_below) return r % range;
  }
}

// `rows` sorted, distinct positions out of [0, positions): position i is drawn uniformly in
// the i-th of `rows` equal (±1) consecutive stretches.
std::vector<int64_t> spread_positions(int64_t positions, int64_t rows, uint64_t seed) {
  std::vector<int64_t> out(size_t(std::max<int64_t>(rows, 0)));
  if (rows <= 0) return out;
  std::mt19937_64 rng(seed);
  const int64_t q = positions / rows, rem = positions % rows;
  auto start = [&](int64_t i) { return i * q + (i * rem) / rows; };
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t a = start(i), b = start(i + 1);
    out[size_t(i)] = a + int64_t(uniform_below(rng, uint64_t(b - a)));
  }
  return out;
}

// Where one pass of accumulate() writes; sum/sum_sq are null for the `after` side.
struct Targets {
  float* absmax;
  double* sum;
  double* sum_sq;
  uint32_t* hist;
  double* signal;
  double* noise;
};

// 8 floats / 4 doubles (GCC vector extensions: AVX where the build has it, SSE pairs else).
typedef float V8f __attribute__((vector_size(32)));
typedef int32_t V8i __attribute__((vector_size(32)));
typedef double V4d __attribute__((vector_size(32)));

template <class V>
V load(const void* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <class V>
void store(void* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}

// One row's blocks [b0, b1): x and its fake quantization q (both indexed by channel). A whole
// block's sums run in 8 lanes added in a fixed order at the end (vectorized; the results do
// not depend on threads or on how rows arrive).
template <bool kWithMoments>
void accumulate_row(const float* __restrict x, const float* __restrict q, int b0, int b1,
                    int channels, ScaleRule brule, const Targets& t) {
  for (int b = b0; b < b1; ++b) {
    const int c0 = b * kStatsBlock, n = std::min(channels - c0, kStatsBlock);
    float amax = 0.0f;
    double s = 0.0, z = 0.0;
    if (n == kStatsBlock) {
      V8f al = {};
      V4d s_lo = {}, s_hi = {}, z_lo = {}, z_hi = {};
      for (int c = c0; c < c0 + kStatsBlock; c += 8) {
        const V8f v = load<V8f>(x + c), qv = load<V8f>(q + c);
        const V8f a = (V8f)((V8i)v & 0x7FFFFFFF);  // |v|, +0 for −0
        al = al < a ? a : al;
        const V8f m = load<V8f>(t.absmax + c);
        store(t.absmax + c, m < a ? a : m);
        const V4d lo = __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), V4d);
        const V4d hi = __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), V4d);
        const V4d d_lo =
            lo - __builtin_convertvector(__builtin_shufflevector(qv, qv, 0, 1, 2, 3), V4d);
        const V4d d_hi =
            hi - __builtin_convertvector(__builtin_shufflevector(qv, qv, 4, 5, 6, 7), V4d);
        s_lo += lo * lo;
        s_hi += hi * hi;
        z_lo += d_lo * d_lo;
        z_hi += d_hi * d_hi;
        if constexpr (kWithMoments) {
          store(t.sum + c, load<V4d>(t.sum + c) + lo);
          store(t.sum + c + 4, load<V4d>(t.sum + c + 4) + hi);
          store(t.sum_sq + c, load<V4d>(t.sum_sq + c) + lo * lo);
          store(t.sum_sq + c + 4, load<V4d>(t.sum_sq + c + 4) + hi * hi);
        }
      }
      for (int j = 0; j < 8; ++j) amax = std::max(amax, al[j]);
      for (int j = 0; j < 4; ++j) {
        s += s_lo[j] + s_hi[j];
        z += z_lo[j] + z_hi[j];
      }
    } else {  // the short last block
      for (int c = c0; c < c0 + n; ++c) {
        const float v = x[c], a = std::fabs(v);
        amax = std::max(amax, a);
        t.absmax[c] = std::max(t.absmax[c], a);
        const double dv = v, d = dv - double(q[c]);
        s += dv * dv;
        z += d * d;
        if constexpr (kWithMoments) {
          t.sum[c] += dv;
          t.sum_sq[c] += dv * dv;
        }
      }
    }
    // A finite float squared never overflows a double: s is finite iff the block is.
    ++t.hist[size_t(b) * kHistBins + block_byte(amax, std::isfinite(s), brule)];
    t.signal[b] += s;
    t.noise[b] += z;
  }
}

// Adds the rows of x to the targets. q: x fake-quantized (same shape), or null to quantize
// each row's blocks here (E8M0 rules only: blocks are independent). Threads split the blocks,
// never the rows: each block (and its channels) is summed by one thread in row order, so the
// sums do not depend on the thread count.
void accumulate(const float* x, int64_t x_stride, const float* q, int64_t q_stride, int64_t rows,
                int channels, const QuantOptions& mx, const Targets& t, int threads) {
  const int blocks = blocks_of(channels);
  const ScaleRule brule = byte_rule(mx.scale_rule);
  auto run = [&](int b0, int b1) {
    if (b0 >= b1) return;
    const int c0 = b0 * kStatsBlock, width = (b1 - b0) * kStatsBlock;
    const int real = std::min(channels - c0, width);
    std::vector<float> local(q ? 0 : size_t(width), 0.0f);  // zero-padded short block
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * x_stride;
      const float* qr = q ? q + r * q_stride : nullptr;
      if (!q) {
        std::copy(xr + c0, xr + c0 + real, local.begin());
        // A NaN block comes back all NaN, padding included: restore the zero padding.
        std::fill(local.begin() + real, local.end(), 0.0f);
        fake_quantize_mxfp4(local, mx);
        qr = local.data() - c0;  // indexed by channel
      }
      if (t.sum)
        accumulate_row<true>(xr, qr, b0, b1, channels, brule, t);
      else
        accumulate_row<false>(xr, qr, b0, b1, channels, brule, t);
    }
  };
  if (threads <= 1 || blocks < 2) {
    run(0, blocks);
    return;
  }
#pragma omp parallel num_threads(std::min(threads, blocks))
  {
    const int i = omp_get_thread_num(), n = omp_get_num_threads();
    run(int(int64_t(blocks) * i / n), int(int64_t(blocks) * (i + 1) / n));
  }
}

std::vector<double> sqnr_db(const std::vector<double>& signal, const std::vector<double>& noise) {
  std::vector<double> out(signal.size());
  for (size_t b = 0; b < signal.size(); ++b) {
    const double s = signal[b], n = b < noise.size() ? noise[b] : 0.0;
    out[b] = s == 0.0   ? std::numeric_limits<double>::quiet_NaN()
             : n == 0.0 ? std::numeric_limits<double>::infinity()
                        : 10.0 * std::log10(s / n);
  }
  return out;
}

double total_sqnr_db(const std::vector<double>& signal, const std::vector<double>& noise) {
  double s = 0, n = 0;
  for (double v : signal) s += v;
  for (double v : noise) n += v;
  return sqnr_db({s}, {n})[0];
}

std::vector<uint8_t> sample_bytes(const RowMatrixXf& rows, int channels, const QuantOptions& mx) {
  const int blocks = blocks_of(channels);
  const ScaleRule rule = byte_rule(mx.scale_rule);
  std::vector<uint8_t> out(size_t(rows.rows()) * size_t(blocks));
  if (rows.cols() != channels) return out;
  for (Eigen::Index r = 0; r < rows.rows(); ++r) {
    const float* xr = rows.row(r).data();
    for (int b = 0; b < blocks; ++b) {
      const int c0 = b * kStatsBlock, c1 = std::min(channels, c0 + kStatsBlock);
      float amax = 0.0f;
      bool finite = true;
      for (int c = c0; c < c1; ++c) {
        finite = finite && std::isfinite(xr[c]);
        amax = std::max(amax, std::fabs(xr[c]));
      }
      out[size_t(r) * size_t(blocks) + size_t(b)] = block_byte(amax, finite, rule);
    }
  }
  return out;
}

double mean_spread(const RowMatrixXf& rows, int channels, const QuantOptions& mx) {
  if (rows.rows() == 0 || channels <= 0) return std::numeric_limits<double>::quiet_NaN();
  const int blocks = blocks_of(channels);
  const std::vector<uint8_t> bytes = sample_bytes(rows, channels, mx);
  double total = 0;
  for (Eigen::Index r = 0; r < rows.rows(); ++r) {
    const auto first = bytes.begin() + r * blocks;
    const auto [lo, hi] = std::minmax_element(first, first + blocks);
    total += double(*hi) - double(*lo);
  }
  return total / double(rows.rows());
}

}  // namespace

// --- SiteStats ---------------------------------------------------------------------------

std::vector<double> SiteStats::sqnr_db_before() const {
  return sqnr_db(signal_before, noise_before);
}
std::vector<double> SiteStats::sqnr_db_after() const {
  return sqnr_db(signal_after, noise_after);
}
double SiteStats::total_sqnr_db_before() const {
  return total_sqnr_db(signal_before, noise_before);
}
double SiteStats::total_sqnr_db_after() const {
  return total_sqnr_db(signal_after, noise_after);
}
double SiteStats::mean_exponent_spread_before(const QuantOptions& mx) const {
  return mean_spread(sample_before, channels, mx);
}
double SiteStats::mean_exponent_spread_after(const QuantOptions& mx) const {
  return mean_spread(sample_after, channels, mx);
}
std::vector<uint8_t> SiteStats::sample_e8m0_before(const QuantOptions& mx) const {
  return sample_bytes(sample_before, channels, mx);
}
std::vector<uint8_t> SiteStats::sample_e8m0_after(const QuantOptions& mx) const {
  return sample_bytes(sample_after, channels, mx);
}

int sample_rows_for_budget(const LlamaConfig& cfg, const SiteStatsOptions& options) {
  const int64_t channels_per_layer =
      2 * int64_t(cfg.hidden_size) + int64_t(cfg.num_heads) * cfg.head_dim + cfg.intermediate_size;
  // float32, before and after.
  const int64_t bytes_per_row = int64_t(cfg.num_layers) * channels_per_layer * 4 * 2;
  const int64_t max_rows = std::max(options.max_sample_rows, 0);
  if (bytes_per_row <= 0) return int(max_rows);
  const int64_t fit = std::max<int64_t>(options.sample_budget_bytes, 0) / bytes_per_row;
  return int(std::min(max_rows, fit));
}

// --- SiteStatsTaps -----------------------------------------------------------------------

SiteStatsTaps::SiteStatsTaps(const QuantPlan& plan, SiteTaps* inner, int windows, int seqlen,
                             const SiteStatsOptions& options)
    : plan_(&plan), inner_(inner), opt_(options), seqlen_(seqlen) {
  const std::string source = "site statistics";
  if (windows < 0)
    throw Error(source, "window count must be at least 0, got " + std::to_string(windows));
  if (seqlen < 1)
    throw Error(source, "window length must be at least 1, got " + std::to_string(seqlen));
  if (opt_.threads < 0)
    throw Error("--threads", "must be at least 0 (0 = all), got " + std::to_string(opt_.threads));
  const LlamaConfig& cfg = plan.config();
  const int64_t positions = int64_t(windows) * seqlen;
  const int64_t rows = std::min<int64_t>(sample_rows_for_budget(cfg, opt_), positions);
  sample_tokens_ = spread_positions(positions, rows, opt_.seed);

  stats_.resize(size_t(std::max(cfg.num_layers, 0)));
  running_.resize(stats_.size());
  for (size_t l = 0; l < stats_.size(); ++l)
    for (Site site : kAllSites) {
      SiteStats& st = stats_[l][size_t(site)];
      const int c = plan.site_channels(site);
      st.channels = c;
      st.blocks = blocks_of(c);
      st.absmax_before.assign(size_t(c), 0.0f);
      st.absmax_after.assign(size_t(c), 0.0f);
      st.mean_before.assign(size_t(c), 0.0f);
      st.rms_before.assign(size_t(c), 0.0f);
      st.e8m0_hist_before.assign(size_t(st.blocks) * kHistBins, 0);
      st.e8m0_hist_after.assign(size_t(st.blocks) * kHistBins, 0);
      st.signal_before.assign(size_t(st.blocks), 0.0);
      st.noise_before.assign(size_t(st.blocks), 0.0);
      st.signal_after.assign(size_t(st.blocks), 0.0);
      st.noise_after.assign(size_t(st.blocks), 0.0);
      st.sample_tokens = sample_tokens_;
      st.sample_before = RowMatrixXf::Zero(rows, c);
      st.sample_after = RowMatrixXf::Zero(rows, c);
      Running& run = running_[l][size_t(site)];
      run.sum.assign(size_t(c), 0.0);
      run.sum_sq.assign(size_t(c), 0.0);
    }
}

void SiteStatsTaps::begin_window(int window) {
  if (window < 0)
    throw Error("site statistics",
                "window index must be at least 0, got " + std::to_string(window));
  window_ = window;
  for (auto& layer : running_)
    for (Running& run : layer) run.cursor = 0;
}

void SiteStatsTaps::on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) {
  if (layer < 0 || layer >= int(stats_.size()))
    throw Error("site statistics", "layer " + std::to_string(layer) + " out of range");
  SiteStats& st = stats_[size_t(layer)][size_t(site)];
  Running& run = running_[size_t(layer)][size_t(site)];
  if (x.cols() != st.channels)
    throw Error("site statistics", "site " + std::string(site_name(site)) + " has " +
                                       std::to_string(x.cols()) + " channels, expected " +
                                       std::to_string(st.channels));
  const int64_t rows = x.rows();
  const int threads = rows * x.cols() >= opt_.parallel_min_elements
                          ? (opt_.threads > 0 ? opt_.threads : omp_get_max_threads())
                          : 1;
  const TensorQuant mx{QuantFormat::mxfp4, opt_.mx, 1.0f};

  // dqv2_log8's range is the whole tensor's: quantize it all first. The E8M0 rules quantize
  // block by block inside accumulate() (no tensor-sized copy).
  const bool whole_tensor = opt_.mx.scale_rule == ScaleRule::dqv2_log8;
  auto quantized = [&](Eigen::Ref<const RowMatrixXf> m) -> const float* {
    if (!whole_tensor) return nullptr;
    quant_ = m;
    fake_quantize_rows(quant_, mx, TensorRole::activations, threads);
    return quant_.data();
  };

  // before: the tensor as it arrives.
  accumulate(x.data(), x.outerStride(), quantized(x), st.channels, rows, st.channels, opt_.mx,
             {st.absmax_before.data(), run.sum.data(), run.sum_sq.data(),
              st.e8m0_hist_before.data(), st.signal_before.data(), st.noise_before.data()},
             threads);
  st.tokens += rows;
  if (st.tokens > 0)
    for (int c = 0; c < st.channels; ++c) {
      st.mean_before[size_t(c)] = float(run.sum[size_t(c)] / double(st.tokens));
      st.rms_before[size_t(c)] = float(std::sqrt(run.sum_sq[size_t(c)] / double(st.tokens)));
    }

  // after: smoothing division and channel transform, on a copy.
  after_ = x;
  plan_->transform_activations(layer, site, after_, threads);
  accumulate(after_.data(), after_.cols(), quantized(after_), st.channels, rows, st.channels,
             opt_.mx,
             {st.absmax_after.data(), nullptr, nullptr, st.e8m0_hist_after.data(),
              st.signal_after.data(), st.noise_after.data()},
             threads);

  // Samples: the rows of this call whose window position is a sampled one.
  const int64_t base = int64_t(window_) * seqlen_;
  const int64_t p0 = run.cursor, p1 = std::min<int64_t>(run.cursor + rows, seqlen_);
  if (p0 < p1) {
    auto it = std::lower_bound(sample_tokens_.begin(), sample_tokens_.end(), base + p0);
    for (; it != sample_tokens_.end() && *it < base + p1; ++it) {
      const Eigen::Index i = it - sample_tokens_.begin(), r = Eigen::Index(*it - base - p0);
      st.sample_before.row(i) = x.row(r);
      st.sample_after.row(i) = after_.row(r);
    }
  }
  run.cursor += rows;

  if (inner_) inner_->on_activations(layer, site, x);
}

const float* SiteStatsTaps::weight_override(int layer, Linear linear, std::span<const float> w,
                                            int out, int in) {
  return inner_ ? inner_->weight_override(layer, linear, w, out, in) : nullptr;
}

}  // namespace mxlens
