#include "app/gui/model_tree.h"

#include <QHeaderView>
#include <cmath>

#include "core/calib/session.h"
#include "core/model/checkpoint.h"

namespace mxlens::gui {

namespace {

constexpr int kLayerRole = Qt::UserRole;
constexpr int kSiteRole = Qt::UserRole + 1;  // -1 on layer items

const QColor kBetter(46, 125, 50);  // green: spread narrowed / SQNR raised
const QColor kWorse(198, 40, 40);   // red
const QColor kNeutral(128, 128, 128);

const SiteStats* stats_of(const Session* session, int layer, Site site) {
  if (!session || layer < 0 || size_t(layer) >= session->stats.size()) return nullptr;
  const SiteStats& s = session->stats[size_t(layer)][size_t(site)];
  return s.channels > 0 ? &s : nullptr;
}

QString number(double v, int decimals = 1) {
  if (std::isnan(v)) return QStringLiteral("–");
  if (std::isinf(v)) return v > 0 ? QStringLiteral("∞") : QStringLiteral("−∞");
  return QString::number(v, 'f', decimals);
}

// What the site's transform is, in words.
QString transform_text(const Session& session, int layer, Site site) {
  if (size_t(layer) >= session.transforms.size()) return QObject::tr("none");
  const SiteTransform& t = session.transforms[size_t(layer)].site(site);
  QStringList parts;
  if (t.has_smoothing()) parts << QObject::tr("smoothing");
  for (const ChannelTransform::Step& step : t.rotation.steps()) {
    switch (step.kind) {
      case ChannelTransform::StepKind::BlockRotation:
        parts << QObject::tr("%1×%1 block rotation").arg(step.rotation.rows());
        break;
      case ChannelTransform::StepKind::Permutation:
        parts << QObject::tr("permutation");
        break;
      case ChannelTransform::StepKind::FullHadamard:
        parts << QObject::tr("full Hadamard %1").arg(step.channels);
        break;
    }
  }
  return parts.isEmpty() ? QObject::tr("none") : parts.join(QStringLiteral(" + "));
}

}  // namespace

ModelTree::ModelTree(QWidget* parent) : QTreeWidget(parent) {
  setObjectName("modelTree");
  setColumnCount(2);
  setHeaderLabels({tr("Site"), tr("E8M0 spread")});
  headerItem()->setToolTip(kBadgeColumn,
                           tr("Mean E8M0 exponent spread across the blocks of a token, before → "
                              "after the method's transform (SQNR when no rows were sampled)"));
  header()->setStretchLastSection(true);
  setSelectionMode(QAbstractItemView::SingleSelection);
  setUniformRowHeights(true);
  connect(this, &QTreeWidget::currentItemChanged, this, [this](QTreeWidgetItem* item) {
    if (!item) return;
    const int site = item->data(0, kSiteRole).toInt();
    if (site >= 0) emit siteSelected(item->data(0, kLayerRole).toInt(), site);
  });
}

void ModelTree::onModelOpened(const Checkpoint& checkpoint) {
  session_.reset();
  build(checkpoint.config().num_layers);
}

void ModelTree::onModelClosed() {
  session_.reset();
  clear();
}

void ModelTree::onSessionChanged(const std::shared_ptr<const Session>& session) {
  session_ = session;
  // A session opened without a model still shows its layers.
  if (session_ && layerCount() != session_->config.num_layers) build(session_->config.num_layers);
  updateBadges();
}

void ModelTree::build(int layers) {
  const auto selected = selectedSite();
  QSignalBlocker block(this);
  clear();
  for (int layer = 0; layer < layers; ++layer) {
    auto* layer_item = new QTreeWidgetItem(this, {tr("layer %1").arg(layer)});
    layer_item->setData(0, kLayerRole, layer);
    layer_item->setData(0, kSiteRole, -1);
    layer_item->setFlags(Qt::ItemIsEnabled);
    for (Site site : kAllSites) {
      auto* item =
          new QTreeWidgetItem(layer_item, {QString::fromLatin1(site_name(site).data()), {}});
      item->setData(0, kLayerRole, layer);
      item->setData(0, kSiteRole, int(site));
    }
  }
  expandAll();
  resizeColumnToContents(0);
  if (selected && selected->first < layers)
    if (QTreeWidgetItem* item = siteItem(selected->first, selected->second)) setCurrentItem(item);
}

void ModelTree::updateBadges() {
  for (int layer = 0; layer < layerCount(); ++layer)
    for (Site site : kAllSites) {
      QTreeWidgetItem* item = siteItem(layer, site);
      item->setText(kBadgeColumn, badgeText(layer, site));
      item->setForeground(kBadgeColumn, badgeColor(layer, site));
      item->setToolTip(kBadgeColumn, siteDetails(layer, site));
      item->setToolTip(0, siteDetails(layer, site));
    }
}

QTreeWidgetItem* ModelTree::siteItem(int layer, Site site) const {
  if (layer < 0 || layer >= topLevelItemCount()) return nullptr;
  return topLevelItem(layer)->child(int(site));
}

bool ModelTree::selectSite(int layer, Site site) {
  QTreeWidgetItem* item = siteItem(layer, site);
  if (!item) return false;
  if (currentItem() == item)
    emit siteSelected(layer, int(site));
  else
    setCurrentItem(item);
  return true;
}

std::optional<std::pair<int, Site>> ModelTree::selectedSite() const {
  const QTreeWidgetItem* item = currentItem();
  if (!item || item->data(0, kSiteRole).toInt() < 0) return std::nullopt;
  return std::make_pair(item->data(0, kLayerRole).toInt(), Site(item->data(0, kSiteRole).toInt()));
}

QString ModelTree::badgeText(int layer, Site site) const {
  const SiteStats* s = stats_of(session_.get(), layer, site);
  if (!s) return {};
  const QuantOptions& mx = session_->settings.stats.mx;
  const double before = s->mean_exponent_spread_before(mx);
  const double after = s->mean_exponent_spread_after(mx);
  if (!std::isnan(before) && !std::isnan(after))
    return QStringLiteral("%1 → %2").arg(number(before), number(after));
  return QStringLiteral("%1 → %2 dB")
      .arg(number(s->total_sqnr_db_before()), number(s->total_sqnr_db_after()));
}

QColor ModelTree::badgeColor(int layer, Site site) const {
  const SiteStats* s = stats_of(session_.get(), layer, site);
  if (!s) return kNeutral;
  const QuantOptions& mx = session_->settings.stats.mx;
  double before = s->mean_exponent_spread_before(mx);
  double after = s->mean_exponent_spread_after(mx);
  double gain = before - after;  // > 0: narrower spread is better
  if (std::isnan(before) || std::isnan(after))
    gain = s->total_sqnr_db_after() - s->total_sqnr_db_before();
  if (!std::isfinite(gain) || std::fabs(gain) < 0.05) return kNeutral;
  return gain > 0 ? kBetter : kWorse;
}

QString ModelTree::siteDetails(int layer, Site site) const {
  const QString name =
      tr("layer %1 · %2").arg(layer).arg(QString::fromLatin1(site_name(site).data()));
  if (!session_) return name;
  QStringList lines{name};
  lines << tr("method: %1").arg(QString::fromLatin1(method_name(session_->settings.method).data()));
  lines << tr("transform: %1").arg(transform_text(*session_, layer, site));
  if (size_t(layer) < session_->searches.size()) {
    const SiteSearch& search = session_->searches[size_t(layer)][size_t(site)];
    for (const GreedyTrace& t : search.traces)
      lines << tr("greedy search: best step %1 of %2, range %3 → %4")
                   .arg(t.best_step)
                   .arg(t.max_steps())
                   .arg(number(t.steps.empty() ? NAN : t.steps.front().objective, 3),
                        number(t.steps.empty() ? NAN : t.steps[size_t(t.best_step)].objective, 3));
  }
  const SiteStats* s = stats_of(session_.get(), layer, site);
  if (!s) {
    lines << tr("no statistics in this session");
    return lines.join('\n');
  }
  const QuantOptions& mx = session_->settings.stats.mx;
  lines << tr("%1 channels, %2 blocks, %3 tokens, %4 sampled rows")
               .arg(s->channels)
               .arg(s->blocks)
               .arg(s->tokens)
               .arg(s->sample_before.rows());
  lines << tr("exponent spread %1 → %2")
               .arg(number(s->mean_exponent_spread_before(mx), 2),
                    number(s->mean_exponent_spread_after(mx), 2));
  lines << tr("SQNR %1 → %2 dB")
               .arg(number(s->total_sqnr_db_before(), 2), number(s->total_sqnr_db_after(), 2));
  return lines.join('\n');
}

}  // namespace mxlens::gui
