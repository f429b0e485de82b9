#pragma once
// Perplexity over non-overlapping windows (algorithm.md §8), streamed window by window.
//
// Protocol: the text file is read as is (no newline conversion) and tokenized once without
// special tokens; with `add_bos` one BOS is prepended to the whole id sequence (not per
// window; WikiText protocol default: off). n = floor(N / seqlen) windows, the tail is dropped.
// In each window positions 0..L-2 predict tokens 1..L-1 and every one of those L-1 targets is
// scored: NLL = log-sum-exp(logits) - logit[target], exp in fp32, sums in double.
// PPL = exp(mean NLL over all scored tokens) = exp(mean of the window means).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/eval/kl.h"
#include "core/model/forward.h"
#include "core/model/llama_model.h"
#include "core/util/progress.h"

namespace mxlens {

class Tokenizer;
class WindowModel;

struct PerplexityOptions {
  int seqlen = 2048;            // L, tokens per window; 2 ≤ L ≤ max_position_embeddings
  int64_t max_windows = 0;      // evaluate only the first K windows; 0 = all
  ForwardOptions forward;       // threads and chunk sizes
  std::string source = "text";  // names the ids' origin (the text file) in error messages
  // When set, this run's distributions at every scored position are appended to it (the
  // reference run of a later KL comparison).
  ReferenceLogProbs* record_reference = nullptr;
  // When set, KL(reference ‖ this run) is computed at every scored position; the reference
  // must have been recorded with the same ids, seqlen and windows.
  const ReferenceLogProbs* kl_reference = nullptr;
};

struct WindowResult {
  int64_t window = 0;      // 0-based
  int64_t windows = 0;     // total in this run
  double nll_mean = 0;     // mean NLL of this window's L-1 targets, nats
  double ppl = 0;          // exp(nll_mean)
  double running_ppl = 0;  // PPL over windows 0..window
  double seconds = 0;      // wall time of this window (forward + scoring)
};

struct PerplexityResult {
  int seqlen = 0;
  int64_t tokens_total = 0;  // ids in the text (BOS included when added)
  int64_t windows = 0;
  int64_t tokens_scored = 0;  // windows · (seqlen − 1)
  double nll_mean = 0;        // nats per scored token
  double nll_stderr = 0;      // standard error of nll_mean over scored tokens (tokens treated
                              // as independent, as llama.cpp does; a lower bound)
  double ppl = 0;             // exp(nll_mean)
  double ppl_low = 0, ppl_high = 0;  // exp(nll_mean ∓ nll_stderr)
  double seconds = 0;                // wall time of all windows
  double tokens_per_s = 0;  // tokens_scored / seconds: positions run through the model (the
                            // last token of a window is only a target and is not run)
  std::vector<double> window_nll;
  std::vector<double> window_ppl;
  std::optional<KlSummary> kl;  // when options.kl_reference was given
  std::string backend;          // WindowModel::backend_name() of the model evaluated ("cpu")
};

using WindowFn = std::function<void(const WindowResult&)>;

// Number of windows: floor(n_tokens / seqlen).
int64_t perplexity_window_count(int64_t n_tokens, int seqlen);

// Checks seqlen against the model (Error naming --seqlen and the model's limit).
void check_seqlen(const LlamaConfig& cfg, int seqlen);

// Reads `text_file` (read_text_file: Error on empty or non-UTF-8), tokenizes it once without
// special tokens and, with `add_bos`, prepends the tokenizer's BOS (Error if it has none).
std::vector<int32_t> tokenize_text_file(const Tokenizer& tokenizer,
                                        const std::filesystem::path& text_file, bool add_bos);

// Evaluates `ids` window by window. Reports progress after each window and checks cancel
// between windows (throws Cancelled); `on_window` (may be empty) sees every window's result
// as soon as it is done. Throws Error if seqlen is out of range or ids hold less than one
// window.
PerplexityResult evaluate_perplexity(const LlamaWeights& weights, std::span<const int32_t> ids,
                                     const PerplexityOptions& options, Progress& progress,
                                     const WindowFn& on_window = {}, SiteTaps* taps = nullptr);

// The same through any backend's model (core/backend/window_model.h): the model runs each
// window, scoring stays here. options.forward.threads (and parallel_min_macs) set the scoring
// threads only; the model was built with its own options. The overload above is this one
// with a CpuWindowModel(weights, options.forward, taps).
PerplexityResult evaluate_perplexity(WindowModel& model, std::span<const int32_t> ids,
                                     const PerplexityOptions& options, Progress& progress,
                                     const WindowFn& on_window = {});

}  // namespace mxlens
