// mxlens-cli eval: FP32 perplexity of a checkpoint on a text file (algorithm.md §8).
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "app/cli/commands.h"
#include "core/eval/perplexity.h"
#include "core/model/checkpoint.h"
#include "core/text/tokenizer.h"
#include "core/util/error.h"

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
};

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const long t = std::lround(s);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

// One line on stderr, redrawn per window: bar, windows done, running PPL, ETA.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled), start_(clock::now()) {}
  void update(const WindowResult& w) {
    if (!enabled_) return;
    const double done = double(w.window + 1) / double(w.windows);
    const double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
    const double eta = elapsed / done * (1 - done);
    constexpr int kWidth = 30;
    const int filled = int(done * kWidth);
    std::string bar(size_t(filled), '=');
    if (filled < kWidth) bar += '>' + std::string(size_t(kWidth - filled - 1), ' ');
    std::fprintf(stderr, "\r[%s] %lld/%lld windows  ppl %.4f  ETA %s ", bar.c_str(),
                 static_cast<long long>(w.window + 1), static_cast<long long>(w.windows),
                 w.running_ppl, format_duration(eta).c_str());
    std::fflush(stderr);
  }
  void finish() {
    if (enabled_) std::fprintf(stderr, "\n");
  }

 private:
  using clock = std::chrono::steady_clock;
  bool enabled_;
  clock::time_point start_;
};

void run_eval(const EvalArgs& a) {
  const Checkpoint ckpt = Checkpoint::open(a.model_dir);
  const auto tokenizer_json = ckpt.tokenizer_json();
  if (!tokenizer_json)
    throw Error(a.model_dir,
                "has no tokenizer.json; eval needs the model's tokenizer to read --data");
  check_seqlen(ckpt.config(), a.seqlen);  // before the (slower) tokenization
  const Tokenizer tokenizer = Tokenizer::load(*tokenizer_json);
  const LlamaWeights weights(ckpt);
  const std::vector<int32_t> ids = tokenize_text_file(tokenizer, a.data, a.bos);

  PerplexityOptions opt;
  opt.seqlen = a.seqlen;
  opt.max_windows = a.windows;
  opt.forward.threads = a.threads;
  opt.source = a.data;
  ProgressBar bar(isatty(STDERR_FILENO) == 1);
  Progress progress;
  const PerplexityResult r = evaluate_perplexity(weights, ids, opt, progress,
                                                 [&](const WindowResult& w) { bar.update(w); });
  bar.finish();

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
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  const int64_t all_windows = perplexity_window_count(r.tokens_total, r.seqlen);
  const int64_t dropped = r.tokens_total - all_windows * r.seqlen;
  std::printf("model          %s\n", a.model_dir.c_str());
  std::printf("data           %s (%lld tokens%s)\n", a.data.c_str(),
              static_cast<long long>(r.tokens_total), a.bos ? ", BOS prepended" : "");
  std::printf("windows        %lld x %d tokens (%lld in the text, tail of %lld tokens dropped)\n",
              static_cast<long long>(r.windows), r.seqlen, static_cast<long long>(all_windows),
              static_cast<long long>(dropped));
  std::printf("PPL            %.4f +/- %.4f  [%.4f, %.4f]\n", r.ppl, (r.ppl_high - r.ppl_low) / 2,
              r.ppl_low, r.ppl_high);
  std::printf("NLL            %.6f +/- %.6f nats/token\n", r.nll_mean, r.nll_stderr);
  std::printf("tokens scored  %lld\n", static_cast<long long>(r.tokens_scored));
  std::printf("speed          %.1f tokens/s (threads %d, %.2f s)\n", r.tokens_per_s, a.threads,
              r.seconds);
}

}  // namespace

void register_eval(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand(
      "eval",
      "FP32 perplexity of a checkpoint on a text file: non-overlapping windows of --seqlen tokens, "
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
  cmd->callback([args] { run_eval(*args); });
}

}  // namespace mxlens::cli
