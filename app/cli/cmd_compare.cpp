// mxlens-cli compare: methods side by side against FP on one text — KL divergence to the FP
// distribution and top-1 agreement first (meaningful even where perplexity is noise), then
// perplexity and ΔPPL (algorithm.md §10b).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "app/cli/backend_flag.h"
#include "app/cli/calib_flags.h"
#include "app/cli/cli_progress.h"
#include "app/cli/commands.h"
#include "core/calib/compare.h"
#include "core/io/session_file.h"
#include "core/plant/plant_caveat.h"
#include "core/util/error.h"

namespace mxlens::cli {

namespace {

constexpr const char* kDefaultMethods =
    "fp,rtn,smooth,hadamard,random,quarot,duquant,duquantpp,duquantpp-nosmooth,duquantpp-gptq";

struct CompareArgs {
  std::string model_dir, data, calib_data, methods = kDefaultMethods, sessions_dir;
  CalibFlags flags;
  int seqlen = 2048;
  int64_t windows = 0;
  int threads = 1;
  bool bos = false, json = false;
  std::string backend = "cpu";
};

nlohmann::json number(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
}

void run_compare_cmd(const CompareArgs& a) {
  namespace fs = std::filesystem;
  const std::vector<Method> methods = parse_method_list(a.methods);
  // Checks every flag before the (slow) work; the method only changes the scheme's mode.
  const CalibrationSettings settings = to_settings(a.flags, Method::duquantpp);
  const ChosenBackend backend = choose_backend(a.backend);
  std::error_code ec;
  if (!a.sessions_dir.empty() && !fs::is_directory(a.sessions_dir, ec))
    throw Error(a.sessions_dir, "is not a directory (--sessions-dir)");

  const Checkpoint ckpt = Checkpoint::open(a.model_dir);
  const LlamaWeights weights(ckpt);
  const LoadedText eval = load_text(ckpt, a.data, a.bos);
  const bool same = a.calib_data.empty() || a.calib_data == a.data;
  const LoadedText calib = same ? LoadedText{} : load_text(ckpt, a.calib_data, a.bos);
  const LoadedText& ct = same ? eval : calib;

  CompareOptions opt;
  opt.methods = methods;
  opt.calibration = settings;
  opt.seqlen = a.seqlen;
  opt.max_windows = a.windows;
  opt.threads = a.threads;
  opt.model_factory = backend.factory;

  ProgressLine line;
  CompareEvents events;
  events.on_stage = [&](double f, const std::string& stage) { line.update(f, stage); };
  Progress progress([&](double f, std::string_view stage) { line.update(f, stage); });
  const CompareResult r =
      run_compare(ckpt, weights, EvalText{eval.path, eval.sha256, eval.ids},
                  CalibrationText{ct.path, ct.sha256, ct.ids}, opt, progress, events);
  line.finish();

  std::vector<std::string> saved;
  if (!a.sessions_dir.empty())
    for (const MethodResult& m : r.methods) {
      const fs::path file = fs::path(a.sessions_dir) / (std::string(method_name(m.method)) + ".h5");
      save_session(m.session, file);
      saved.push_back(file.string());
    }

  const auto plant = read_plant_summary(ckpt.dir());
  const std::string settings_json = settings_to_json(settings);
  if (a.json) {
    nlohmann::json j;
    j["model"] = a.model_dir;
    j["data"] = eval.path;
    j["calib_data"] = ct.path;
    j["seqlen"] = r.seqlen;
    j["windows"] = r.windows;
    j["tokens_scored"] = r.methods.empty() ? 0 : r.methods.front().eval.tokens_scored;
    j["eval_excludes_calibration_region"] = r.eval_excludes_calibration_region;
    j["note"] = r.note;
    j["threads"] = a.threads;
    j["backend_requested"] = backend.requested;
    j["backend_note"] = backend.note;
    j["settings"] = nlohmann::json::parse(settings_json);
    nlohmann::json ms = nlohmann::json::array();
    for (const MethodResult& m : r.methods) {
      nlohmann::json e;
      e["name"] = method_name(m.method);
      e["scheme"] = m.session.settings.scheme.describe();
      const bool has_kl = m.eval.kl.has_value();
      e["kl"] = has_kl ? number(m.eval.kl->mean) : nlohmann::json(0.0);
      e["kl_stderr"] = has_kl ? number(m.eval.kl->mean_stderr) : nlohmann::json(0.0);
      e["kl_p99"] = has_kl ? number(m.eval.kl->p99) : nlohmann::json(0.0);
      e["top1"] = has_kl ? number(m.eval.kl->top1_agreement) : nlohmann::json(1.0);
      e["ppl"] = number(m.eval.ppl);
      e["delta_ppl"] = number(m.delta_ppl);
      e["nll_mean"] = number(m.eval.nll_mean);
      e["calibration_seconds"] = m.calibration_seconds;
      e["eval_tokens_per_s"] = m.eval.tokens_per_s;
      e["backend"] = m.eval.backend;
      e["warnings"] = m.session.warnings;
      ms.push_back(e);
    }
    j["methods"] = ms;
    if (!saved.empty()) j["sessions"] = saved;
    if (plant) j["plant_caveat"] = plant_caveat(plant);
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("model          %s\n", a.model_dir.c_str());
  std::printf("data           %s\n", eval.path.c_str());
  std::printf("windows        %lld x %d tokens\n", static_cast<long long>(r.windows), r.seqlen);
  if (!r.note.empty()) std::printf("note           %s\n", r.note.c_str());
  std::printf("backend        %s%s%s\n", backend.requested.c_str(),
              backend.note.empty() ? "" : ": ", backend.note.c_str());
  std::printf("scheme         %s\n",
              QuantScheme::make(parse_quant_mode(a.flags.mode), parse_quant_format(a.flags.format),
                                settings.scheme.weights.options)
                  .describe()
                  .c_str());
  std::printf("\n%-19s %22s %8s %12s %10s %9s %10s\n", "method", "KL nats/token (+/-)", "top-1",
              "PPL", "dPPL", "calib s", "eval tok/s");
  for (const MethodResult& m : r.methods) {
    const bool has_kl = m.eval.kl.has_value();
    std::printf("%-19s %12.5f (%7.5f) %7.2f%% %12.4f %+10.4f %9.2f %10.0f\n",
                std::string(method_name(m.method)).c_str(), has_kl ? m.eval.kl->mean : 0.0,
                has_kl ? m.eval.kl->mean_stderr : 0.0,
                100.0 * (has_kl ? m.eval.kl->top1_agreement : 1.0), m.eval.ppl, m.delta_ppl,
                m.calibration_seconds, m.eval.tokens_per_s);
  }
  std::printf(
      "\nKL(FP || method) per scored token and top-1 agreement with FP are the headline: "
      "they rank methods reliably where PPL moves by seed noise (out-of-domain text).\n");
  if (backend.requested != "cpu")
    for (const MethodResult& m : r.methods)
      if (m.eval.backend == "cpu" && r.methods.front().eval.backend != "cpu")
        std::printf("note (%s): evaluated on the CPU (the CUDA backend cannot run its scheme)\n",
                    std::string(method_name(m.method)).c_str());
  for (const MethodResult& m : r.methods)
    for (const std::string& w : m.session.warnings)
      std::printf("warning (%s): %s\n", std::string(method_name(m.method)).c_str(), w.c_str());
  for (const std::string& f : saved) std::printf("session        %s\n", f.c_str());
  if (plant) std::printf("\nnote: %s\n", plant_caveat(plant).c_str());
}

}  // namespace

void register_compare(CLI::App& app) {
  auto args = std::make_shared<CompareArgs>();
  auto* cmd = app.add_subcommand(
      "compare",
      "Calibrate and evaluate several methods against FP on one text: KL divergence to the FP "
      "logits and top-1 agreement, then PPL and dPPL, with progress and ETA. When the "
      "calibration text is the evaluated text, calibration draws from its tail (--calib-tail) "
      "and evaluation uses only the windows before it.");
  cmd->add_option("model", args->model_dir,
                  "Checkpoint directory (config.json, *.safetensors, tokenizer.json)")
      ->required();
  cmd->add_option("--data", args->data, "Evaluation text (UTF-8), e.g. wiki.test.raw")->required();
  cmd->add_option("--calib-data", args->calib_data, "Calibration text (default: --data)");
  cmd->add_option("--methods", args->methods, "Comma-separated methods (fp always runs first)")
      ->capture_default_str();
  cmd->add_option("--seqlen", args->seqlen, "Evaluation tokens per window (capped by the context)")
      ->check(CLI::Range(2, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--windows", args->windows, "Evaluate only the first K usable windows (0 = all)")
      ->check(CLI::NonNegativeNumber);
  add_calibration_flags(cmd, args->flags);
  cmd->add_option("--sessions-dir", args->sessions_dir,
                  "Also save each method's session as DIR/<method>.h5");
  args->threads = int(std::max(1u, std::thread::hardware_concurrency()));
  cmd->add_option("--threads", args->threads, "Compute threads (default: all cores)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--bos", args->bos, "Prepend one BOS token to the texts");
  add_backend_flag(cmd, args->backend);
  cmd->add_flag("--json", args->json,
                "Print one JSON object: {\"methods\":[{\"name\",\"kl\",\"top1\",\"ppl\",...}], "
                "settings...}");
  cmd->callback([args] { run_compare_cmd(*args); });
}

}  // namespace mxlens::cli
