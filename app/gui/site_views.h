#pragma once
// SiteViews: the observer that feeds the per-site views of the centre tabs — Outliers,
// Scales and Greedy search — from the current session and the selected site. It owns no
// data beyond the shared session and converts nothing the views do not need.
//
// Greedy search, Z: core's search_input_blocks (the site's sampled rows with the smoothing the
// forward applies online, DuQuant's R₁·P for its second trace) — the data the search saw in
// kind, not in value (the search itself ran on the mean window of §4.6). The replayed
// matrices R_k are exact either way. When following the stepper, the Outliers and Scales views
// show site_stats_at_step(k): both sides from the sampled rows, "after" = Z·R_k.
#include <Eigen/Core>
#include <QString>
#include <memory>
#include <optional>

#include "app/gui/session_observer.h"
#include "core/calib/method.h"
#include "core/calib/site_stats.h"
#include "core/model/site_taps.h"

class QLabel;
class QStackedWidget;

namespace mxlens {
class GreedyView;
class OutliersView;
class ScalesView;
struct GreedyTrace;
struct Session;
}  // namespace mxlens

namespace mxlens::gui {

// "DuQuant++", "SmoothQuant", ...: how the window names a method (the CLI names are in
// method.h).
QString methodDisplayName(Method method);

class SiteViews : public SessionObserver {
 public:
  // The greedy view sits on page 0 of `greedy_stack`, `greedy_message` on page 1.
  SiteViews(OutliersView* outliers, ScalesView* scales, GreedyView* greedy,
            QStackedWidget* greedy_stack, QLabel* greedy_message);

  void onModelOpened(const Checkpoint& checkpoint) override;
  void onModelClosed() override;
  void onSessionChanged(const std::shared_ptr<const Session>& session) override;
  void onSiteSelected(int layer, Site site) override;

  // What the Greedy tab says instead of the replay; empty while it shows one.
  QString greedyMessage() const;
  // The trace shown and its Z (rows × n), for tests; null / empty without one.
  const GreedyTrace* shownTrace() const;
  const RowMatrixXf& shownBlocks() const { return blocks_; }

  // View ▸ Follow Greedy Stepper: Outliers and Scales show the state at the stepper's step.
  void setFollowStepper(bool follow);
  bool followsStepper() const { return follow_; }

 private:
  void show();
  void clearViews(const QString& why);

  OutliersView* outliers_;
  ScalesView* scales_;
  GreedyView* greedy_;
  QStackedWidget* greedy_stack_;
  QLabel* greedy_message_;
  std::shared_ptr<const Session> session_;
  std::optional<std::pair<int, Site>> site_;
  RowMatrixXf blocks_;
  bool follow_ = false;
  SiteStats followed_;  // what the linked views show (they keep no reference beyond a call)

  void onStep(int k);
};

}  // namespace mxlens::gui
