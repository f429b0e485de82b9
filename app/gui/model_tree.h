#pragma once
// ModelTree (gui.md "Left dock"): the layers of the open model, each with its four linear input
// sites (qkv, o, gu, down), and per site a small badge of what the session's method does to it:
// the mean E8M0 exponent spread across the blocks of a token, before → after (from the
// sampled rows), or the site's SQNR before → after when no rows were sampled. Green when the
// method narrowed the spread (raised the SQNR), red when it widened it (lowered it).
//
// Selecting a site emits siteSelected; the main window passes it on to every observer.
#include <QColor>
#include <QString>
#include <QTreeWidget>
#include <memory>
#include <optional>
#include <utility>

#include "app/gui/session_observer.h"
#include "core/model/site_taps.h"

namespace mxlens::gui {

class ModelTree : public QTreeWidget, public SessionObserver {
  Q_OBJECT
 public:
  static constexpr int kBadgeColumn = 1;

  explicit ModelTree(QWidget* parent = nullptr);

  void onModelOpened(const Checkpoint& checkpoint) override;
  void onModelClosed() override;
  void onSessionChanged(const std::shared_ptr<const Session>& session) override;

  int layerCount() const { return topLevelItemCount(); }
  // Selects the site's item (emits siteSelected); false when there is no such item.
  bool selectSite(int layer, Site site);
  std::optional<std::pair<int, Site>> selectedSite() const;
  QTreeWidgetItem* siteItem(int layer, Site site) const;

  // The badge as shown (text, colour) and the longer description (its tooltip); empty
  // without statistics for the site.
  QString badgeText(int layer, Site site) const;
  QColor badgeColor(int layer, Site site) const;
  // A few lines on one site of the session: sizes, tokens, spread, SQNR, the transform.
  QString siteDetails(int layer, Site site) const;

 signals:
  void siteSelected(int layer, int site);

 private:
  void build(int layers);
  void updateBadges();

  std::shared_ptr<const Session> session_;
};

}  // namespace mxlens::gui
