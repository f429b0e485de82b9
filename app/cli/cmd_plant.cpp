// mxlens-cli plant: a function-preserving copy of a checkpoint with massive outlier channels
// (core/plant/plant.h), then a short check of what the plant did to the site activations.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>

#include "app/cli/commands.h"
#include "core/eval/perplexity.h"
#include "core/model/checkpoint.h"
#include "core/plant/plant.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"

namespace mxlens::cli {

namespace {

struct PlantArgs {
  std::string model_dir;
  std::string out_dir;
  std::string mode = "norm";
  int channels = 4;
  double scale = 8.0;
  uint64_t seed = 0;
  std::vector<int> layers;
  std::vector<std::string> sites;
  bool intermediate = false;
  std::string dtype = "auto";
  std::string calib;
  int calib_tokens = 512;
  int check_tokens = 256;
  bool verify = false;
  double verify_tol = 1e-4;
  int threads = 1;
  bool force = false;
  bool json = false;
};

// Seeded uniform ids: what calibrates and checks a model when no text is given.
std::vector<int32_t> seeded_ids(int vocab, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = int32_t(rng() % uint64_t(vocab));
  return ids;
}

void run_plant(const PlantArgs& a, bool scale_given, bool sites_given) {
  const Checkpoint ckpt = Checkpoint::open(a.model_dir);
  const LlamaConfig& cfg = ckpt.config();

  PlantOptions opt;
  if (a.mode == "norm")
    opt.mode = PlantMode::Norm;
  else if (a.mode == "residual")
    opt.mode = PlantMode::Residual;
  else
    throw Error("--mode", "'" + a.mode + "' is neither norm nor residual");
  if (opt.mode == PlantMode::Residual && (scale_given || sites_given || a.intermediate))
    throw Error(scale_given ? "--scale" : "--sites",
                "applies to norm mode only (residual mode is an orthogonal rotation: its outliers "
                "are as large as the data's principal directions make them)");
  opt.channels = a.channels;
  opt.scale = a.scale;
  opt.seed = a.seed;
  opt.layers = a.layers;
  opt.threads = a.threads;
  opt.force = a.force;
  if (a.dtype == "auto")
    opt.dtype = PlantDtype::Auto;
  else if (a.dtype == "source")
    opt.dtype = PlantDtype::Source;
  else if (a.dtype == "f32")
    opt.dtype = PlantDtype::F32;
  else
    throw Error("--dtype", "'" + a.dtype + "' is not auto, source or f32");
  if (sites_given) {
    opt.sites = PlantSites{false, false, false};
    for (const std::string& s : a.sites) {
      if (s == "attention-norm")
        opt.sites.attention_norm = true;
      else if (s == "mlp-norm")
        opt.sites.mlp_norm = true;
      else if (s == "intermediate")
        opt.sites.intermediate = true;
      else
        throw Error("--sites", "'" + s + "' is not attention-norm, mlp-norm or intermediate");
    }
  }
  if (a.intermediate) opt.sites.intermediate = true;

  // Calibration (residual mode) and check tokens: from --calib text, else seeded ids.
  std::vector<int32_t> text_ids;
  if (!a.calib.empty()) {
    const auto tj = ckpt.tokenizer_json();
    if (!tj) throw Error(a.model_dir, "has no tokenizer.json; --calib needs the model's tokenizer");
    text_ids = tokenize_text_file(Tokenizer::load(*tj), a.calib, false);
  }
  const int calib_n = std::min<int>(a.calib_tokens, int(text_ids.size()));
  if (!text_ids.empty()) {
    opt.calib_tokens.assign(text_ids.begin(), text_ids.begin() + calib_n);
    opt.calib_source = "first " + std::to_string(calib_n) + " tokens of " + a.calib + " (no BOS)";
  } else {
    opt.calib_random_tokens = a.calib_tokens;
  }
  const int check_n = int(std::min<int64_t>(a.check_tokens, cfg.max_position_embeddings));
  if (a.verify && check_n == 0) throw Error("--verify", "needs --check-tokens above 0");
  std::vector<int32_t> check_ids;
  std::string check_source;
  if (check_n > 0) {
    if (int(text_ids.size()) >= calib_n + check_n) {
      check_ids.assign(text_ids.begin() + calib_n, text_ids.begin() + calib_n + check_n);
      check_source = "tokens " + std::to_string(calib_n) + ".." +
                     std::to_string(calib_n + check_n) + " of " + a.calib;
    } else if (!text_ids.empty()) {
      check_ids.assign(text_ids.begin(),
                       text_ids.begin() + std::min<size_t>(text_ids.size(), size_t(check_n)));
      check_source = "first " + std::to_string(check_ids.size()) + " tokens of " + a.calib;
    } else {
      check_ids = seeded_ids(cfg.vocab_size, check_n, a.seed + 1);
      check_source = std::to_string(check_n) + " seeded random token ids";
    }
  }

  Progress progress([](double, std::string_view) {});
  const PlantRecord rec = plant_outliers(ckpt, a.out_dir, opt, progress);

  std::optional<PlantCheck> check;
  if (!check_ids.empty()) {
    const Checkpoint planted = Checkpoint::open(a.out_dir);
    check = check_plant(ckpt, planted, check_ids, rec, a.threads);
  }
  const bool verify_failed = a.verify && check && !(check->relative_logit_diff() <= a.verify_tol);

  if (a.json) {
    nlohmann::json j = nlohmann::json::parse(plant_record_json(rec));
    j["out"] = a.out_dir;
    if (check) {
      j["check_tokens"] = check->tokens;
      j["check_source"] = check_source;
      nlohmann::json sites = nlohmann::json::array();
      for (const PlantSiteStats& s : check->sites)
        sites.push_back({{"layer", s.layer},
                         {"site", std::string(site_name(s.site))},
                         {"planted_absmax_before", s.planted_absmax_before},
                         {"planted_absmax_after", s.planted_absmax_after},
                         {"planted_min_absmax_after", s.planted_min_absmax_after},
                         {"other_absmax_before", s.other_absmax_before},
                         {"other_absmax_after", s.other_absmax_after},
                         {"planted_in_top_k_after", s.planted_in_top_k_after},
                         {"planted_rms_before", s.planted_rms_before},
                         {"planted_rms_after", s.planted_rms_after},
                         {"other_rms_before", s.other_rms_before},
                         {"other_rms_after", s.other_rms_after},
                         {"planted_in_top_k_rms_after", s.planted_in_top_k_rms_after}});
      j["sites_check"] = sites;
      if (a.verify) {
        j["max_abs_logit_diff"] = check->max_abs_logit_diff;
        j["max_abs_logit"] = check->max_abs_logit;
        j["relative_logit_diff"] = check->relative_logit_diff();
        j["verify_tol"] = a.verify_tol;
        j["verified"] = !verify_failed;
      }
    }
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("planted        %s -> %s (%s mode)\n", a.model_dir.c_str(), a.out_dir.c_str(),
                plant_mode_name(rec.mode));
    std::string ch;
    for (int c : rec.hidden_channels) ch += (ch.empty() ? "" : ",") + std::to_string(c);
    std::printf("channels       %s (seed %llu)\n", ch.c_str(),
                static_cast<unsigned long long>(rec.seed));
    if (!rec.intermediate_channels.empty()) {
      std::string ic;
      for (int c : rec.intermediate_channels) ic += (ic.empty() ? "" : ",") + std::to_string(c);
      std::printf("intermediate   %s\n", ic.c_str());
    }
    if (rec.mode == PlantMode::Norm)
      std::printf("scale          %g on %zu layer(s)\n", rec.scale, rec.layers.size());
    else
      std::printf(
          "rotation       top-%zu principal directions hold %.1f%% of the stream energy "
          "(%s); |QQ^T - I| = %.2e%s\n",
          rec.hidden_channels.size(), 100 * rec.top_energy_fraction, rec.calib_source.c_str(),
          rec.orthogonality_error, rec.untied ? "; embeddings untied" : "");
    std::printf("dtype          %s\n", rec.dtype_note.c_str());
    std::printf("rounded        %llu of %llu transformed values\n",
                static_cast<unsigned long long>(rec.values_rounded),
                static_cast<unsigned long long>(rec.values_written));
    if (check) {
      std::printf(
          "check          %lld tokens (%s); per-channel absmax and RMS over tokens at each site "
          "input; ratio = planted max / others max\n",
          static_cast<long long>(check->tokens), check_source.c_str());
      std::printf(
          "  layer site   absmax planted before -> after     others before -> after      "
          "ratio  top-K |  rms ratio  top-K\n");
      for (const PlantSiteStats& s : check->sites) {
        const size_t k =
            s.site == Site::Down ? rec.intermediate_channels.size() : rec.hidden_channels.size();
        std::printf(
            "  %5d %-4s  %9.4g -> %-9.4g      %9.4g -> %-9.4g  %6.2f  %d/%zu | %9.2f  %d/%zu\n",
            s.layer, std::string(site_name(s.site)).c_str(), s.planted_absmax_before,
            s.planted_absmax_after, s.other_absmax_before, s.other_absmax_after,
            s.other_absmax_after > 0 ? s.planted_absmax_after / s.other_absmax_after : 0.0f,
            s.planted_in_top_k_after, k,
            s.other_rms_after > 0 ? s.planted_rms_after / s.other_rms_after : 0.0f,
            s.planted_in_top_k_rms_after, k);
      }
      if (a.verify)
        std::printf(
            "verify         max |logit diff| %.3e, max |logit| %.4g, relative %.3e "
            "(tolerance %.1e): %s\n",
            check->max_abs_logit_diff, check->max_abs_logit, check->relative_logit_diff(),
            a.verify_tol, verify_failed ? "FAILED" : "ok");
    }
  }
  if (verify_failed)
    throw Error(a.out_dir, "planted logits differ from the original beyond --verify-tol");
}

}  // namespace

void register_plant(CLI::App& app) {
  auto args = std::make_shared<PlantArgs>();
  auto* cmd = app.add_subcommand(
      "plant",
      "Write a function-preserving copy of a checkpoint with massive outlier channels. "
      "norm mode scales K RMSNorm channels up by S and the consumers' input columns down by S "
      "(optionally intermediate channels: up rows x S, down columns / S); residual mode folds "
      "every RMSNorm into its consumers and rotates the residual stream so its top-K principal "
      "directions land on K channels (outliers that carry real signal). "
      "Norm-mode outliers carry no extra signal (their weight columns shrink by S), so beyond "
      "S of about 8-16 every rotation spreads signal-free energy into the block and loses to "
      "RTN, and SmoothQuant smoothing undoes the plant exactly: a lesson, not a bug.");
  cmd->add_option("model", args->model_dir, "Source checkpoint directory")->required();
  cmd->add_option("--out", args->out_dir, "Output directory (must not exist unless --force)")
      ->required();
  cmd->add_option("--mode", args->mode, "norm (default) or residual")
      ->check(CLI::IsMember({"norm", "residual"}));
  cmd->add_option("--channels", args->channels, "K: planted channels (default 4)")
      ->check(CLI::PositiveNumber);
  auto* scale = cmd->add_option("--scale", args->scale,
                                "S, norm mode (default 8; powers of two keep values exact)");
  cmd->add_option("--seed", args->seed, "Seed of the channel choice and random ids (default 0)");
  cmd->add_option("--layers", args->layers, "Norm mode: layers to plant (default all)")
      ->delimiter(',');
  auto* sites = cmd->add_option("--sites", args->sites,
                                "Norm mode: attention-norm,mlp-norm,intermediate "
                                "(default attention-norm,mlp-norm)")
                    ->delimiter(',');
  cmd->add_flag("--intermediate", args->intermediate,
                "Norm mode: also plant intermediate channels (down_proj input)");
  cmd->add_option("--dtype", args->dtype, "auto (norm: source dtype, residual: F32), source or f32")
      ->check(CLI::IsMember({"auto", "source", "f32"}));
  cmd->add_option("--calib", args->calib,
                  "UTF-8 text for residual-mode calibration and the check (needs the model's "
                  "tokenizer); default: seeded random token ids");
  cmd->add_option("--calib-tokens", args->calib_tokens,
                  "Residual mode: calibration tokens (default 512)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--check-tokens", args->check_tokens,
                  "Tokens of the check after writing (default 256, 0 = no check)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--verify", args->verify,
                "Compare logits with the original on the check tokens; exit 1 beyond --verify-tol");
  cmd->add_option("--verify-tol", args->verify_tol,
                  "Relative tolerance: max |logit diff| / max |logit| (default 1e-4)")
      ->check(CLI::PositiveNumber);
  args->threads = int(std::max(1u, std::thread::hardware_concurrency()));
  cmd->add_option("--threads", args->threads, "Threads of the forward passes")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--force", args->force, "Replace an existing --out directory");
  cmd->add_flag("--json", args->json, "Print one JSON object instead of text");
  cmd->callback(
      [args, scale, sites]() { run_plant(*args, scale->count() > 0, sites->count() > 0); });
}

}  // namespace mxlens::cli
