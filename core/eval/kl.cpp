// GCC 12 reports a false -Wmaybe-uninitialized inside its own AVX-512 intrinsics when
// Eigen's vectorized exp is inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "core/eval/kl.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/util/error.h"

namespace mxlens {

namespace {

int32_t argmax(std::span<const float> x) {
  return int32_t(std::max_element(x.begin(), x.end()) - x.begin());
}

void check_vocab(size_t got, int want) {
  if (got != size_t(want))
    throw Error("KL", "logits row has " + std::to_string(got) + " entries, expected vocab " +
                          std::to_string(want));
}

// KL(P ‖ Q) from log-probs of P (normalized) and logits of Q.
double kl_from_logprobs(std::span<const float> ref_logp, double ref_lse,
                        std::span<const float> test_logits) {
  const double test_lse = log_sum_exp(test_logits);
  double kl = 0;
  for (size_t i = 0; i < ref_logp.size(); ++i) {
    const double lp = double(ref_logp[i]) - ref_lse;
    const double lq = double(test_logits[i]) - test_lse;
    kl += std::exp(lp) * (lp - lq);
  }
  return std::max(kl, 0.0);  // rounding can give -1e-17 for identical rows
}

double quantile(std::vector<float>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = q * double(sorted.size() - 1);
  const size_t lo = size_t(std::floor(pos)), hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - double(lo)) * (double(sorted[hi]) - sorted[lo]);
}

}  // namespace

double log_sum_exp(std::span<const float> logits) {
  if (logits.empty()) return -INFINITY;
  const Eigen::Map<const Eigen::ArrayXf> x(logits.data(), Eigen::Index(logits.size()));
  const float mx = x.maxCoeff();
  // exp in fp32 (vectorized), sum in double.
  double s = 0;
  constexpr Eigen::Index kBlock = 1024;
  for (Eigen::Index i = 0; i < x.size(); i += kBlock) {
    const Eigen::Index n = std::min(kBlock, x.size() - i);
    s += double((x.segment(i, n) - mx).exp().template cast<double>().sum());
  }
  return double(mx) + std::log(s);
}

ReferenceLogProbs::ReferenceLogProbs(int vocab, Storage storage, int top_k)
    : vocab_(vocab), storage_(storage), top_k_(storage == Storage::TopK ? top_k : 0) {
  if (vocab < 1) throw Error("reference log-probs", "vocab must be positive");
  if (storage == Storage::TopK && (top_k < 1 || top_k > vocab))
    throw Error("--kl-top-k", "must be in [1, vocab]");
}

void ReferenceLogProbs::clear() {
  tokens_ = 0;
  full32_.clear();
  full16_.clear();
  scale_.clear();
  top_ids_.clear();
  top_logp_.clear();
  rest_mass_.clear();
}

uint64_t ReferenceLogProbs::size_bytes() const {
  return full32_.size() * sizeof(float) + full16_.size() * sizeof(uint16_t) +
         scale_.size() * sizeof(float) + top_ids_.size() * sizeof(int32_t) +
         top_logp_.size() * sizeof(float) + rest_mass_.size() * sizeof(double);
}

void ReferenceLogProbs::append(std::span<const float> logits) {
  check_vocab(logits.size(), vocab_);
  const double lse = log_sum_exp(logits);
  switch (storage_) {
    case Storage::Full32:
      for (float x : logits) full32_.push_back(float(double(x) - lse));
      top_ids_.push_back(argmax(logits));
      break;
    case Storage::Full16: {
      const auto [mn, mx] = std::minmax_element(logits.begin(), logits.end());
      const double lo = double(*mn) - lse, hi = double(*mx) - lse;
      const double step = hi > lo ? (hi - lo) / 65535.0 : 1.0;
      scale_.push_back(float(lo));
      scale_.push_back(float(step));
      const double lo_f = double(float(lo)), step_f = double(float(step));
      for (float x : logits) {
        const double code = std::round((double(x) - lse - lo_f) / step_f);
        full16_.push_back(uint16_t(std::clamp(code, 0.0, 65535.0)));
      }
      top_ids_.push_back(argmax(logits));
      break;
    }
    case Storage::TopK: {
      std::vector<int32_t> ids(logits.size());
      std::iota(ids.begin(), ids.end(), 0);
      std::partial_sort(ids.begin(), ids.begin() + top_k_, ids.end(), [&](int32_t a, int32_t b) {
        return logits[size_t(a)] > logits[size_t(b)] ||
               (logits[size_t(a)] == logits[size_t(b)] && a < b);
      });
      for (int i = 0; i < top_k_; ++i) {
        top_ids_.push_back(ids[size_t(i)]);
        top_logp_.push_back(float(double(logits[size_t(ids[size_t(i)])]) - lse));
      }
      double rest = 0;
      for (size_t i = size_t(top_k_); i < ids.size(); ++i)
        rest += std::exp(double(logits[size_t(ids[i])]) - lse);
      rest_mass_.push_back(rest);
      break;
    }
  }
  ++tokens_;
}

int32_t ReferenceLogProbs::top1(int64_t token) const {
  if (token < 0 || token >= tokens_) throw Error("reference log-probs", "token out of range");
  return top_ids_[size_t(token) * size_t(storage_ == Storage::TopK ? top_k_ : 1)];
}

ReferenceLogProbs::TokenComparison ReferenceLogProbs::compare(
    int64_t token, std::span<const float> test_logits) const {
  check_vocab(test_logits.size(), vocab_);
  if (token < 0 || token >= tokens_)
    throw Error("reference log-probs", "token " + std::to_string(token) + " not recorded (have " +
                                           std::to_string(tokens_) + ")");
  TokenComparison r;
  r.same_top1 = top1(token) == argmax(test_logits);
  const size_t V = size_t(vocab_);
  switch (storage_) {
    case Storage::Full32: {
      std::span<const float> lp(full32_.data() + size_t(token) * V, V);
      // Renormalize: float log-probs sum to 1 only to float precision.
      r.kl = kl_from_logprobs(lp, log_sum_exp(lp), test_logits);
      break;
    }
    case Storage::Full16: {
      const double lo = scale_[size_t(token) * 2], step = scale_[size_t(token) * 2 + 1];
      std::vector<float> lp(V);
      const uint16_t* codes = full16_.data() + size_t(token) * V;
      for (size_t i = 0; i < V; ++i) lp[i] = float(lo + step * codes[i]);
      // Renormalize: the decoded log-probs sum to 1 only up to the code rounding.
      r.kl = kl_from_logprobs(lp, log_sum_exp(lp), test_logits);
      break;
    }
    case Storage::TopK: {
      const double test_lse = log_sum_exp(test_logits);
      const size_t k = size_t(top_k_), first = size_t(token) * k;
      // Renormalize the stored (float) top log-probs together with the rest mass.
      double z = rest_mass_[size_t(token)];
      for (size_t i = 0; i < k; ++i) z += std::exp(double(top_logp_[first + i]));
      const double log_z = std::log(z);
      std::vector<char> in_top(V, 0);
      double kl = 0;
      for (size_t i = 0; i < k; ++i) {
        const size_t id = size_t(top_ids_[first + i]);
        in_top[id] = 1;
        const double lp = double(top_logp_[first + i]) - log_z;
        const double lq = double(test_logits[id]) - test_lse;
        kl += std::exp(lp) * (lp - lq);
      }
      // The rest bucket, summed directly (1 − Σ top would cancel when the top holds ~all mass).
      const double p_rest = rest_mass_[size_t(token)] / z;
      if (p_rest > 0) {
        double q_rest = 0;
        for (size_t i = 0; i < V; ++i)
          if (!in_top[i]) q_rest += std::exp(double(test_logits[i]) - test_lse);
        kl += p_rest * (std::log(p_rest) - std::log(std::max(q_rest, 1e-300)));
      }
      r.kl = std::max(kl, 0.0);
      break;
    }
  }
  return r;
}

void KlStats::add_value(double kl, bool same_top1) {
  sum_ += kl;
  sum_sq_ += kl * kl;
  agree_ += same_top1 ? 1 : 0;
  values_.push_back(float(kl));
}

void KlStats::add(std::span<const float> ref_logits, std::span<const float> test_logits) {
  if (ref_logits.size() != test_logits.size() || ref_logits.empty())
    throw Error("KL", "reference and test logits rows differ in size");
  const double kl = kl_from_logprobs(ref_logits, log_sum_exp(ref_logits), test_logits);
  add_value(kl, argmax(ref_logits) == argmax(test_logits));
}

void KlStats::add_rows(const Eigen::Ref<const RowMatrixXf>& ref,
                       const Eigen::Ref<const RowMatrixXf>& test) {
  if (ref.rows() != test.rows() || ref.cols() != test.cols())
    throw Error("KL", "reference and test logits chunks differ in shape");
  for (Eigen::Index i = 0; i < ref.rows(); ++i)
    add(std::span<const float>(ref.row(i).data(), size_t(ref.cols())),
        std::span<const float>(test.row(i).data(), size_t(test.cols())));
}

void KlStats::add(const ReferenceLogProbs& ref, int64_t token, std::span<const float> test_logits) {
  const auto c = ref.compare(token, test_logits);
  add_value(c.kl, c.same_top1);
}

KlSummary KlStats::summary() const {
  KlSummary s;
  s.tokens = count();
  if (s.tokens == 0) return s;
  const double n = double(s.tokens);
  s.mean = sum_ / n;
  if (s.tokens > 1)
    s.mean_stderr = std::sqrt(std::max(0.0, (sum_sq_ / n - s.mean * s.mean)) * n / (n - 1) / n);
  s.top1_agreement = double(agree_) / n;
  std::vector<float> sorted = values_;
  std::sort(sorted.begin(), sorted.end());
  s.median = quantile(sorted, 0.5);
  s.p99 = quantile(sorted, 0.99);
  s.p999 = quantile(sorted, 0.999);
  s.max = sorted.back();
  return s;
}

}  // namespace mxlens
