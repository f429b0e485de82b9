// mxlens-cli calibrate: one method's calibration of a checkpoint, saved as an HDF5 session.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "app/cli/calib_flags.h"
#include "app/cli/cli_progress.h"
#include "app/cli/commands.h"
#include "core/calib/calibrate.h"
#include "core/io/session_file.h"
#include "core/plant/plant_caveat.h"
#include "core/util/error.h"

namespace mxlens::cli {

namespace {

struct CalibrateArgs {
  std::string model_dir, data, method = "duquantpp", out;
  CalibFlags flags;
  int threads = 1;
  bool bos = false, json = false, force = false;
};

// Per-site summary values (NaN when the session has no statistics).
struct SiteLine {
  double spread_before = NAN, spread_after = NAN, sqnr_before = NAN, sqnr_after = NAN;
  int best_step = -1, max_steps = -1;
  double objective_start = NAN, objective_best = NAN;
};

SiteLine site_line(const Session& s, int layer, Site site) {
  SiteLine l;
  if (size_t(layer) < s.stats.size()) {
    const SiteStats& st = s.stats[size_t(layer)][size_t(site)];
    if (st.tokens > 0) {
      l.sqnr_before = st.total_sqnr_db_before();
      l.sqnr_after = st.total_sqnr_db_after();
      if (st.sample_before.rows() > 0) {
        l.spread_before = st.mean_exponent_spread_before();
        l.spread_after = st.mean_exponent_spread_after();
      }
    }
  }
  if (size_t(layer) < s.searches.size()) {
    const auto& traces = s.searches[size_t(layer)][size_t(site)].traces;
    if (!traces.empty()) {
      const GreedyTrace& t = traces.back();
      l.best_step = t.best_step;
      l.max_steps = t.max_steps();
      l.objective_start = t.steps.front().objective;
      l.objective_best = t.steps[size_t(t.best_step)].objective;
    }
  }
  return l;
}

std::string transform_label(const SiteTransform& t) {
  std::string s;
  if (t.has_smoothing()) s += t.smooth_fold == SmoothFold::online ? "smooth(online)" : "smooth";
  for (const auto& step : t.rotation.steps()) {
    if (!s.empty()) s += "+";
    switch (step.kind) {
      case ChannelTransform::StepKind::BlockRotation:
        s += "R" + std::to_string(step.rotation.rows());
        break;
      case ChannelTransform::StepKind::Permutation:
        s += "P";
        break;
      case ChannelTransform::StepKind::FullHadamard:
        s += "H" + std::to_string(step.channels);
        break;
    }
  }
  return s.empty() ? "-" : s;
}

// "-" where the session has no transform (fp, rtn store none).
std::string site_transform_label(const Session& s, int layer, Site site) {
  if (size_t(layer) >= s.transforms.size()) return "-";
  return transform_label(s.transforms[size_t(layer)].site(site));
}

void run_calibrate(const CalibrateArgs& a) {
  namespace fs = std::filesystem;
  const Method method = parse_method(a.method);
  const CalibrationSettings settings = to_settings(a.flags, method);
  std::error_code ec;
  if (fs::exists(a.out, ec) && !a.force)
    throw Error(a.out,
                "exists; pass --force to replace it (the old session is kept until the "
                "new one is completely written)");
  if (const fs::path parent = fs::absolute(a.out).parent_path(); !fs::is_directory(parent, ec))
    throw Error(a.out, "its directory " + parent.string() + " does not exist");

  const Checkpoint ckpt = Checkpoint::open(a.model_dir);
  const LlamaWeights weights(ckpt);
  const LoadedText text = load_text(ckpt, a.data, a.bos);
  ProgressLine line;
  Progress progress([&](double f, std::string_view stage) { line.update(f, stage); });
  Session session = calibrate(ckpt, weights, CalibrationText{text.path, text.sha256, text.ids},
                              settings, a.threads, progress);
  line.finish();
  save_session(session, a.out);

  const auto plant = read_plant_summary(ckpt.dir());
  const LlamaConfig& cfg = weights.config();
  if (a.json) {
    nlohmann::json j;
    j["model"] = a.model_dir;
    j["session"] = a.out;
    j["method"] = a.method;
    j["scheme"] = session.settings.scheme.describe();
    j["settings"] = nlohmann::json::parse(settings_to_json(session.settings));
    j["calibration"] = {{"text", text.path},
                        {"text_tokens", session.data.text_tokens},
                        {"region", {session.data.region.begin, session.data.region.end}},
                        {"windows", session.data.window_offsets.size()},
                        {"seqlen", session.settings.windows.seqlen}};
    j["timings"] = {{"forward", session.timings.forward},
                    {"statistics", session.timings.statistics},
                    {"search", session.timings.search},
                    {"gptq", session.timings.gptq},
                    {"total", session.timings.total}};
    nlohmann::json sites = nlohmann::json::array();
    auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
    for (int l = 0; l < cfg.num_layers; ++l)
      for (Site site : kAllSites) {
        const SiteLine sl = site_line(session, l, site);
        sites.push_back({{"layer", l},
                         {"site", site_name(site)},
                         {"transform", site_transform_label(session, l, site)},
                         {"exponent_spread_before", num(sl.spread_before)},
                         {"exponent_spread_after", num(sl.spread_after)},
                         {"sqnr_db_before", num(sl.sqnr_before)},
                         {"sqnr_db_after", num(sl.sqnr_after)},
                         {"best_step", sl.best_step},
                         {"objective_start", num(sl.objective_start)},
                         {"objective_best", num(sl.objective_best)}});
      }
    j["sites"] = sites;
    j["warnings"] = session.warnings;
    if (plant) j["plant_caveat"] = plant_caveat(plant);
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("model          %s\n", a.model_dir.c_str());
  std::printf("method         %s: %s\n", a.method.c_str(),
              std::string(method_description(method)).c_str());
  std::printf("scheme         %s\n", session.settings.scheme.describe().c_str());
  std::printf(
      "calibration    %zu windows x %d tokens from ids [%lld, %lld) of %s (%lld ids); "
      "an evaluation of this text stops before id %lld\n",
      session.data.window_offsets.size(), session.settings.windows.seqlen,
      static_cast<long long>(session.data.region.begin),
      static_cast<long long>(session.data.region.end), text.path.c_str(),
      static_cast<long long>(session.data.text_tokens),
      static_cast<long long>(session.data.region.begin));
  std::printf("\n%-5s %-5s %-22s %17s %19s %s\n", "layer", "site", "transform", "E8M0 spread",
              "SQNR dB", "greedy objective (best step)");
  for (int l = 0; l < cfg.num_layers; ++l)
    for (Site site : kAllSites) {
      const SiteLine sl = site_line(session, l, site);
      std::string search = "-";
      if (sl.best_step >= 0) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "%.4g -> %.4g (%d/%d)", sl.objective_start,
                      sl.objective_best, sl.best_step, sl.max_steps);
        search = buf;
      }
      std::printf("%-5d %-5s %-22s %7.2f -> %6.2f %8.2f -> %7.2f %s\n", l,
                  std::string(site_name(site)).c_str(),
                  site_transform_label(session, l, site).c_str(), sl.spread_before, sl.spread_after,
                  sl.sqnr_before, sl.sqnr_after, search.c_str());
    }
  std::printf("\n");
  print_timings(session.timings);
  std::printf("session        %s\n", a.out.c_str());
  for (const std::string& w : session.warnings) std::printf("warning: %s\n", w.c_str());
  if (plant) std::printf("\nnote: %s\n", plant_caveat(plant).c_str());
}

}  // namespace

void register_calibrate(CLI::App& app) {
  auto args = std::make_shared<CalibrateArgs>();
  auto* cmd = app.add_subcommand(
      "calibrate",
      "Calibrate one method on a checkpoint and save everything (transforms, greedy traces, "
      "per-site statistics, GPTQ weights, provenance) as an HDF5 session. Calibration windows "
      "come from the tail of --data (--calib-tail); evaluating the same text with --session "
      "uses only the windows before that region.");
  cmd->add_option("model", args->model_dir,
                  "Checkpoint directory (config.json, *.safetensors, tokenizer.json)")
      ->required();
  cmd->add_option("--data", args->data, "Calibration text (UTF-8), e.g. wiki.test.raw")->required();
  std::string methods;
  for (Method m : kAllMethods)
    methods += (methods.empty() ? "" : ", ") + std::string(method_name(m));
  cmd->add_option("--method", args->method, "One of: " + methods)->capture_default_str();
  cmd->add_option("--out", args->out, "Session file to write (.h5)")->required();
  cmd->add_flag("--force", args->force, "Replace an existing session file");
  add_calibration_flags(cmd, args->flags);
  args->threads = int(std::max(1u, std::thread::hardware_concurrency()));
  cmd->add_option("--threads", args->threads, "Compute threads (default: all cores)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--bos", args->bos, "Prepend one BOS token to the calibration text");
  cmd->add_flag("--json", args->json, "Print one JSON object instead of text");
  cmd->callback([args] { run_calibrate(*args); });
}

}  // namespace mxlens::cli
