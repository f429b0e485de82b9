#pragma once
// Progress lines on stderr for long CLI commands (eval, calibrate, compare): one line redrawn in
// place with a bar, what runs, and an ETA; disabled when stderr is not a terminal.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>

#include "core/eval/perplexity.h"

namespace mxlens::cli {

inline std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const long t = std::lround(s);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

class ProgressLine {
 public:
  explicit ProgressLine(bool enabled = isatty(STDERR_FILENO) == 1)
      : enabled_(enabled), start_(clock::now()) {}
  ~ProgressLine() { finish(); }

  // `fraction` of the whole job done, `what` is running now.
  void update(double fraction, std::string_view what) {
    if (!enabled_) return;
    fraction = std::min(1.0, std::max(0.0, fraction));
    const double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
    const double eta = fraction > 0 ? elapsed / fraction * (1 - fraction) : -1;
    constexpr int kWidth = 30;
    const int filled = int(fraction * kWidth);
    std::string bar(size_t(filled), '=');
    if (filled < kWidth) bar += '>' + std::string(size_t(kWidth - filled - 1), ' ');
    std::fprintf(stderr, "\r\033[K[%s] %3d%%  %.*s  elapsed %s  ETA %s", bar.c_str(),
                 int(fraction * 100), int(std::min<size_t>(what.size(), 60)), what.data(),
                 format_duration(elapsed).c_str(), format_duration(eta).c_str());
    std::fflush(stderr);
    dirty_ = true;
  }
  // A perplexity window of a single evaluation.
  void update(const WindowResult& w) {
    char what[96];
    std::snprintf(what, sizeof what, "%lld/%lld windows  ppl %.4f",
                  static_cast<long long>(w.window + 1), static_cast<long long>(w.windows),
                  w.running_ppl);
    update(double(w.window + 1) / double(w.windows), what);
  }
  void finish() {
    if (enabled_ && dirty_) std::fprintf(stderr, "\n");
    dirty_ = false;
  }

 private:
  using clock = std::chrono::steady_clock;
  bool enabled_;
  bool dirty_ = false;
  clock::time_point start_;
};

}  // namespace mxlens::cli
