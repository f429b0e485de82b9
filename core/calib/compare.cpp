#include "core/calib/compare.h"
#include "core/util/utc_time.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "core/quant/quant_plan.h"
#include "core/quant/w4a4_taps.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

using Clock = std::chrono::steady_clock;

// One phase's share [begin, end) of the whole comparison. The callees take their own
// Progress; the caller's cancel flag reaches them through a local flag raised when a report
// finds the caller cancelled (they report after every window and check before the next).
class PhaseProgress {
 public:
  PhaseProgress(const Progress& outer, const CompareEvents& events, double begin, double end,
                std::string label)
      : outer_(&outer),
        events_(&events),
        begin_(begin),
        end_(end),
        label_(std::move(label)),
        cancel_(outer.cancelled()),
        inner_([this](double f, std::string_view stage) { report(f, stage); }, &cancel_) {}
  PhaseProgress(const PhaseProgress&) = delete;
  PhaseProgress& operator=(const PhaseProgress&) = delete;

  Progress& progress() { return inner_; }

  void report(double fraction, std::string_view stage = {}) {
    if (outer_->cancelled()) cancel_.store(true, std::memory_order_relaxed);
    const double f = begin_ + (end_ - begin_) * std::clamp(fraction, 0.0, 1.0);
    std::string text = label_;
    if (!stage.empty()) text += ": " + std::string(stage);
    outer_->report(f, text);
    if (events_->on_stage) events_->on_stage(f, label_);
  }

 private:
  const Progress* outer_;
  const CompareEvents* events_;
  double begin_, end_;
  std::string label_;
  std::atomic<bool> cancel_;
  Progress inner_;
};

}  // namespace

CompareResult run_compare(const Checkpoint& checkpoint, const LlamaWeights& weights,
                          const EvalText& eval_text, const CalibrationText& calib_text,
                          const CompareOptions& options, const Progress& progress,
                          const CompareEvents& events) {
  if (options.methods.empty()) throw Error("--methods", "no methods to compare");
  if (options.threads < 1) throw Error("--threads", "must be at least 1");
  const LlamaConfig& cfg = weights.config();

  CompareResult result;
  result.seqlen = int(std::min<int64_t>(options.seqlen, cfg.max_position_embeddings));
  check_seqlen(cfg, result.seqlen);
  const int64_t available = perplexity_window_count(int64_t(eval_text.ids.size()), result.seqlen);
  if (available < 1)
    throw Error(eval_text.path, "has " + std::to_string(eval_text.ids.size()) +
                                    " tokens, fewer than one evaluation window of " +
                                    std::to_string(result.seqlen));
  int64_t windows = options.max_windows > 0 ? std::min(options.max_windows, available) : available;

  // The same text calibrates and evaluates: evaluate only the windows before the region
  // calibration draws from (calib_windows.h).
  if (!calib_text.sha256.empty() && calib_text.sha256 == eval_text.sha256) {
    CalibWindowSpec spec = options.calibration.windows;
    spec.seqlen = capped_calibration_seqlen(cfg, spec.seqlen);
    const TokenRegion region =
        calibration_region(int64_t(calib_text.ids.size()), spec, calib_text.path);
    const WindowsBeforeRegion limited =
        limit_to_windows_before(region, result.seqlen, windows, eval_text.path);
    windows = limited.windows;
    result.eval_excludes_calibration_region = true;
    result.note = limited.note;
  }
  result.windows = windows;

  // FP first, then every other method in the given order.
  std::vector<Method> order{Method::fp};
  for (Method m : options.methods)
    if (m != Method::fp) order.push_back(m);

  const int64_t scored = windows * int64_t(result.seqlen - 1);
  const auto storage =
      double(scored) * double(cfg.vocab_size) * 4.0 <= double(options.reference_budget_bytes)
          ? ReferenceLogProbs::Storage::Full32
          : ReferenceLogProbs::Storage::Full16;
  ReferenceLogProbs reference(cfg.vocab_size, storage);

  // Shares of the progress bar: a calibration that runs forwards or searches costs about as
  // much as an evaluation; the others are nearly free.
  std::vector<double> calib_share, eval_share;
  double total = 0;
  for (Method m : order) {
    const double c = method_needs_statistics(m) || options.collect_site_stats ? 1.0 : 0.02;
    calib_share.push_back(c);
    eval_share.push_back(1.0);
    total += c + 1.0;
  }

  double at = 0;
  double fp_ppl = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const Method m = order[i];
    const std::string name(method_name(m));
    progress.check_cancel();
    MethodResult mr;
    mr.method = m;

    // Calibration (fp and rtn: windows, settings and provenance only).
    {
      PhaseProgress pp(progress, events, at / total, (at + calib_share[i]) / total,
                       "calibrate " + name);
      at += calib_share[i];
      pp.report(0.0);
      CalibrationSettings settings = options.calibration;
      settings.method = m;
      CalibrateOptions co;
      co.threads = options.threads;
      co.site_statistics = options.collect_site_stats;
      const auto t0 = Clock::now();
      mr.session = calibrate(checkpoint, weights, calib_text, settings, co, pp.progress());
      mr.calibration_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    }

    // Evaluation over the same windows.
    PhaseProgress pp(progress, events, at / total, (at + eval_share[i]) / total,
                     "evaluate " + name);
    at += eval_share[i];
    pp.report(0.0);
    PerplexityOptions po;
    po.seqlen = result.seqlen;
    po.max_windows = windows;
    po.forward.threads = options.threads;
    po.source = eval_text.path;
    if (m == Method::fp)
      po.record_reference = &reference;
    else
      po.kl_reference = &reference;
    const WindowFn on_window = [&](const WindowResult& w) {
      if (events.on_window) events.on_window(m, w);
    };
    const std::string started = utc_now_iso8601();
    {
      std::optional<QuantPlan> plan;
      if (m != Method::fp) plan.emplace(make_plan(mr.session, cfg));
      const QuantPlan* plan_ptr = plan ? &*plan : nullptr;
      std::unique_ptr<WindowModel> model;
      if (options.model_factory) {
        model = options.model_factory(weights, plan_ptr, po.forward);
      } else {
        W4a4Taps::Options wo;
        wo.cache_weights = plan && windows > 1 && weight_cache_fits(cfg);
        model = std::make_unique<CpuWindowModel>(weights, plan_ptr, po.forward, wo);
      }
      mr.eval = evaluate_perplexity(*model, eval_text.ids, po, pp.progress(), on_window);
    }
    if (m == Method::fp) fp_ppl = mr.eval.ppl;
    mr.session.provenance.backend = mr.eval.backend;
    mr.delta_ppl = mr.eval.ppl - fp_ppl;
    mr.session.results.push_back(make_eval_record(eval_text.path, eval_text.sha256, m,
                                                  mr.session.settings.scheme, mr.eval, started));
    result.methods.push_back(std::move(mr));
    if (events.on_method) events.on_method(result.methods.back());
  }
  progress.report(1.0, "compare done");
  return result;
}

}  // namespace mxlens
