// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// check_plant (plant.h): both models over one window, logits compared chunk by chunk, and the
// per-channel absmax of the site inputs summarized over the planted and the other channels.
#include <algorithm>
#include <array>
#include <cmath>
#include <map>

#include "core/model/forward.h"
#include "core/model/llama_model.h"
#include "core/plant/plant.h"
#include "core/util/error.h"

namespace mxlens {

namespace {

// Per layer and site (qkv, gu, down), max |x| and Σx² of every channel over the window.
class ChannelTaps : public SiteTaps {
 public:
  explicit ChannelTaps(int layers) : absmax_(size_t(layers)), sumsq_(size_t(layers)) {}

  void on_activations(int layer, Site site, Eigen::Ref<RowMatrixXf> x) override {
    if (site == Site::O) return;
    std::vector<float>& m = absmax_[size_t(layer)][slot(site)];
    std::vector<double>& q = sumsq_[size_t(layer)][slot(site)];
    if (m.empty()) m.assign(size_t(x.cols()), 0.0f);
    if (q.empty()) q.assign(size_t(x.cols()), 0.0);
    for (int64_t r = 0; r < x.rows(); ++r)
      for (int64_t c = 0; c < x.cols(); ++c) {
        m[size_t(c)] = std::max(m[size_t(c)], std::abs(x(r, c)));
        q[size_t(c)] += double(x(r, c)) * double(x(r, c));
      }
    rows_[size_t(layer)][slot(site)] = x.rows();
  }

  const std::vector<float>& absmax(int layer, Site site) const {
    return absmax_[size_t(layer)][slot(site)];
  }
  std::vector<float> rms(int layer, Site site) const {
    const std::vector<double>& q = sumsq_[size_t(layer)][slot(site)];
    const double n = double(std::max<int64_t>(1, rows_.at(size_t(layer))[slot(site)]));
    std::vector<float> out(q.size());
    for (size_t c = 0; c < q.size(); ++c) out[c] = float(std::sqrt(q[c] / n));
    return out;
  }

 private:
  static size_t slot(Site site) { return site == Site::Qkv ? 0 : site == Site::GateUp ? 1 : 2; }
  std::vector<std::array<std::vector<float>, 3>> absmax_;
  std::vector<std::array<std::vector<double>, 3>> sumsq_;
  std::map<size_t, std::array<int64_t, 3>> rows_;
};

struct ChannelSummary {
  float planted_before = 0, planted_after = 0, planted_min_after = 0;
  float other_before = 0, other_after = 0;
  int planted_in_top_k_after = 0;
};

ChannelSummary summarize(const std::vector<float>& before, const std::vector<float>& after,
                         const std::vector<int>& planted) {
  ChannelSummary s;
  std::vector<char> is_planted(after.size(), 0);
  for (int c : planted) is_planted[size_t(c)] = 1;
  s.planted_min_after = planted.empty() ? 0.0f : INFINITY;
  for (size_t c = 0; c < after.size(); ++c) {
    if (is_planted[c]) {
      s.planted_before = std::max(s.planted_before, before[c]);
      s.planted_after = std::max(s.planted_after, after[c]);
      s.planted_min_after = std::min(s.planted_min_after, after[c]);
    } else {
      s.other_before = std::max(s.other_before, before[c]);
      s.other_after = std::max(s.other_after, after[c]);
    }
  }
  std::vector<size_t> order(after.size());
  for (size_t c = 0; c < order.size(); ++c) order[c] = c;
  const size_t k = std::min(planted.size(), order.size());
  std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(k), order.end(),
                    [&](size_t a, size_t b) { return after[a] > after[b]; });
  for (size_t i = 0; i < k; ++i) s.planted_in_top_k_after += is_planted[order[i]];
  return s;
}

PlantSiteStats site_stats(int layer, Site site, const ChannelTaps& before, const ChannelTaps& after,
                          const std::vector<int>& planted) {
  PlantSiteStats s;
  s.layer = layer;
  s.site = site;
  const ChannelSummary m =
      summarize(before.absmax(layer, site), after.absmax(layer, site), planted);
  s.planted_absmax_before = m.planted_before;
  s.planted_absmax_after = m.planted_after;
  s.planted_min_absmax_after = m.planted_min_after;
  s.other_absmax_before = m.other_before;
  s.other_absmax_after = m.other_after;
  s.planted_in_top_k_after = m.planted_in_top_k_after;
  const ChannelSummary r = summarize(before.rms(layer, site), after.rms(layer, site), planted);
  s.planted_rms_before = r.planted_before;
  s.planted_rms_after = r.planted_after;
  s.other_rms_before = r.other_before;
  s.other_rms_after = r.other_after;
  s.planted_in_top_k_rms_after = r.planted_in_top_k_after;
  return s;
}

}  // namespace

PlantCheck check_plant(const Checkpoint& original, const Checkpoint& planted,
                       std::span<const int32_t> tokens, const PlantRecord& record, int threads) {
  const LlamaConfig& a = original.config();
  const LlamaConfig& b = planted.config();
  if (a.hidden_size != b.hidden_size || a.intermediate_size != b.intermediate_size ||
      a.num_layers != b.num_layers || a.vocab_size != b.vocab_size || a.num_heads != b.num_heads ||
      a.num_kv_heads != b.num_kv_heads)
    throw Error(planted.dir().string(), "has a different shape than " + original.dir().string());
  if (tokens.empty()) throw Error("check tokens", "empty window");
  if (int64_t(tokens.size()) > a.max_position_embeddings)
    throw Error("check tokens", "window of " + std::to_string(tokens.size()) +
                                    " tokens exceeds max_position_embeddings (" +
                                    std::to_string(a.max_position_embeddings) + ")");
  for (int c : record.hidden_channels)
    if (c < 0 || c >= a.hidden_size) throw Error("plant record", "channel outside hidden_size");
  for (int c : record.intermediate_channels)
    if (c < 0 || c >= a.intermediate_size)
      throw Error("plant record", "channel outside intermediate_size");

  const LlamaWeights wa(original), wb(planted);
  ForwardOptions opt;
  opt.threads = std::max(1, threads);
  LlamaForward fa(wa, opt), fb(wb, opt);
  ChannelTaps ta(a.num_layers), tb(a.num_layers);
  fa.hidden(tokens, &ta);
  fb.hidden(tokens, &tb);

  PlantCheck check;
  check.tokens = int64_t(tokens.size());
  RowMatrixXf ref;
  const int64_t rows = int64_t(tokens.size());
  const int64_t chunk = opt.logits_chunk_rows;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t r1 = std::min(rows, r0 + chunk);
    ref.resize(r1 - r0, a.vocab_size);
    fa.logits(
        [&](int64_t row, const Eigen::Ref<const RowMatrixXf>& l) {
          ref.middleRows(row - r0, l.rows()) = l;
          for (int64_t r = 0; r < l.rows(); ++r)
            for (int64_t c = 0; c < l.cols(); ++c)
              check.max_abs_logit = std::max(check.max_abs_logit, double(std::abs(l(r, c))));
        },
        r0, r1);
    fb.logits(
        [&](int64_t row, const Eigen::Ref<const RowMatrixXf>& l) {
          for (int64_t r = 0; r < l.rows(); ++r)
            for (int64_t c = 0; c < l.cols(); ++c)
              check.max_abs_logit_diff =
                  std::max(check.max_abs_logit_diff,
                           std::abs(double(l(r, c)) - double(ref(row - r0 + r, c))));
        },
        r0, r1);
  }

  for (int layer = 0; layer < a.num_layers; ++layer) {
    for (Site site : {Site::Qkv, Site::GateUp, Site::Down}) {
      const std::vector<int>& channels =
          site == Site::Down ? record.intermediate_channels : record.hidden_channels;
      if (channels.empty()) continue;
      check.sites.push_back(site_stats(layer, site, ta, tb, channels));
    }
  }
  return check;
}

}  // namespace mxlens
