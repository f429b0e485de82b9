// mxlens-cli export: a calibrated model (checkpoint + session) in a format serving stacks load
// (core/export/export.h): fp_quant for transformers' FP-Quant (W4A4 with the learned
// rotations), gguf for llama.cpp (weights only).
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "app/cli/cli_progress.h"
#include "app/cli/commands.h"
#include "core/export/export.h"
#include "core/io/session_file.h"
#include "core/model/checkpoint.h"
#include "core/util/error.h"

namespace mxlens::cli {

namespace {

struct ExportArgs {
  std::string model_dir;
  std::string session;
  std::string format = "fp_quant";
  std::string out;
  bool force = false;
  bool dry_run = false;
  bool json = false;
  int threads = 1;
  double max_shard_gb = 5.0;
};

std::string mb(uint64_t b) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f MB", double(b) / 1e6);
  return buf;
}

void run_export(const ExportArgs& a) {
  const Checkpoint ckpt = Checkpoint::open(a.model_dir);
  const Session session = load_session(a.session);
  ExportOptions opt;
  opt.format = parse_export_format(a.format);
  opt.force = a.force;
  opt.threads = a.threads;
  if (!(a.max_shard_gb > 0)) throw Error("--max-shard-gb", "must be positive");
  opt.max_shard_bytes = uint64_t(a.max_shard_gb * 1e9);

  if (a.dry_run) {
    const ExportPlan plan = plan_export(ckpt, session, a.session, a.out, opt);
    if (a.json) {
      std::printf("%s\n", nlohmann::json{{"out", a.out},
                                         {"format", to_string(opt.format)},
                                         {"bytes", plan.bytes},
                                         {"notes", plan.notes}}
                              .dump()
                              .c_str());
      return;
    }
    std::printf("would write    %s (%s, about %s)\n", a.out.c_str(),
                std::string(to_string(opt.format)).c_str(), mb(plan.bytes).c_str());
    for (const std::string& n : plan.notes) std::printf("note           %s\n", n.c_str());
    return;
  }

  ProgressLine bar;
  const Progress progress([&](double f, std::string_view stage) { bar.update(f, stage); });
  const ExportReport r = export_checkpoint(ckpt, session, a.session, a.out, opt, progress);
  bar.finish();
  if (a.json) {
    nlohmann::json files = nlohmann::json::array();
    for (const ExportedFile& f : r.files)
      files.push_back({{"path", f.path.string()}, {"bytes", f.bytes}});
    std::printf("%s\n", nlohmann::json{{"out", r.out.string()},
                                       {"format", to_string(r.format)},
                                       {"method", r.method},
                                       {"quantized_linears", r.quantized_linears},
                                       {"files", files},
                                       {"total_bytes", r.total_bytes()},
                                       {"notes", r.notes}}
                            .dump()
                            .c_str());
    return;
  }
  std::printf("exported       %s: %s (%s), %d quantized linears\n", r.out.string().c_str(),
              std::string(to_string(r.format)).c_str(), r.method.c_str(), r.quantized_linears);
  for (const ExportedFile& f : r.files)
    std::printf("  %12llu  %s\n", static_cast<unsigned long long>(f.bytes),
                f.path.filename().string().c_str());
  std::printf("total          %s\n", mb(r.total_bytes()).c_str());
  for (const std::string& n : r.notes) std::printf("note           %s\n", n.c_str());
  if (r.format == ExportFormat::gguf)
    std::printf(
        "weight-only    llama.cpp runs these MXFP4 weights with its own 8-bit "
        "activations: W4A4 numbers measured in mxlens do not carry over\n");
  else
    std::printf(
        "check          mxlens-cli eval %s --data <text> --seqlen <L> evaluates the "
        "export as stored\n",
        r.out.string().c_str());
}

}  // namespace

void register_export(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  auto* cmd = app.add_subcommand(
      "export",
      "Write a calibrated model (checkpoint + session) for a serving stack: fp_quant "
      "(transformers FP-Quant: MXFP4 weights, the learned per-linear rotations, W4A4 online) "
      "or gguf (llama.cpp MXFP4 weights only; methods without rotations). What a format "
      "cannot express is refused with the site named; what the runtime will do differently "
      "is printed as notes.");
  cmd->add_option("model", args->model_dir, "Checkpoint directory the session was made for")
      ->required();
  cmd->add_option("--session", args->session, "Session file (.h5) from mxlens-cli calibrate")
      ->required();
  cmd->add_option("--format", args->format, "fp_quant or gguf")->capture_default_str();
  cmd->add_option("--out", args->out, "Output directory (fp_quant) or .gguf file")->required();
  cmd->add_flag("--force", args->force, "Replace an existing output");
  cmd->add_flag("--dry-run", args->dry_run,
                "Run every check and print the size and notes without writing");
  cmd->add_flag("--json", args->json, "Print the result as one JSON object");
  cmd->add_option("--threads", args->threads, "Threads for transforming weights")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-shard-gb", args->max_shard_gb,
                  "fp_quant: shard model.safetensors above this size (GB)")
      ->capture_default_str();
  cmd->callback([args] { run_export(*args); });
}

}  // namespace mxlens::cli
