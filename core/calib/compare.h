#pragma once
// Side-by-side comparison of methods against FP on one text (the CLI's `compare`, the GUI's
// Perplexity view): FP runs first and its log-probabilities are kept as the reference; each
// method is then calibrated (calibrate.h) and evaluated over the same windows, giving KL
// divergence to FP per token and top-1 agreement (the headline figures, algorithm.md §10b),
// then perplexity and ΔPPL.
//
// When the calibration text is the evaluated text, calibration draws from its tail region and
// evaluation uses only the windows before it (calib_windows.h); CompareResult::note says so.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/backend/window_model.h"
#include "core/calib/calibrate.h"
#include "core/eval/kl.h"
#include "core/eval/perplexity.h"

namespace mxlens {

struct EvalText {
  std::string path, sha256;
  std::span<const int32_t> ids;
};

struct CompareOptions {
  std::vector<Method> methods;      // in order; fp is always run first as the reference
  CalibrationSettings calibration;  // settings.method is set per method
  int seqlen = 2048;                // evaluation window length (capped by the model context)
  int64_t max_windows = 0;          // 0 = every usable window
  int threads = 1;
  // Reference storage: Full32 when it fits this budget, else Full16.
  int64_t reference_budget_bytes = int64_t(2) << 30;
  // Run calibration's SiteStats pass for each method (MethodResult::session.stats); off by
  // default, since comparing needs only the transforms.
  bool collect_site_stats = false;
  // Builds the model each evaluation runs (FP, then each method's plan); empty = the CPU
  // forward with W4a4Taps (weights cached across windows when they fit). Calibration always
  // runs on the CPU. Each method's session records the backend in provenance.backend.
  WindowModelFactory model_factory;
};

struct MethodResult {
  Method method = Method::fp;
  PerplexityResult eval;  // .kl set for every method but fp
  double delta_ppl = 0;   // eval.ppl − FP's ppl
  double calibration_seconds = 0;
  Session session;  // what calibrate produced (fp: settings and provenance only)
};

struct CompareResult {
  int seqlen = 0;
  int64_t windows = 0;
  bool eval_excludes_calibration_region = false;
  std::string note;  // e.g. "calibration drew from ids [499k, 554k) of the same text; ..."
  std::vector<MethodResult> methods;  // FP first
};

struct CompareEvents {
  // Each evaluated window of each method, as it completes (live charts).
  std::function<void(Method, const WindowResult&)> on_window;
  // A method finished (calibration and evaluation).
  std::function<void(const MethodResult&)> on_method;
  // Which method and phase runs ("calibrate duquantpp", "evaluate rtn") and overall fraction.
  std::function<void(double fraction, const std::string& stage)> on_stage;
};

// Throws Error for an empty method list or texts too short; Cancelled when progress is
// cancelled.
CompareResult run_compare(const Checkpoint& checkpoint, const LlamaWeights& weights,
                          const EvalText& eval_text, const CalibrationText& calib_text,
                          const CompareOptions& options, const Progress& progress = {},
                          const CompareEvents& events = {});

}  // namespace mxlens
