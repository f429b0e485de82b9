#pragma once
// KL divergence of a test model's next-token distribution from a reference model's, per token
// (nats), and top-1 agreement — the quality figures that stay meaningful where perplexity is
// noise (algorithm.md §10b). A reference run's log-probabilities can be stored compactly
// (ReferenceLogProbs) so that later runs are compared against it without recomputing it.
#include <cstdint>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "core/model/site_taps.h"

namespace mxlens {

// log_softmax(logits) in fp32 with the log-sum-exp accumulated in double.
double log_sum_exp(std::span<const float> logits);

class ReferenceLogProbs {
 public:
  enum class Storage {
    Full32,  // every log-prob as float: exact, 4 bytes × vocab per token
    Full16,  // every log-prob as uint16 on a per-token linear scale [min, max]: 2 bytes × vocab
             // per token, absolute error ≤ (max - min) / 131070 nats (≈ 3e-4 for a range of 40)
    TopK,    // the k most probable ids with their log-probs, plus the mass of the rest:
             // KL against it is the KL of the (k+1)-bucket coarse distributions, a lower bound
  };

  ReferenceLogProbs(int vocab, Storage storage, int top_k = 0);

  // Appends one token's distribution, given its logits (vocab floats).
  void append(std::span<const float> logits);

  int vocab() const { return vocab_; }
  Storage storage() const { return storage_; }
  int top_k() const { return top_k_; }
  int64_t tokens() const { return tokens_; }
  uint64_t size_bytes() const;
  void clear();

  // Stored distribution of token i compared with `test_logits`.
  struct TokenComparison {
    double kl = 0;           // KL(P_ref ‖ P_test), nats
    bool same_top1 = false;  // argmax of both distributions agree
  };
  TokenComparison compare(int64_t token, std::span<const float> test_logits) const;

  // Reference argmax of token i.
  int32_t top1(int64_t token) const;

 private:
  int vocab_;
  Storage storage_;
  int top_k_;
  int64_t tokens_ = 0;
  std::vector<float> full32_;      // [tokens, vocab]
  std::vector<uint16_t> full16_;   // [tokens, vocab]
  std::vector<float> scale_;       // Full16: per token (min, step)
  std::vector<int32_t> top_ids_;   // TopK: [tokens, k], most probable first; Full*: argmax
  std::vector<float> top_logp_;    // TopK: [tokens, k]
  std::vector<double> rest_mass_;  // TopK: probability outside the top k, per token
};

struct KlSummary {
  int64_t tokens = 0;
  double mean = 0;         // mean KL per token, nats
  double mean_stderr = 0;  // standard error of the mean
  double median = 0;
  double p99 = 0;
  double p999 = 0;  // 99.9th percentile
  double max = 0;
  double top1_agreement = 0;  // fraction of tokens whose argmax agrees
};

// Accumulates per-token KL(P_ref ‖ P_test) and top-1 agreement.
class KlStats {
 public:
  // One token, both distributions as logits (same vocab).
  void add(std::span<const float> ref_logits, std::span<const float> test_logits);
  // Row i of `ref` against row i of `test` ([tokens, vocab] chunks of equal shape).
  void add_rows(const Eigen::Ref<const RowMatrixXf>& ref,
                const Eigen::Ref<const RowMatrixXf>& test);
  // Token `token` of a stored reference against `test_logits`.
  void add(const ReferenceLogProbs& ref, int64_t token, std::span<const float> test_logits);
  // Records one already computed value.
  void add_value(double kl, bool same_top1);

  int64_t count() const { return int64_t(values_.size()); }
  KlSummary summary() const;

 private:
  double sum_ = 0, sum_sq_ = 0;
  int64_t agree_ = 0;
  std::vector<float> values_;  // per token, for the quantiles
};

}  // namespace mxlens
