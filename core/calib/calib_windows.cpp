// Calibration windows (algorithm.md §7): the tail region of the text, seeded offsets inside it,
// and the evaluation windows that stay clear of it.
#include "core/calib/calib_windows.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "core/util/error.h"

namespace mxlens {

namespace {

// Uniform in [0, range) from a 64-bit engine without modulo bias: draws below 2^64 mod range
// are rejected, so the accepted draws are a whole number of copies of [0, range).
uint64_t uniform_below(std::mt19937_64& rng, uint64_t range) {
  const uint64_t reject_below = (0 - range) % range;  // 2^64 mod range
  for (;;) {
    const uint64_t r = rng();
    if (r >= reject_below) return r % range;
  }
}

void check_seqlen(int seqlen, const std::string& source) {
  if (seqlen < 1)
    throw Error(source, "window length must be at least 1 token, got " + std::to_string(seqlen));
}

}  // namespace

TokenRegion calibration_region(int64_t n_ids, const CalibWindowSpec& spec,
                               const std::string& source) {
  check_seqlen(spec.seqlen, source);
  if (!(spec.tail_fraction >= 0.0 && spec.tail_fraction <= 1.0))
    throw Error(source, "tail fraction must be in [0, 1] (0 or 1 = all ids), got " +
                            std::to_string(spec.tail_fraction));
  const int64_t needed = int64_t(spec.seqlen) + 1;
  if (n_ids < needed)
    throw Error(source, "the text has " + std::to_string(n_ids) +
                            " token ids, a calibration window of " + std::to_string(spec.seqlen) +
                            " tokens needs at least " + std::to_string(needed) +
                            "; lower --calib-seqlen (or give a longer text)");
  if (spec.tail_fraction == 0.0 || spec.tail_fraction == 1.0) return {0, n_ids};
  // ceil in double: n_ids up to ~10^8 is exact, and a product that lands a hair above an
  // integer only adds one id.
  int64_t tail = int64_t(std::ceil(spec.tail_fraction * double(n_ids)));
  tail = std::max(tail, needed);
  tail = std::min(tail, n_ids);
  return {n_ids - tail, n_ids};
}

std::vector<int64_t> draw_window_offsets(TokenRegion region, const CalibWindowSpec& spec) {
  const std::string source = "calibration windows";
  check_seqlen(spec.seqlen, source);
  if (spec.count < 0)
    throw Error(source, "window count must be at least 0, got " + std::to_string(spec.count));
  if (region.begin < 0 || region.end < region.begin)
    throw Error(source, "invalid token region [" + std::to_string(region.begin) + ", " +
                            std::to_string(region.end) + ")");
  const int64_t needed = int64_t(spec.seqlen) + 1;
  if (region.size() < needed)
    throw Error(source, "the calibration region has " + std::to_string(region.size()) +
                            " token ids, a window of " + std::to_string(spec.seqlen) +
                            " tokens needs at least " + std::to_string(needed) +
                            "; lower --calib-seqlen or raise --calib-tail");
  // Offsets in [begin, end − seqlen − 1], both inclusive (randint(0, N − L − 1)).
  const uint64_t range = uint64_t(region.end - spec.seqlen - 1 - region.begin) + 1;
  std::mt19937_64 rng(spec.seed);
  std::vector<int64_t> offsets(size_t(spec.count));
  for (auto& o : offsets) o = region.begin + int64_t(uniform_below(rng, range));
  return offsets;
}

int64_t eval_windows_before(TokenRegion region, int seqlen) {
  check_seqlen(seqlen, "evaluation windows");
  return region.begin <= 0 ? 0 : region.begin / seqlen;
}

WindowsBeforeRegion limit_to_windows_before(TokenRegion region, int seqlen, int64_t windows,
                                            const std::string& eval_source) {
  const std::string ids =
      "ids [" + std::to_string(region.begin) + ", " + std::to_string(region.end) + ")";
  const int64_t before = eval_windows_before(region, seqlen);
  if (before < 1)
    throw Error(eval_source, "calibration draws from " + ids +
                                 " of this same text and no evaluation window of " +
                                 std::to_string(seqlen) +
                                 " tokens ends before them: use a longer text, a shorter window, "
                                 "a smaller calibration tail or another calibration text");
  WindowsBeforeRegion r;
  r.windows = std::min(windows, before);
  r.note = "calibration drew from " + ids + " of the same text; evaluation used only the " +
           std::to_string(r.windows) + " windows of " + std::to_string(seqlen) +
           " tokens before them";
  return r;
}

}  // namespace mxlens
