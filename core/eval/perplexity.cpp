#include "core/eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "core/backend/window_model.h"
#include "core/text/tokenizer.h"
#include "core/text/utf8.h"
#include "core/util/error.h"

namespace mxlens {

int64_t perplexity_window_count(int64_t n_tokens, int seqlen) {
  if (seqlen < 1 || n_tokens < 0) return 0;
  return n_tokens / seqlen;
}

void check_seqlen(const LlamaConfig& cfg, int seqlen) {
  if (seqlen < 2)
    throw Error("--seqlen", std::to_string(seqlen) +
                                " is too short: a window needs at least 2 tokens (one context, "
                                "one target)");
  if (seqlen > cfg.max_position_embeddings)
    throw Error("--seqlen", std::to_string(seqlen) + " exceeds the model's context of " +
                                std::to_string(cfg.max_position_embeddings) +
                                " tokens (max_position_embeddings)");
}

std::vector<int32_t> tokenize_text_file(const Tokenizer& tokenizer,
                                        const std::filesystem::path& text_file, bool add_bos) {
  const std::string text = read_text_file(text_file);
  std::vector<int32_t> ids = tokenizer.encode(text, /*add_special_tokens=*/false);
  if (add_bos) {
    const auto bos = tokenizer.bos_id();
    if (!bos)
      throw Error(tokenizer.source().string(),
                  "--bos was given but the tokenizer's post-processor adds no BOS token");
    ids.insert(ids.begin(), *bos);
  }
  return ids;
}

PerplexityResult evaluate_perplexity(const LlamaWeights& weights, std::span<const int32_t> ids,
                                     const PerplexityOptions& opt, Progress& progress,
                                     const WindowFn& on_window, SiteTaps* taps) {
  check_seqlen(weights.config(), opt.seqlen);
  CpuWindowModel model(weights, opt.forward, taps);
  return evaluate_perplexity(model, ids, opt, progress, on_window);
}

PerplexityResult evaluate_perplexity(WindowModel& model, std::span<const int32_t> ids,
                                     const PerplexityOptions& opt, Progress& progress,
                                     const WindowFn& on_window) {
  const LlamaConfig& cfg = model.config();
  const int L = opt.seqlen;
  check_seqlen(cfg, L);
  int64_t windows = perplexity_window_count(int64_t(ids.size()), L);
  if (windows < 1)
    throw Error(opt.source, "has " + std::to_string(ids.size()) +
                                " tokens, fewer than one window of --seqlen " + std::to_string(L));
  if (opt.max_windows > 0) windows = std::min(windows, opt.max_windows);
  const int64_t targets_per_window = L - 1;
  if (opt.kl_reference && opt.kl_reference->tokens() != windows * targets_per_window)
    throw Error("KL reference", "holds " + std::to_string(opt.kl_reference->tokens()) +
                                    " token distributions but this run scores " +
                                    std::to_string(windows * targets_per_window) +
                                    " (recorded with other text, --seqlen or --windows?)");
  if (opt.kl_reference && opt.kl_reference->vocab() != cfg.vocab_size)
    throw Error("KL reference", "was recorded with another vocabulary size");

  PerplexityResult r;
  r.seqlen = L;
  r.tokens_total = int64_t(ids.size());
  r.windows = windows;
  r.backend = model.backend_name();
  KlStats kl;
  double sum = 0, sum_sq = 0;
  std::vector<double> row_nll(static_cast<size_t>(targets_per_window));
  std::vector<ReferenceLogProbs::TokenComparison> row_kl;
  const auto t_start = std::chrono::steady_clock::now();

  for (int64_t w = 0; w < windows; ++w) {
    progress.check_cancel();
    const auto t0 = std::chrono::steady_clock::now();
    const std::span<const int32_t> window = ids.subspan(size_t(w * L), size_t(L));
    // Positions 0..L-2 predict tokens 1..L-1; the last token is only a target. A backend
    // hands the rows in order, each once: the reference and KL index tokens by arrival.
    int64_t next_row = 0;
    model.run(window.first(size_t(L - 1)), [&](int64_t r0,
                                               const Eigen::Ref<const RowMatrixXf>& logits) {
      const Eigen::Index rows = logits.rows();
      if (r0 != next_row || rows < 1 || r0 + rows > targets_per_window ||
          logits.cols() != cfg.vocab_size)
        throw Error(model.backend_name() + " backend",
                    "handed logits rows [" + std::to_string(r0) + ", " + std::to_string(r0 + rows) +
                        ") x " + std::to_string(logits.cols()) + " where rows from " +
                        std::to_string(next_row) + " x " + std::to_string(cfg.vocab_size) +
                        " were due (internal error)");
      next_row = r0 + rows;
      const size_t V = size_t(logits.cols());
      auto row = [&](Eigen::Index i) { return std::span<const float>(logits.row(i).data(), V); };
      const int64_t first_token = w * targets_per_window + r0;
      if (opt.kl_reference) row_kl.resize(size_t(rows));
      // One exp per logit (plus a vocab-long KL pass with a reference): worth threads only
      // for large chunks (see ForwardOptions::parallel_min_macs).
      const bool parallel = double(rows) * double(V) * (opt.kl_reference ? 4 : 1) >=
                            opt.forward.parallel_min_macs / 16;
#pragma omp parallel for num_threads(opt.forward.threads) schedule(static) if (parallel)
      for (Eigen::Index i = 0; i < rows; ++i) {
        const int32_t target = window[size_t(r0 + i + 1)];
        row_nll[size_t(r0 + i)] = log_sum_exp(row(i)) - double(logits(i, target));
        if (opt.kl_reference)
          row_kl[size_t(i)] = opt.kl_reference->compare(first_token + i, row(i));
      }
      for (Eigen::Index i = 0; i < rows; ++i) {
        if (opt.record_reference) opt.record_reference->append(row(i));
        if (opt.kl_reference) kl.add_value(row_kl[size_t(i)].kl, row_kl[size_t(i)].same_top1);
      }
    });
    if (next_row != targets_per_window)
      throw Error(model.backend_name() + " backend",
                  "handed logits of " + std::to_string(next_row) + " positions, the window has " +
                      std::to_string(targets_per_window) + " (internal error)");
    double window_sum = 0;
    for (double x : row_nll) {
      window_sum += x;
      sum_sq += x * x;
    }
    sum += window_sum;
    const double nll = window_sum / double(targets_per_window);
    r.window_nll.push_back(nll);
    r.window_ppl.push_back(std::exp(nll));

    WindowResult wr;
    wr.window = w;
    wr.windows = windows;
    wr.nll_mean = nll;
    wr.ppl = std::exp(nll);
    wr.running_ppl = std::exp(sum / double((w + 1) * targets_per_window));
    wr.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (on_window) on_window(wr);
    progress.report(double(w + 1) / double(windows),
                    "window " + std::to_string(w + 1) + "/" + std::to_string(windows));
  }

  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  r.tokens_scored = windows * targets_per_window;
  const double n = double(r.tokens_scored);
  r.nll_mean = sum / n;
  if (r.tokens_scored > 1)
    r.nll_stderr = std::sqrt(std::max(0.0, sum_sq / n - r.nll_mean * r.nll_mean) / (n - 1));
  r.ppl = std::exp(r.nll_mean);
  r.ppl_low = std::exp(r.nll_mean - r.nll_stderr);
  r.ppl_high = std::exp(r.nll_mean + r.nll_stderr);
  r.tokens_per_s = r.seconds > 0 ? n / r.seconds : 0;
  if (opt.kl_reference) r.kl = kl.summary();
  return r;
}

}  // namespace mxlens
