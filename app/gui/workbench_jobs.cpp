#include "app/gui/workbench_jobs.h"

#include <algorithm>
#include <random>

#include "app/gui/default_text.h"
#include "core/calib/calibrate.h"
#include "core/eval/perplexity.h"
#include "core/io/model_fingerprint.h"
#include "core/io/session_file.h"
#include "core/model/synthetic_checkpoint.h"
#include "core/plant/plant.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "mxlens/gpu/backend.h"

namespace mxlens::gui {

namespace {

// A window must fit the text with one id to spare (calibration_region needs seqlen + 1).
int cap_seqlen(int seqlen, const LlamaConfig& cfg, int64_t text_ids) {
  seqlen = int(std::min<int64_t>(seqlen, cfg.max_position_embeddings));
  if (text_ids > 2) seqlen = int(std::min<int64_t>(seqlen, text_ids - 1));
  return std::max(seqlen, 2);
}

CalibrationSettings base_settings(Method method) {
  CalibrationSettings s;
  s.method = method;
  s.scheme = QuantScheme::make(method_quantizes(method) ? QuantMode::w4a4 : QuantMode::none);
  return s;
}

TokenizedText random_ids(const Checkpoint& checkpoint) {
  TokenizedText text;
  text.path = "(random token ids, seed 0)";
  text.ids.resize(kRandomTextIds);
  std::mt19937_64 rng(0);
  std::uniform_int_distribution<int32_t> id(0, checkpoint.config().vocab_size - 1);
  for (int32_t& v : text.ids) v = id(rng);
  text.sha256 = sha256_hex(std::span<const std::byte>(
      reinterpret_cast<const std::byte*>(text.ids.data()), text.ids.size() * sizeof(int32_t)));
  return text;
}

}  // namespace

CalibrationSettings quickCalibrationSettings(Method method, const LlamaConfig& cfg,
                                             int64_t text_ids) {
  CalibrationSettings s = base_settings(method);
  s.windows.count = 8;
  s.windows.seqlen = cap_seqlen(128, cfg, text_ids);
  s.greedy.max_steps = 32;
  s.duquant.max_steps = 64;
  s.stats.max_sample_rows = 128;
  return s;
}

CalibrationSettings fullCalibrationSettings(Method method, const LlamaConfig& cfg,
                                            int64_t text_ids) {
  CalibrationSettings s = base_settings(method);
  s.windows.seqlen = cap_seqlen(s.windows.seqlen, cfg, text_ids);
  return s;
}

CalibrationSettings compareCalibrationSettings(const LlamaConfig& cfg, int64_t text_ids,
                                               ScaleRule scale_rule) {
  CalibrationSettings s = base_settings(Method::duquantpp);
  QuantOptions q;
  q.scale_rule = scale_rule;
  s.scheme = QuantScheme::make(QuantMode::w4a4, QuantFormat::mxfp4, q);
  s.stats.mx = q;
  s.windows.count = 8;
  s.windows.seqlen =
      cap_seqlen(int(std::min<int64_t>(128, std::max<int64_t>(2, text_ids / 4))), cfg, text_ids);
  return s;
}

TokenizedText jobTokenizeText(const Checkpoint& checkpoint, const std::string& path,
                              std::string* note) {
  const auto tokenizer_json = checkpoint.tokenizer_json();
  if (!tokenizer_json) {
    if (note)
      *note = checkpoint.dir().filename().string() + " has no tokenizer.json: calibrating on " +
              std::to_string(kRandomTextIds) + " seeded random token ids";
    return random_ids(checkpoint);
  }
  const Tokenizer tokenizer = Tokenizer::load(*tokenizer_json);
  TokenizedText text;
  if (path.empty()) {
    const std::string_view body = defaultCalibrationText();
    text.path = kDefaultTextName;
    text.ids = tokenizer.encode(body, false);
    text.sha256 = sha256_hex(body);
  } else {
    text.path = path;
    text.ids = tokenize_text_file(tokenizer, path, false);
    text.sha256 = sha256_file(path);
  }
  return text;
}

void jobOpenModel(RunnerState& state, std::shared_ptr<const Checkpoint> checkpoint,
                  std::unique_ptr<LlamaWeights> weights, const std::string& text_path,
                  const std::string& eval_text_path, std::string* note) {
  // Weights point into their checkpoint: replace them first, the old checkpoint after.
  state.session.reset();
  state.fingerprint.reset();
  state.calibration_text = {};
  state.evaluation_text = {};
  state.weights = std::move(weights);
  state.checkpoint = std::move(checkpoint);
  std::string notes;
  try {
    state.calibration_text = jobTokenizeText(*state.checkpoint, text_path, &notes);
  } catch (const Error& e) {
    // The chosen text went missing or is not UTF-8: keep going on the built-in one.
    notes = std::string(e.what()) + "; using the built-in text instead";
    state.calibration_text = jobTokenizeText(*state.checkpoint, {});
  }
  if (!eval_text_path.empty() && state.checkpoint->tokenizer_json()) {
    try {
      state.evaluation_text = jobTokenizeText(*state.checkpoint, eval_text_path);
    } catch (const Error& e) {
      notes += (notes.empty() ? "" : "; ") + std::string(e.what()) +
               "; evaluating on the calibration text instead";
    }
  }
  if (note) *note = notes;
}

std::shared_ptr<const Session> jobCalibrate(RunnerState& state, const CalibrationSettings& settings,
                                            int threads, const Progress& progress) {
  if (!state.checkpoint || !state.weights) throw Error("calibrate", "no model is open");
  const TokenizedText& text = state.calibration_text;
  CalibrateOptions options;
  options.threads = std::max(1, threads);
  auto session = std::make_shared<const Session>(
      calibrate(*state.checkpoint, *state.weights,
                CalibrationText{text.path, text.sha256, text.ids}, settings, options, progress));
  state.session = session;
  return session;
}

std::shared_ptr<const Session> jobLoadSession(RunnerState& state,
                                              const std::filesystem::path& file) {
  auto session = std::make_shared<const Session>(load_session(file));
  if (state.checkpoint) {
    if (!state.fingerprint)
      state.fingerprint =
          std::make_shared<const ModelFingerprint>(model_fingerprint(*state.checkpoint));
    check_session_model(*session, *state.fingerprint, file);
    // Also the shape: a fingerprint match implies it, but make_plan says what is wrong if not.
    (void)make_plan(*session, state.checkpoint->config());
  }
  state.session = session;
  return session;
}

void jobSaveSession(const Session& session, const std::filesystem::path& file) {
  save_session(session, file);
}

std::string withExportHint(const std::string& refusal) {
  if (refusal.find("--smooth-gqa tied") == std::string::npos) return refusal;
  return refusal + " (in the window: Run ▸ Exportable Smoothing, then calibrate again)";
}

ExportReport jobExport(RunnerState& state, const Session& session,
                       const std::filesystem::path& session_file, const std::filesystem::path& out,
                       const ExportOptions& options, const Progress& progress) {
  if (!state.checkpoint) throw Error("export", "no model is open");
  try {
    return export_checkpoint(*state.checkpoint, session, session_file, out, options, progress);
  } catch (const Error& e) {
    const std::string hinted = withExportHint(e.problem());
    if (hinted == e.problem()) throw;
    throw Error(e.source(), hinted);
  }
}

WindowModelFactory evaluationModelFactory(bool cuda) {
  if (!cuda) return {};
  return gpu::make_window_model_factory(gpu::BackendKind::cuda);
}

CompareResult jobCompare(RunnerState& state, const CompareOptions& options,
                         const Progress& progress, const CompareEvents& events) {
  if (!state.checkpoint || !state.weights) throw Error("perplexity", "no model is open");
  const TokenizedText& calib = state.calibration_text;
  const TokenizedText& eval =
      state.evaluation_text.empty() ? state.calibration_text : state.evaluation_text;
  return run_compare(*state.checkpoint, *state.weights, EvalText{eval.path, eval.sha256, eval.ids},
                     CalibrationText{calib.path, calib.sha256, calib.ids}, options, progress,
                     events);
}

std::filesystem::path jobWriteDemo(const std::filesystem::path& dir, const Progress& progress) {
  namespace fs = std::filesystem;
  const fs::path source = dir / "synthetic-tiny";
  const fs::path planted = dir / "mxlens-demo";
  if (fs::exists(planted / "config.json")) return planted;  // written before in this session
  if (!fs::exists(source / "config.json")) {
    SyntheticOptions synth;
    synth.preset = "tiny";
    synth.dtype = DType::F32;
    progress.report(0.0, "demo: writing a random-weight tiny model");
    write_synthetic_checkpoint(source, synth, progress);
  }
  progress.check_cancel();
  const Checkpoint checkpoint = Checkpoint::open(source);
  PlantOptions plant;
  plant.mode = PlantMode::Norm;
  plant.channels = 4;
  plant.scale = 8.0;
  plant.sites.intermediate = true;
  plant.force = true;
  progress.report(0.5, "demo: planting outlier channels");
  plant_outliers(checkpoint, planted, plant, progress);
  return planted;
}

}  // namespace mxlens::gui
