#pragma once
// Calibration: from a model and calibration text to a Session (design.md "Calibrate",
// algorithm.md §3, §4.6, §6, §7).
//
//   1. windows     settings.windows: N windows of L ids at seeded offsets in the calibration
//                  region of the text (calib_windows.h).
//   2. statistics  (methods that smooth) every window through the FP model with ActAbsMaxTaps;
//                  smoothing factors per site (set_smoothing).
//   3. transforms  fixed ones (hadamard, random, quarot) directly; searched ones (duquant,
//                  duquantpp*) by §4.6: the mean over the N windows of the layer-0 inputs is
//                  run once through the model in calibration mode — at each site the arriving
//                  tensor (already smoothed and produced by rotated, W4A4-quantized upstream
//                  linears) is searched on, the rotation set in the plan, and the tensor then
//                  rotated and quantized, so the next site and layer see the quantized model.
//   4. GPTQ        (duquantpp-gptq) gptq_quantize_model over the windows.
//   5. site stats  stats_windows windows through the final quantized model with SiteStatsTaps.
// Timings of 2-5 are kept in Session::timings. Progress is reported per stage and cancel is
// checked between windows, sites and steps (throws Cancelled).
#include <cstdint>
#include <span>
#include <string>

#include "core/calib/session.h"
#include "core/model/checkpoint.h"
#include "core/model/llama_model.h"
#include "core/util/progress.h"

namespace mxlens {

struct CalibrationText {
  std::string path;           // as given (reports, session provenance)
  std::string sha256;         // of the file's bytes
  std::span<const int32_t> ids;  // tokenized once (BOS included when settings.add_bos)
};

// How one calibration runs; none of it changes the transforms (not saved with the session).
struct CalibrateOptions {
  int threads = 1;  // forward, searches, GPTQ, statistics
  // Step 5 (SiteStats). Off: Session::stats stays empty (compare skips it by default).
  bool site_statistics = true;
};

// settings.windows.seqlen is capped at the model's max_position_embeddings (the session keeps
// the capped value). Throws Error for a text too short for one window, a transform the model's
// sizes do not allow (e.g. QuaRot without a Hadamard of that size), or bad settings.
//
// Seeds: random's blocks and QuaRot's signs come from settings.rotation_seed; the searches' Q'
// from settings.greedy.seed (DuQuant++) and settings.duquant.seed (DuQuant), each derived per
// (layer, site) (the CLI sets all three to --rotation-seed).
// Sites whose channel count is not a multiple of a block rotation's size (stories260K's
// 172-wide down site under hadamard, random or duquantpp; any site narrower than DuQuant's
// 128-blocks) are left unrotated — smoothing, where the method has it, still applies — and
// Session::warnings names each such site once. QuaRot's full Hadamards have no such fallback:
// a size without a construction is an Error("quarot", "full Hadamard of size N unsupported ...").
// GPTQ (duquantpp-gptq) quantizes whole 32-column groups: a site width that is not a multiple
// of 32 is an Error("duquantpp-gptq", ...) raised before any work.
Session calibrate(const Checkpoint& checkpoint, const LlamaWeights& weights,
                  const CalibrationText& text, const CalibrationSettings& settings,
                  const CalibrateOptions& options, const Progress& progress = {});
Session calibrate(const Checkpoint& checkpoint, const LlamaWeights& weights,
                  const CalibrationText& text, const CalibrationSettings& settings, int threads,
                  const Progress& progress = {});

// The seqlen calibration uses for this model: min(requested, max_position_embeddings).
int capped_calibration_seqlen(const LlamaConfig& cfg, int requested);

}  // namespace mxlens
