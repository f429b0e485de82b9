#pragma once
// What the workbench's jobs do on the runner thread (job_runner.h), as plain functions over
// RunnerState: no widgets, no signals. The main window posts them and shows their results.
// Functions named job* run on the runner only.
#include <QString>
#include <filesystem>
#include <memory>
#include <string>

#include "app/gui/job_runner.h"
#include "core/calib/compare.h"
#include "core/calib/session.h"
#include "core/export/export.h"
#include "core/mx/quant_options.h"

namespace mxlens::gui {

// The calibration run when a model opens or the method changes: 8 windows of
// min(128, context) tokens and 32 greedy steps (DuQuant: 64), so that statistics show within
// seconds even on a 1B model. Seqlen is also capped so one window fits `text_ids`.
CalibrationSettings quickCalibrationSettings(Method method, const LlamaConfig& cfg,
                                             int64_t text_ids);
// Run ▸ Calibrate: the CLI's defaults (128 windows of min(2048, context) tokens, 128 greedy
// steps, DuQuant 256), seqlen capped so one window fits `text_ids`.
CalibrationSettings fullCalibrationSettings(Method method, const LlamaConfig& cfg,
                                            int64_t text_ids);
// The Perplexity tab's calibration of every compared method: the quick windows with the full
// search lengths; calibration seqlen at most a quarter of the text, so that with the same text
// evaluated (calibration from its tail) windows before the calibration region remain.
CalibrationSettings compareCalibrationSettings(const LlamaConfig& cfg, int64_t text_ids,
                                               ScaleRule scale_rule);

// Ids of a text for `checkpoint`: `path` empty = the built-in text (default_text.h). A model
// without tokenizer.json gets `kRandomTextIds` seeded random ids instead (statistics still
// mean something; perplexity of random ids does not) and *note says so.
inline constexpr int kRandomTextIds = 4096;
TokenizedText jobTokenizeText(const Checkpoint& checkpoint, const std::string& path,
                              std::string* note = nullptr);

// Makes `checkpoint` (already opened and checked on the GUI thread) the runner's model,
// tokenizes the calibration text (falling back to the built-in text, with *note saying why,
// when the chosen file fails) and forgets the previous session.
void jobOpenModel(RunnerState& state, std::shared_ptr<const Checkpoint> checkpoint,
                  std::unique_ptr<LlamaWeights> weights, const std::string& text_path,
                  const std::string& eval_text_path, std::string* note);

// Calibrates the runner's model on its calibration text; the session becomes the current one.
// Throws Error when no model is open.
std::shared_ptr<const Session> jobCalibrate(RunnerState& state, const CalibrationSettings& settings,
                                            int threads, const Progress& progress);

// Loads a session file; with a model open it must be that model's (check_session_model).
// The previous session stays when this throws.
std::shared_ptr<const Session> jobLoadSession(RunnerState& state,
                                              const std::filesystem::path& file);
void jobSaveSession(const Session& session, const std::filesystem::path& file);

// An export refusal's text, plus where the window's switch is when recalibrating with tied GQA
// smoothing would lift it (the CLI's texts name --smooth-gqa tied).
std::string withExportHint(const std::string& refusal);

// export_checkpoint of `session` for the runner's model; a refusal carries withExportHint.
ExportReport jobExport(RunnerState& state, const Session& session,
                       const std::filesystem::path& session_file, const std::filesystem::path& out,
                       const ExportOptions& options, const Progress& progress);

// The evaluation model factory of the Perplexity tab's backend choice: CUDA models
// (mxlens/gpu/backend.h; Error("--backend", ...) when no device can be used) or, for the CPU,
// none (run_compare's CPU default). Set it as CompareOptions::model_factory.
WindowModelFactory evaluationModelFactory(bool cuda);

// run_compare on the runner's model: eval text = the evaluation text, else the calibration
// text.
CompareResult jobCompare(RunnerState& state, const CompareOptions& options,
                         const Progress& progress, const CompareEvents& events);

// The demo model: a random-weight "tiny" checkpoint (core/model/synthetic_checkpoint.h) with
// outlier channels planted at the qkv, gate/up and down inputs of every layer (core/plant,
// norm mode, ×8), written under `dir` once; returns the planted checkpoint's directory.
std::filesystem::path jobWriteDemo(const std::filesystem::path& dir, const Progress& progress);

}  // namespace mxlens::gui
