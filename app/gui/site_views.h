#pragma once
// SiteViews: the observer that feeds the per-site views of the centre tabs — Outliers,
// Scales and Greedy search — from the current session and the selected site. It owns no
// data beyond the shared session and converts nothing the views do not need.
//
// Greedy search, Z: the session keeps the search's trace but not the tensor it searched on
// (§4.6: the mean calibration window as it arrived at the site in the partly quantized model).
// The closest thing it keeps is the site's sampled rows before the transform, from the
// statistics pass over the final model. So Z = those rows divided by the site's smoothing
// factors and passed through the transform's steps that come before the traced rotation
// (DuQuant's R₁ and zigzag for the R₂ trace), cut into blocks of the trace's size: the data the
// search saw in kind, not in value. The replayed matrices R_k are exact either way.
#include <Eigen/Core>
#include <QString>
#include <memory>
#include <optional>

#include "app/gui/session_observer.h"
#include "core/calib/method.h"
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
};

}  // namespace mxlens::gui
