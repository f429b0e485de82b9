#pragma once
// Calibration windows (algorithm.md §7): `count` windows of `seqlen` consecutive token ids at
// seeded random offsets inside a region of the calibration text's ids.
//
// Only WikiText-2's test split is at hand, and evaluating on the windows one calibrated on
// would flatter every method. So by default the calibration region is the tail of the text
// (tail_fraction of its ids) and an evaluation of the same text stops before it: perplexity
// windows are [k·L, (k+1)·L), and only those ending at or before region.begin are used
// (eval_windows_before). Reports say so.
//
// Offsets: i uniform in [region.begin, region.end − seqlen − 1] (both ends inclusive, as the
// released code's randint(0, N − L − 1)), drawn from std::mt19937_64 seeded with `seed` and
// reduced without modulo bias. This is NOT Python's random.seed(2) + randint: the offsets differ
// from the released code's (algorithm.md §7 allows this when documented).
#include <cstdint>
#include <string>
#include <vector>

namespace mxlens {

// Token ids [begin, end) of a text.
struct TokenRegion {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const TokenRegion&) const = default;
};

struct CalibWindowSpec {
  int count = 128;    // N windows
  int seqlen = 2048;  // L tokens each (callers cap it by the model's context)
  uint64_t seed = 2;
  // Share of the ids, at the end of the text, that calibration draws from; 0 or 1 = all ids.
  double tail_fraction = 0.1;
};

// The region calibration draws from for a text of n_ids ids: the last
// ceil(tail_fraction · n_ids) ids, but at least seqlen + 1 of them. Throws Error(source, ...)
// when the text has fewer than seqlen + 1 ids, or tail_fraction is outside [0, 1].
TokenRegion calibration_region(int64_t n_ids, const CalibWindowSpec& spec,
                               const std::string& source = "calibration text");

// `spec.count` offsets (window k = ids[offsets[k], offsets[k] + seqlen)), all inside `region`.
// Same spec and region → same offsets. Throws Error when the region is shorter than seqlen + 1.
std::vector<int64_t> draw_window_offsets(TokenRegion region, const CalibWindowSpec& spec);

// Number of leading perplexity windows of length seqlen that end at or before region.begin
// (the evaluation windows disjoint from a tail calibration region).
int64_t eval_windows_before(TokenRegion region, int seqlen);

// Evaluation of the text calibration drew `region` from: how many windows to score (at most
// `windows`, the count otherwise chosen) and the sentence reports print about it. Throws
// Error(eval_source, ...) when no window of seqlen ends before the region.
struct WindowsBeforeRegion {
  int64_t windows = 0;
  std::string note;
};
WindowsBeforeRegion limit_to_windows_before(TokenRegion region, int seqlen, int64_t windows,
                                            const std::string& eval_source);

}  // namespace mxlens
