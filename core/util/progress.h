#pragma once
// Progress and cancellation travel as an explicit argument (design.md), never as globals.
#include <atomic>
#include <functional>
#include <string_view>

#include "core/util/error.h"

namespace mxlens {

class Progress {
 public:
  // fraction in [0,1]; stage is a short label ("window 3/40").
  using Callback = std::function<void(double fraction, std::string_view stage)>;

  Progress() = default;
  explicit Progress(Callback cb, std::atomic<bool>* cancel_flag = nullptr)
      : callback_(std::move(cb)), cancel_(cancel_flag) {}

  void report(double fraction, std::string_view stage = {}) const {
    if (callback_) callback_(fraction, stage);
  }
  bool cancelled() const { return cancel_ && cancel_->load(std::memory_order_relaxed); }
  // Call between units of work (windows, layers, steps).
  void check_cancel() const {
    if (cancelled()) throw Cancelled();
  }

 private:
  Callback callback_;
  std::atomic<bool>* cancel_ = nullptr;
};

}  // namespace mxlens
