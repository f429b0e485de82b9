// mxlens-cli eval: perplexity of a checkpoint on a text file (algorithm.md §8), FP32 or the
// fake-quantized model of a calibration session.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "app/cli/backend_flag.h"
#include "app/cli/cli_progress.h"
#include "app/cli/commands.h"
#include "core/backend/window_model.h"
#include "core/calib/calib_windows.h"
#include "core/calib/session.h"
#include "core/eval/perplexity.h"
#include "core/io/model_fingerprint.h"
#include "core/io/session_file.h"
#include "core/model/checkpoint.h"
#include "core/quant/fp_quant_plan.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"
#include "core/util/utc_time.h"

namespace mxlens::cli {

namespace {

struct EvalArgs {
  std::string model_dir;
  std::string data;
  int seqlen = 0;
  int64_t windows = 0;
  int threads = 0;
  bool bos = false;
  bool json = false;
  std::string session;  // evaluate the session's quantized model instead of FP
  bool kl = false;      // with --session: also KL and top-1 against FP (runs FP first)
  bool record = false;  // with --session: append the result to the session file
  std::string backend = "cpu";
};

void run_eval(const EvalArgs& a) {
  if (a.session.empty() && (a.kl || a.record))
    throw Error(a.kl ? "--kl" : "--record", "needs --session (FP against itself has KL 0)");
  const ChosenBackend backend = choose_backend(a.backend);
  const Checkpoint ckpt = Checkpoint::open(a.model_dir);
  const auto tokenizer_json = ckpt.tokenizer_json();
  if (!tokenizer_json)
    throw Error(a.model_dir,
                "has no tokenizer.json; eval needs the model's tokenizer to read --data");
  check_seqlen(ckpt.config(), a.seqlen);  // before the (slower) tokenization
  if (ckpt.fp_quant() && !a.session.empty())
    throw Error("--session", a.model_dir +
                                 " is an fp_quant checkpoint: its quantization is in its files; "
                                 "evaluate it without --session (or pass the original model)");
  std::optional<Session> session;
  if (!a.session.empty()) {
    session = load_session(a.session);
    check_session_model(*session, model_fingerprint(ckpt), a.session);
  }
  const Tokenizer tokenizer = Tokenizer::load(*tokenizer_json);
  const LlamaWeights weights(ckpt);
  const std::vector<int32_t> ids = tokenize_text_file(tokenizer, a.data, a.bos);

  PerplexityOptions opt;
  opt.seqlen = a.seqlen;
  opt.max_windows = a.windows;
  opt.forward.threads = a.threads;
  opt.source = a.data;
  std::string note;
  std::string data_sha;
  if (session) {
    data_sha = sha256_file(a.data);
    if (data_sha == session->data.text_sha256) {
      // The session calibrated on this text: score only the windows before its region.
      const int64_t all = perplexity_window_count(int64_t(ids.size()), a.seqlen);
      const WindowsBeforeRegion limited = limit_to_windows_before(
          session->data.region, a.seqlen, a.windows > 0 ? std::min(a.windows, all) : all, a.data);
      opt.max_windows = limited.windows;
      note = limited.note;
    }
  }
  ProgressLine bar;
  Progress progress;
  std::optional<ReferenceLogProbs> reference;
  std::optional<PerplexityResult> fp;
  if (session && a.kl) {
    reference.emplace(ckpt.config().vocab_size, ReferenceLogProbs::Storage::Full16);
    PerplexityOptions fp_opt = opt;
    fp_opt.record_reference = &*reference;
    const std::unique_ptr<WindowModel> fp_model = backend.factory(weights, nullptr, opt.forward);
    fp = evaluate_perplexity(*fp_model, ids, fp_opt, progress,
                             [&](const WindowResult& w) { bar.update(w); });
    bar.finish();
    opt.kl_reference = &*reference;
  }
  std::optional<QuantPlan> plan;
  std::string stored;  // an fp_quant checkpoint: what its files say is computed
  if (ckpt.fp_quant()) {
    // Its weights are stored rotated and quantized: only its own plan computes the model.
    plan.emplace(fp_quant_plan(ckpt));
    stored = describe_fp_quant_plan(ckpt, *plan);
  } else if (session) {
    plan.emplace(make_plan(*session, ckpt.config()));
  }
  const std::unique_ptr<WindowModel> model =
      backend.factory(weights, plan ? &*plan : nullptr, opt.forward);
  const std::string started = utc_now_iso8601();
  const PerplexityResult r = evaluate_perplexity(*model, ids, opt, progress,
                                                 [&](const WindowResult& w) { bar.update(w); });
  bar.finish();
  if (session && a.record) {
    session->provenance.backend = r.backend;
    EvalRecord rec = make_eval_record(a.data, data_sha, session->settings.method,
                                      session->settings.scheme, r, started);
    session->results.push_back(std::move(rec));
    save_session(*session, a.session);
  }

  if (a.json) {
    nlohmann::json j;
    j["model"] = a.model_dir;
    j["data"] = a.data;
    j["seqlen"] = r.seqlen;
    j["bos"] = a.bos;
    j["threads"] = a.threads;
    j["windows_limit"] = a.windows;
    j["tokens_total"] = r.tokens_total;
    j["windows"] = r.windows;
    j["tokens_scored"] = r.tokens_scored;
    j["ppl"] = r.ppl;
    j["ppl_low"] = r.ppl_low;
    j["ppl_high"] = r.ppl_high;
    j["nll_mean"] = r.nll_mean;
    j["nll_stderr"] = r.nll_stderr;
    j["seconds"] = r.seconds;
    j["tokens_per_s"] = r.tokens_per_s;
    j["window_nll"] = r.window_nll;
    j["window_ppl"] = r.window_ppl;
    if (!stored.empty()) j["fp_quant"] = stored;
    j["backend"] = r.backend;
    j["backend_requested"] = backend.requested;
    j["backend_note"] = backend.note;
    j["device"] = model->device_description();
    if (session) {
      j["session"] = a.session;
      j["method"] = method_name(session->settings.method);
      j["scheme"] = session->settings.scheme.describe();
      j["note"] = note;
      j["recorded"] = a.record;
    }
    if (fp) {
      j["fp_ppl"] = fp->ppl;
      j["delta_ppl"] = r.ppl - fp->ppl;
    }
    if (r.kl) {
      j["kl"] = r.kl->mean;
      j["kl_stderr"] = r.kl->mean_stderr;
      j["top1"] = r.kl->top1_agreement;
    }
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  const int64_t all_windows = perplexity_window_count(r.tokens_total, r.seqlen);
  const int64_t dropped = r.tokens_total - all_windows * r.seqlen;
  std::printf("model          %s\n", a.model_dir.c_str());
  if (!stored.empty()) std::printf("checkpoint     %s\n", stored.c_str());
  if (session) {
    std::printf("session        %s: %s, %s\n", a.session.c_str(),
                std::string(method_name(session->settings.method)).c_str(),
                session->settings.scheme.describe().c_str());
    if (!note.empty()) std::printf("note           %s\n", note.c_str());
  }
  std::printf("data           %s (%lld tokens%s)\n", a.data.c_str(),
              static_cast<long long>(r.tokens_total), a.bos ? ", BOS prepended" : "");
  std::printf("windows        %lld x %d tokens (%lld in the text, tail of %lld tokens dropped)\n",
              static_cast<long long>(r.windows), r.seqlen, static_cast<long long>(all_windows),
              static_cast<long long>(dropped));
  std::printf("PPL            %.4f +/- %.4f  [%.4f, %.4f]\n", r.ppl, (r.ppl_high - r.ppl_low) / 2,
              r.ppl_low, r.ppl_high);
  std::printf("NLL            %.6f +/- %.6f nats/token\n", r.nll_mean, r.nll_stderr);
  if (fp) std::printf("FP PPL         %.4f (dPPL %+.4f)\n", fp->ppl, r.ppl - fp->ppl);
  if (r.kl)
    std::printf("KL to FP       %.6f +/- %.6f nats/token, top-1 agreement %.2f%%\n", r.kl->mean,
                r.kl->mean_stderr, 100 * r.kl->top1_agreement);
  std::printf("tokens scored  %lld\n", static_cast<long long>(r.tokens_scored));
  if (session && a.record) std::printf("recorded in    %s\n", a.session.c_str());
  std::printf("speed          %.1f tokens/s (threads %d, %.2f s)\n", r.tokens_per_s, a.threads,
              r.seconds);
  const std::string device = model->device_description();
  std::printf("backend        %s%s%s%s\n", r.backend.c_str(), device.empty() ? "" : " (",
              device.c_str(), device.empty() ? "" : ")");
  if (!backend.note.empty() && device.empty())
    std::printf("backend note   %s\n", backend.note.c_str());
}

}  // namespace

void register_eval(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand(
      "eval",
      "Perplexity of a checkpoint (FP32, or W4A4 with --session) on a text file: non-overlapping "
      "windows of --seqlen tokens, "
      "tail dropped, every predicted position scored (WikiText-2 protocol). The text is read as "
      "is and tokenized once without special tokens; --bos prepends one BOS to the whole text "
      "(not per window).");
  cmd->add_option("model", args->model_dir,
                  "Checkpoint directory (config.json, *.safetensors, tokenizer.json)")
      ->required();
  cmd->add_option("--data", args->data, "UTF-8 text file, e.g. wikitext-2-raw/wiki.test.raw")
      ->required();
  cmd->add_option("--seqlen", args->seqlen, "Tokens per window (2 .. max_position_embeddings)")
      ->required();
  cmd->add_option("--windows", args->windows, "Evaluate only the first K windows (0 = all)")
      ->check(CLI::NonNegativeNumber);
  args->threads = int(std::max(1u, std::thread::hardware_concurrency()));
  cmd->add_option("--threads", args->threads, "Compute threads (default: all cores)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--bos", args->bos, "Prepend one BOS token to the whole text");
  cmd->add_flag("--json", args->json, "Print one JSON object instead of text");
  cmd->add_option("--session", args->session,
                  "Evaluate the W4A4 model of this calibration session (mxlens-cli calibrate); "
                  "if it calibrated on --data, only the windows before its region are scored");
  cmd->add_flag("--kl", args->kl,
                "With --session: run FP first and report KL(FP || quantized) and top-1 agreement");
  cmd->add_flag("--record", args->record,
                "With --session: append this result to the session file (saved atomically)");
  add_backend_flag(cmd, args->backend);
  cmd->callback([args] { run_eval(*args); });
}

}  // namespace mxlens::cli
