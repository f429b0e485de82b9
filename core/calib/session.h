#pragma once
// A calibration session: everything one calibration produced and everything needed to
// reproduce and evaluate it — the settings, the per-site transforms (smoothing, rotations),
// the search traces, the statistics, GPTQ's weights, evaluation results and provenance.
// Saved and loaded by core/io/session_file.h (HDF5, formats.md §5); make_plan() turns it back
// into the QuantPlan the forward runs.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/calib/calib_windows.h"
#include "core/calib/method.h"
#include "core/calib/site_stats.h"
#include "core/eval/perplexity.h"
#include "core/model/llama_config.h"
#include "core/quant/gptq_model.h"
#include "core/quant/quant_plan.h"
#include "core/quant/quant_scheme.h"
#include "core/quant/smoothing.h"
#include "core/rotation/duquant.h"
#include "core/rotation/greedy_search.h"
#include "core/rotation/greedy_trace.h"

namespace mxlens {

// What identifies a model's weights (core/io/model_fingerprint.h computes it).
struct ModelFingerprint {
  std::string config_sha256;     // of config.json's bytes
  std::string tokenizer_sha256;  // of tokenizer.json's bytes; empty when there is none
  std::string weights_sha256;    // over every shard (see model_fingerprint.h)
  bool operator==(const ModelFingerprint&) const = default;
};

// How the session's search data was formed (algorithm.md §4.6).
enum class SearchData { mean_window };

// Everything that decides a calibration's result.
struct CalibrationSettings {
  Method method = Method::duquantpp;
  QuantScheme scheme = QuantScheme::make(QuantMode::w4a4);
  CalibWindowSpec windows;     // count, seqlen (after capping), seed, tail fraction
  bool add_bos = false;        // one BOS prepended to the calibration text's ids
  SmoothingOptions smoothing;  // α, floors
  GreedyOptions greedy;        // DuQuant++: n = 32, S = 128, selection, objective, seed
  DuQuantOptions duquant;      // original DuQuant: n = 128, S = 256
  GptqModelOptions gptq;       // DuQuant++*
  uint64_t rotation_seed = 0;  // random (§5.4), QuaRot signs, Q' of the searches
  int stats_windows = 0;       // windows the statistics pass runs (0 = all calibration windows)
  SiteStatsOptions stats;      // sampling budget, E8M0 rule of the statistics
  SearchData search_data = SearchData::mean_window;
};

// Where the calibration text came from and what was drawn from it.
struct CalibrationData {
  std::string text_path;                // as given
  std::string text_sha256;              // of the file's bytes
  int64_t text_tokens = 0;              // ids of the whole text (BOS included when added)
  TokenRegion region;                   // ids calibration drew from
  std::vector<int64_t> window_offsets;  // [count]
};

struct Provenance {
  std::string model_dir;
  ModelFingerprint fingerprint;
  std::string config_json;  // config.json's full text
  std::string created_utc;  // ISO 8601
  std::string mxlens_version, git_commit, host;
  std::string backend = "cpu";
};

struct CalibrationTimings {  // seconds
  double forward = 0;        // FP statistics forward (smoothing statistics)
  double statistics = 0;     // the statistics pass (SiteStats)
  double search = 0;         // rotation searches, including their propagation forward
  double gptq = 0;
  double total = 0;
};

// One evaluation stored with the session (formats.md §5.1 /results/eval_NNN).
struct EvalRecord {
  std::string kind = "ppl";  // "ppl"
  std::string dataset;       // text file as given
  std::string dataset_sha256;
  std::string method;  // method name
  std::string scheme;  // QuantScheme::describe()
  int seqlen = 0;
  int64_t windows = 0, tokens_scored = 0;
  std::vector<double> window_nll;
  double ppl = 0, nll_mean = 0;
  std::optional<double> kl_mean, top1;  // against FP, when measured
  std::string started_utc, finished_utc;
};

// The record of one perplexity run of `method` on a text (finished now).
EvalRecord make_eval_record(const std::string& dataset, const std::string& dataset_sha256,
                            Method method, const QuantScheme& scheme,
                            const PerplexityResult& result, std::string started_utc);

// The search traces of one site: DuQuant++ has one, original DuQuant two (R₁, R₂).
struct SiteSearch {
  std::vector<GreedyTrace> traces;
  std::vector<int32_t> permutation;  // DuQuant's zigzag P (empty otherwise)
};

struct Session {
  static constexpr uint32_t kFormatVersion = 1;

  Provenance provenance;
  CalibrationSettings settings;
  CalibrationData data;
  CalibrationTimings timings;
  LlamaConfig config;                               // parsed from provenance.config_json
  std::vector<LayerTransforms> transforms;          // [layers]
  std::vector<std::array<SiteSearch, 4>> searches;  // [layers][site]; empty traces = no search
  ModelSiteStats stats;                             // [layers][site]; may be empty
  // GPTQ's final (transformed, fake-quantized) weights, [layers][linear]; empty otherwise.
  std::vector<std::array<std::optional<RowMatrixXf>, 7>> weights;
  std::vector<EvalRecord> results;
  // What calibration could not do as asked, in words (e.g. a site whose channel count is not a
  // multiple of the rotation block, left unrotated). Not part of session file format 1.
  std::vector<std::string> warnings;
};

// The settings as one JSON object (session provenance, --json reports) and back; every field
// round-trips exactly (seeds as integers, floats with enough digits). Throws Error(source, ...)
// on malformed JSON, unknown names or missing fields.
std::string settings_to_json(const CalibrationSettings& settings);
CalibrationSettings settings_from_json(std::string_view json, std::string_view source);

// The plan the forward runs for this session: its scheme, transforms and stored weights.
// Throws Error when the session does not fit `cfg` (another model's session).
QuantPlan make_plan(const Session& session, const LlamaConfig& cfg);

}  // namespace mxlens
