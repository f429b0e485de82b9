// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "core/calib/calibrate.h"
#include "core/util/utc_time.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/io/model_fingerprint.h"
#include "core/model/forward.h"
#include "core/quant/gptq_model.h"
#include "core/quant/quant_plan.h"
#include "core/quant/site_transform.h"
#include "core/quant/smoothing.h"
#include "core/quant/w4a4_taps.h"
#include "core/rotation/block_rotation.h"
#include "core/rotation/duquant.h"
#include "core/rotation/greedy_search.h"
#include "core/rotation/hadamard.h"
#include "core/util/error.h"

#ifndef MXLENS_VERSION
#define MXLENS_VERSION "unknown"
#endif

namespace mxlens {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int channels_of(const LlamaConfig& c, Site s) {
  switch (s) {
    case Site::Qkv:
    case Site::GateUp:
      return c.hidden_size;
    case Site::O:
      return c.num_heads * c.head_dim;
    case Site::Down:
      return c.intermediate_size;
  }
  return 0;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return {};
  return buf;
}

std::string read_whole_file(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path.string(), "cannot be read");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// One stage's share [begin, end) of the whole calibration's progress. Forwards the caller's
// cancel flag to the callees that take their own Progress: Progress keeps its flag private, so
// a local flag is raised when a report finds the caller cancelled (callees report between
// units of work and check cancel at the next one).
class StageProgress {
 public:
  StageProgress(const Progress& outer, double begin, double end, std::string label)
      : outer_(&outer),
        begin_(begin),
        end_(end),
        label_(std::move(label)),
        cancel_(outer.cancelled()),
        inner_([this](double f, std::string_view stage) { report(f, stage); }, &cancel_) {}
  StageProgress(const StageProgress&) = delete;
  StageProgress& operator=(const StageProgress&) = delete;

  const Progress& progress() const { return inner_; }

  void report(double fraction, std::string_view stage = {}) {
    if (outer_->cancelled()) cancel_.store(true, std::memory_order_relaxed);
    const double f = std::clamp(fraction, 0.0, 1.0);
    std::string text = label_;
    if (!stage.empty()) text += ": " + std::string(stage);
    outer_->report(begin_ + (end_ - begin_) * f, text);
  }
  void check_cancel() const { outer_->check_cancel(); }

 private:
  const Progress* outer_;
  double begin_, end_;
  std::string label_;
  std::atomic<bool> cancel_;
  Progress inner_;
};

// Shares of the progress bar by stage (rough relative cost on the small models).
struct StagePlan {
  double forward = 0, search = 0, gptq = 0, stats = 0;
  double begin_forward() const { return 0; }
  double begin_search() const { return forward; }
  double begin_gptq() const { return forward + search; }
  double begin_stats() const { return forward + search + gptq; }
  void normalize() {
    const double total = forward + search + gptq + stats;
    if (total <= 0) return;
    forward /= total, search /= total, gptq /= total, stats /= total;
  }
};

void add_warning(Session& session, std::string text) {
  if (std::find(session.warnings.begin(), session.warnings.end(), text) == session.warnings.end())
    session.warnings.push_back(std::move(text));
}

// A site whose width the method's rotation block does not divide is left unrotated; the
// session names it once per site kind (every layer has the same widths).
bool block_fits(Session& session, Site site, int channels, int block, std::string_view what) {
  if (block > 0 && channels % block == 0) return true;
  add_warning(session, "site " + std::string(site_name(site)) + " has " + std::to_string(channels) +
                           " channels, not a multiple of the " + std::to_string(block) +
                           "-channel " + std::string(what) +
                           " block: left unrotated in every layer of " +
                           session.provenance.model_dir);
  return false;
}

std::vector<float> gamma_vector(const float* g, int n, int layer, const char* norm) {
  std::vector<float> s(g, g + n);
  for (int c = 0; c < n; ++c)
    if (s[size_t(c)] == 0.0f || !std::isfinite(s[size_t(c)]))
      throw Error("quarot", "layer " + std::to_string(layer) + " " + norm + " weight [" +
                                std::to_string(c) +
                                "] is zero or not finite: it cannot be folded into the linears");
  return s;
}

void check_quarot_size(int n, const std::string& model, Site site, const char* what) {
  if (full_hadamard_supported(n)) return;
  throw Error("quarot", "full Hadamard of size " + std::to_string(n) +
                            " unsupported for this model (" + model + ", site " +
                            std::string(site_name(site)) + ", " + what + " " + std::to_string(n) +
                            "; sizes m·2^p with m in {1, 12, 20, 28} have one)");
}

// QuaRot per site (method.h): qkv/gu get s = γ folded into the weights and the residual's full
// Hadamard Q (one Q for the whole model), o and down their own full Hadamards per layer.
std::vector<LayerTransforms> quarot_transforms(const LlamaWeights& weights, uint64_t seed,
                                               const std::string& model) {
  const LlamaConfig& c = weights.config();
  const int d = c.hidden_size, hd = c.num_heads * c.head_dim, f = c.intermediate_size;
  check_quarot_size(d, model, Site::Qkv, "hidden_size");
  check_quarot_size(hd, model, Site::O, "num_heads·head_dim");
  check_quarot_size(f, model, Site::Down, "intermediate_size");
  const uint64_t residual_seed = derive_seed(seed, 0, 0, 7);
  std::vector<LayerTransforms> t(size_t(c.num_layers));
  LayerWeights lw;
  for (int l = 0; l < c.num_layers; ++l) {
    weights.load_layer(l, lw);
    SiteTransform& qkv = t[size_t(l)].site(Site::Qkv);
    qkv.smooth = gamma_vector(lw.input_norm, d, l, "input_layernorm");
    qkv.smooth_fold = SmoothFold::norm;
    qkv.rotation.add_full_hadamard(d, residual_seed);
    SiteTransform& gu = t[size_t(l)].site(Site::GateUp);
    gu.smooth = gamma_vector(lw.post_norm, d, l, "post_attention_layernorm");
    gu.smooth_fold = SmoothFold::norm;
    gu.rotation.add_full_hadamard(d, residual_seed);
    t[size_t(l)].site(Site::O).rotation.add_full_hadamard(hd,
                                                          derive_seed(seed, l, int(Site::O), 7));
    t[size_t(l)]
        .site(Site::Down)
        .rotation.add_full_hadamard(f, derive_seed(seed, l, int(Site::Down), 7));
  }
  return t;
}

// Calibration mode of §4.6: at every site, search on the arriving tensor (smoothed; upstream
// already rotated and W4A4-quantized), set the site's rotation in the plan, then let the
// plan's W4a4Taps rotate and quantize the tensor. The forward asks for a site's weights only
// after that site's on_activations, so they are computed with the new rotation.
class CalibratingTaps : public SiteTaps {
 public:
  CalibratingTaps(QuantPlan& plan, Session& session, int threads, const Progress& progress,
                  double begin, double end)
      : plan_(&plan),
        session_(&session),
        threads_(threads),
        progress_(&progress),
        begin_(begin),
        end_(end),
        inner_(plan, W4a4Taps::Options{.threads = threads, .cache_weights = false}) {}

  void on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) override {
    progress_->check_cancel();
    const CalibrationSettings& s = session_->settings;
    const LlamaConfig& cfg = plan_->config();
    const int channels = int(x.cols());
    const double n_sites = double(cfg.num_layers) * 4.0;
    const double i = double(layer) * 4.0 + double(int(site));
    const double span = end_ - begin_;
    StageProgress sp(*progress_, begin_ + span * i / n_sites, begin_ + span * (i + 1) / n_sites,
                     "search layer " + std::to_string(layer) + " " + std::string(site_name(site)));
    sp.report(0.0);

    const bool original = s.method == Method::duquant;
    const int block = original ? s.duquant.block_size : s.greedy.block_size;
    if (block_fits(*session_, site, channels, block, original ? "DuQuant" : "DuQuant++")) {
      RowMatrixXf y = x;
      plan_->transform_activations(layer, site, y, threads_);  // smoothing only, so far
      SiteTransform t = plan_->site(layer, site);
      SiteSearch& record = session_->searches[size_t(layer)][size_t(site)];
      if (original) {
        DuQuantOptions o = s.duquant;
        o.layer = layer, o.site = int(site), o.threads = threads_;
        DuQuantResult r = duquant_transform(y, o, &sp.progress());
        t.rotation = std::move(r.transform);
        record.traces = {std::move(r.first_trace), std::move(r.second_trace)};
        record.permutation = std::move(r.permutation);
      } else {
        GreedyOptions o = s.greedy;
        o.layer = layer, o.site = int(site), o.stage = 0, o.threads = threads_;
        GreedyResult r = greedy_search(y, o, &sp.progress());
        t.rotation = r.rotation.transform();
        record.traces = {std::move(r.trace)};
        record.permutation.clear();
      }
      plan_->set_site(layer, site, std::move(t));
    }
    progress_->check_cancel();
    inner_.on_activations(layer, site, x);
    sp.report(1.0);
  }

  const float* weight_override(int layer, Linear linear, std::span<const float> w, int out,
                               int in) override {
    return inner_.weight_override(layer, linear, w, out, in);
  }

 private:
  QuantPlan* plan_;
  Session* session_;
  int threads_;
  const Progress* progress_;
  double begin_, end_;
  W4a4Taps inner_;
};

}  // namespace

int capped_calibration_seqlen(const LlamaConfig& cfg, int requested) {
  return int(std::min<int64_t>(requested, cfg.max_position_embeddings));
}

Session calibrate(const Checkpoint& checkpoint, const LlamaWeights& weights,
                  const CalibrationText& text, const CalibrationSettings& settings, int threads,
                  const Progress& progress) {
  CalibrateOptions options;
  options.threads = threads;
  return calibrate(checkpoint, weights, text, settings, options, progress);
}

Session calibrate(const Checkpoint& checkpoint, const LlamaWeights& weights,
                  const CalibrationText& text, const CalibrationSettings& settings,
                  const CalibrateOptions& options, const Progress& progress) {
  const auto t_total = Clock::now();
  const LlamaConfig& cfg = weights.config();
  const Method method = settings.method;
  const int threads = options.threads;
  const std::string source = "calibration settings";
  if (threads < 1) throw Error("--threads", "must be at least 1");
  if (settings.windows.count < 1)
    throw Error(source, "the number of calibration windows must be at least 1, not " +
                            std::to_string(settings.windows.count));
  if (settings.windows.seqlen < 2)
    throw Error(source, "the calibration window length must be at least 2 tokens, not " +
                            std::to_string(settings.windows.seqlen));
  if (settings.stats_windows < 0 || settings.stats_windows > settings.windows.count)
    throw Error(source, "stats_windows is " + std::to_string(settings.stats_windows) +
                            ": must be 0 (all) or at most the " +
                            std::to_string(settings.windows.count) + " calibration windows");

  // GPTQ quantizes whole 32-column groups (gptq.h): say so before minutes of searching.
  if (method_uses_gptq(method))
    for (Site site : kAllSites)
      if (channels_of(cfg, site) % 32 != 0)
        throw Error(std::string(method_name(method)),
                    "GPTQ needs input widths that are multiples of 32, but site " +
                        std::string(site_name(site)) + " of " + checkpoint.dir().string() +
                        " has " + std::to_string(channels_of(cfg, site)) + " channels");

  Session session;
  session.settings = settings;
  session.settings.windows.seqlen = capped_calibration_seqlen(cfg, settings.windows.seqlen);
  if (method == Method::fp) session.settings.scheme = QuantScheme::make(QuantMode::none);
  session.config = cfg;
  const CalibWindowSpec& spec = session.settings.windows;
  const int seqlen = spec.seqlen;

  // Provenance.
  Provenance& pv = session.provenance;
  pv.model_dir = checkpoint.dir().string();
  pv.fingerprint = model_fingerprint(checkpoint);
  pv.config_json = read_whole_file(checkpoint.dir() / "config.json");
  pv.created_utc = utc_now_iso8601();
  pv.mxlens_version = MXLENS_VERSION;
  pv.host = host_name();

  // 1. Windows.
  CalibrationData& data = session.data;
  data.text_path = text.path;
  data.text_sha256 = text.sha256;
  data.text_tokens = int64_t(text.ids.size());
  data.region = calibration_region(data.text_tokens, spec, text.path);
  data.window_offsets = draw_window_offsets(data.region, spec);
  std::vector<std::span<const int32_t>> windows;
  windows.reserve(data.window_offsets.size());
  for (int64_t off : data.window_offsets)
    windows.push_back(text.ids.subspan(size_t(off), size_t(seqlen)));
  const int stats_windows = settings.stats_windows == 0 ? spec.count : settings.stats_windows;

  StagePlan stages;
  stages.forward = method_smooths(method) ? 1.0 : 0.0;
  stages.search = method_searches(method) ? 1.0 : 0.0;
  stages.gptq = method_uses_gptq(method) ? 3.0 : 0.0;
  stages.stats = options.site_statistics ? 1.0 : 0.0;
  stages.normalize();
  progress.check_cancel();

  ForwardOptions fo;
  fo.threads = threads;
  std::vector<LayerTransforms> transforms;
  if (method != Method::fp && method != Method::rtn) transforms.resize(size_t(cfg.num_layers));

  // 2. Smoothing statistics: FP forward over every window.
  if (method_smooths(method)) {
    const auto t0 = Clock::now();
    ActAbsMaxTaps stats(cfg);
    LlamaForward fwd(weights, fo);
    for (size_t w = 0; w < windows.size(); ++w) {
      progress.check_cancel();
      progress.report(stages.begin_forward() + stages.forward * double(w) / double(windows.size()),
                      "smoothing statistics, window " + std::to_string(w + 1) + "/" +
                          std::to_string(windows.size()));
      fwd.hidden(windows[w], &stats);
    }
    set_smoothing(transforms, weights, stats, settings.smoothing);
    session.timings.forward = seconds_since(t0);
  }

  // 3. Transforms.
  const std::string& model = pv.model_dir;
  switch (method) {
    case Method::hadamard:
    case Method::random:
      for (int l = 0; l < cfg.num_layers; ++l)
        for (Site site : kAllSites) {
          if (!block_fits(session, site, channels_of(cfg, site), 32,
                          method == Method::hadamard ? "Hadamard" : "random rotation"))
            continue;
          transforms[size_t(l)].site(site).rotation.add_block_rotation(
              method == Method::hadamard
                  ? block_hadamard(32)
                  : random_orthogonal(32, derive_seed(settings.rotation_seed, l, int(site))));
        }
      break;
    case Method::quarot:
      transforms = quarot_transforms(weights, settings.rotation_seed, model);
      break;
    default:
      break;
  }

  std::unique_ptr<QuantPlan> plan;
  if (method_searches(method)) {
    const auto t0 = Clock::now();
    session.searches.resize(size_t(cfg.num_layers));
    // §4.6: the mean over the windows of the layer-0 inputs, one "average sequence".
    Eigen::MatrixXd sum = Eigen::MatrixXd::Zero(seqlen, cfg.hidden_size);
    RowMatrixXf e;
    for (const auto& w : windows) {
      progress.check_cancel();
      weights.embed(w, e);
      sum += e.cast<double>();
    }
    const RowMatrixXf x0 = (sum / double(windows.size())).cast<float>();
    plan = std::make_unique<QuantPlan>(cfg, session.settings.scheme, transforms);
    CalibratingTaps taps(*plan, session, threads, progress, stages.begin_search(),
                         stages.begin_search() + stages.search);
    LlamaForward fwd(weights, fo);
    fwd.hidden_from_embeddings(x0, &taps);
    transforms = plan->transforms();
    session.timings.search = seconds_since(t0);
  }
  session.transforms = transforms;
  if (!plan || method_uses_gptq(method))
    plan = std::make_unique<QuantPlan>(cfg, session.settings.scheme, transforms);

  // 4. GPTQ on the final transforms.
  if (method_uses_gptq(method)) {
    const auto t0 = Clock::now();
    GptqModelOptions go = settings.gptq;
    go.threads = threads;
    StageProgress sp(progress, stages.begin_gptq(), stages.begin_gptq() + stages.gptq, "GPTQ");
    gptq_quantize_model(weights, *plan, windows, go, sp.progress());
    progress.check_cancel();
    session.weights.resize(size_t(cfg.num_layers));
    for (int l = 0; l < cfg.num_layers; ++l)
      for (Linear which : kAllLinears)
        if (const RowMatrixXf* w = plan->stored_weight(l, which))
          session.weights[size_t(l)][size_t(which)] = *w;
    session.timings.gptq = seconds_since(t0);
  }

  // 5. Site statistics through the final model.
  if (options.site_statistics) {
    const auto t0 = Clock::now();
    std::unique_ptr<W4a4Taps> inner;
    if (method != Method::fp) {
      W4a4Taps::Options wo;
      wo.threads = threads;
      wo.cache_weights = stats_windows > 1 && weight_cache_fits(cfg);
      inner = std::make_unique<W4a4Taps>(*plan, wo);
    }
    SiteStatsOptions so = settings.stats;
    so.threads = threads;
    SiteStatsTaps taps(*plan, inner.get(), stats_windows, seqlen, so);
    LlamaForward fwd(weights, fo);
    for (int w = 0; w < stats_windows; ++w) {
      progress.check_cancel();
      progress.report(
          stages.begin_stats() + stages.stats * double(w) / double(stats_windows),
          "site statistics, window " + std::to_string(w + 1) + "/" + std::to_string(stats_windows));
      taps.begin_window(w);
      fwd.hidden(windows[size_t(w)], &taps);
    }
    session.stats = taps.take_stats();
    session.timings.statistics = seconds_since(t0);
  }

  progress.check_cancel();
  session.timings.total = seconds_since(t_total);
  progress.report(1.0, "calibration done");
  return session;
}

}  // namespace mxlens
