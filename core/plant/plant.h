#pragma once
// Outlier plants: function-preserving copies of a checkpoint whose linear inputs carry massive
// outlier channels, so the effect of rotations on outliers can be studied on models too small
// to have their own (the shared tiny models' outliers are weak).
//
// norm mode: RMSNorm channel c scaled up by S, the matching input columns of the consumers
// (q/k/v after input_layernorm, gate/up after post_attention_layernorm) scaled down by S;
// optionally intermediate channel j: up_proj row j ×S, down_proj column j ÷S (silu(g)⊙u is
// linear in u). The outlier carries no extra signal: its column shrinks as its magnitude grows,
// so beyond S≈8–16 a rotation spreads signal-free energy over the block and loses to RTN, and
// SmoothQuant smoothing (algorithm.md §3) undoes the plant exactly (algorithm.md §10b).
//
// residual mode: every RMSNorm γ is folded into its consumers (γ ← 1, embeddings untied),
// then the residual stream is rotated by an orthogonal Q whose columns at K chosen channels
// are the top-K principal directions of the normalized residual stream (algorithm.md §5.1):
// E ← E·Q, q/k/v/gate/up/lm_head W ← W·Q, o/down W ← Qᵀ·W. The outliers carry the stream's
// own largest-energy signal, as massive activations in large models do.
//
// Residual mode orders channels by energy (second moment), so on held-out tokens its planted
// channels are the top channels by RMS; by absmax, a tail statistic, they are usually but not
// always on top (a single BOS-like token can peak elsewhere). An orthogonal map cannot make
// them larger than the data's principal directions are: check_plant reports how large.
// Without calibration text the principal directions come from seeded random token ids run
// through the FP model (a model without a tokenizer still has a stream to measure).
//
// Both are exact in real arithmetic; see PlantRecord for what the written dtype costs.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/model/checkpoint.h"
#include "core/model/site_taps.h"
#include "core/util/progress.h"

namespace mxlens {

enum class PlantMode { Norm, Residual };
const char* plant_mode_name(PlantMode mode);  // "norm", "residual"

// Dtype of the tensors written.
enum class PlantDtype {
  Auto,    // norm: each tensor's source dtype; residual: F32 (the rotated values are new)
  Source,  // each tensor's source dtype, values rounded to nearest (even)
  F32,
};
const char* plant_dtype_name(PlantDtype dtype);  // "auto", "source", "f32"

struct PlantSites {
  bool attention_norm = true;  // input_layernorm γ ×S, q/k/v columns ÷S     (qkv site)
  bool mlp_norm = true;        // post_attention_layernorm γ ×S, gate/up ÷S (gate/up site)
  bool intermediate = false;   // up_proj rows ×S, down_proj columns ÷S     (down site)
};

struct PlantOptions {
  PlantMode mode = PlantMode::Norm;
  int channels = 4;  // K: hidden channels planted (and intermediate channels with that site)
  // S, norm mode only. Powers of two keep every F32/BF16/F16 value exact (only the exponent
  // changes) unless it leaves the dtype's normal range; other values round once per element.
  double scale = 8.0;
  uint64_t seed = 0;        // chooses the channels
  std::vector<int> layers;  // norm mode: layers planted (empty = all); residual: must be empty
  PlantSites sites;         // norm mode only
  PlantDtype dtype = PlantDtype::Auto;
  // Residual mode: tokens whose normalized residual stream (the qkv and gate/up site inputs of
  // every layer, γ divided out) gives the principal directions. Empty: `calib_random_tokens`
  // seeded uniform random ids (a model without a tokenizer still gets a stream to measure).
  std::vector<int32_t> calib_tokens;
  int calib_random_tokens = 256;
  std::string calib_source;  // what calib_tokens came from, recorded
  int threads = 1;
  bool force = false;  // replace an existing output directory
};

struct PlantRecord {
  PlantMode mode = PlantMode::Norm;
  std::string source_dir;
  uint64_t seed = 0;
  double scale = 1.0;                      // S (norm mode), 1 in residual mode
  std::vector<int> hidden_channels;        // planted residual-stream channels, in choice order
  std::vector<int> intermediate_channels;  // planted intermediate channels (down site)
  std::vector<int> layers;                 // layers touched
  PlantSites sites;
  PlantDtype dtype = PlantDtype::Auto;
  std::string dtype_note;       // which dtype was written and why
  uint64_t values_rounded = 0;  // scaled/rotated values not representable exactly
  uint64_t values_written = 0;  // values of planted/rotated tensors written
  bool untied = false;          // residual mode wrote separate embedding and lm_head
  // residual mode
  std::string calib_source;
  int64_t calib_tokens = 0;
  std::vector<double> top_eigenvalues;  // of the mean x̂ᵀx̂ (x̂ = x / rms(x)), descending, top K
  double top_energy_fraction = 0;       // sum of the top K over the trace
  double orthogonality_error = 0;       // ‖QQᵀ − I‖∞ of the rotation (double)
  std::vector<std::string> copied_files;
};

// Writes the planted copy of `checkpoint` to `out_dir` (one model.safetensors, config.json
// (tie flag cleared when untied), the other small files, mxlens_plant.json) through a temporary
// directory beside it that is renamed into place when complete. Throws Error when `out_dir`
// exists (unless options.force), is or contains the source, or the options do not fit the model.
PlantRecord plant_outliers(const Checkpoint& checkpoint, const std::filesystem::path& out_dir,
                           const PlantOptions& options, const Progress& progress = {});

// The record as JSON text (also stored in mxlens_plant.json and the safetensors __metadata__).
std::string plant_record_json(const PlantRecord& record);

// K distinct channels of [0, n) drawn from seed (the same draw for the same arguments).
std::vector<int> choose_plant_channels(int n, int k, uint64_t seed);

// Comparison of a planted copy with its original on one token window.
struct PlantSiteStats {
  int layer = 0;
  Site site = Site::Qkv;
  // Per-channel max |x| over the window's tokens at the site input, summarized:
  float planted_absmax_before = 0;  // max over the planted channels
  float planted_absmax_after = 0;
  float planted_min_absmax_after = 0;  // min over the planted channels of their absmax
  float other_absmax_before = 0;       // max over every other channel
  float other_absmax_after = 0;
  int planted_in_top_k_after = 0;  // planted channels among the K largest absmax channels
  // The same for the root mean square over tokens (what principal directions order by).
  float planted_rms_before = 0;  // max over the planted channels
  float planted_rms_after = 0;
  float other_rms_before = 0;  // max over every other channel
  float other_rms_after = 0;
  int planted_in_top_k_rms_after = 0;
};

struct PlantCheck {
  int64_t tokens = 0;
  double max_abs_logit_diff = 0;
  double max_abs_logit = 0;  // of the original
  double relative_logit_diff() const {
    return max_abs_logit > 0 ? max_abs_logit_diff / max_abs_logit : max_abs_logit_diff;
  }
  std::vector<PlantSiteStats> sites;  // qkv and gu of every layer; down when planted
};

// Runs both models on `tokens` (FP32) and compares logits and site activations; the planted
// channels are taken from `record`. Throws Error when the two configs differ in shape.
PlantCheck check_plant(const Checkpoint& original, const Checkpoint& planted,
                       std::span<const int32_t> tokens, const PlantRecord& record, int threads = 1);

}  // namespace mxlens
