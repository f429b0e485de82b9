#include "app/gui/site_views.h"

#include <QLabel>
#include <QStackedWidget>

#include "core/calib/search_input.h"
#include "core/calib/session.h"
#include "widgets/greedy_view.h"
#include "widgets/outliers_view.h"
#include "widgets/scales_view.h"

namespace mxlens::gui {

QString methodDisplayName(Method method) {
  switch (method) {
    case Method::fp:
      return QStringLiteral("FP");
    case Method::rtn:
      return QStringLiteral("RTN");
    case Method::smooth:
      return QStringLiteral("SmoothQuant");
    case Method::hadamard:
      return QStringLiteral("Hadamard");
    case Method::random:
      return QStringLiteral("Random rotation");
    case Method::quarot:
      return QStringLiteral("QuaRot");
    case Method::duquant:
      return QStringLiteral("DuQuant");
    case Method::duquantpp:
      return QStringLiteral("DuQuant++");
    case Method::duquantpp_nosmooth:
      return QStringLiteral("DuQuant++ (no smoothing)");
    case Method::duquantpp_gptq:
      return QStringLiteral("DuQuant++ + GPTQ");
  }
  return QString::fromLatin1(method_name(method).data());
}

SiteViews::SiteViews(OutliersView* outliers, ScalesView* scales, GreedyView* greedy,
                     QStackedWidget* greedy_stack, QLabel* greedy_message)
    : outliers_(outliers),
      scales_(scales),
      greedy_(greedy),
      greedy_stack_(greedy_stack),
      greedy_message_(greedy_message) {
  QObject::connect(greedy_, &GreedyView::stepChanged, greedy_, [this](int k) { onStep(k); });
  clearViews(
      QObject::tr("Open a checkpoint (File ▸ Open Checkpoint…) or the demo (File ▸ Open "
                  "Demo), then pick a site in the model tree."));
}

void SiteViews::onModelOpened(const Checkpoint&) {
  session_.reset();
  clearViews(QObject::tr("Calibrating… the replay shows once the session is ready."));
}

void SiteViews::onModelClosed() {
  session_.reset();
  clearViews(QObject::tr("No model open."));
}

void SiteViews::onSessionChanged(const std::shared_ptr<const Session>& session) {
  session_ = session;
  show();
}

void SiteViews::onSiteSelected(int layer, Site site) {
  site_ = std::make_pair(layer, site);
  show();
}

QString SiteViews::greedyMessage() const {
  return greedy_stack_->currentIndex() == 1 ? greedy_message_->text() : QString();
}

const GreedyTrace* SiteViews::shownTrace() const {
  if (!session_ || !site_ || !greedy_->hasTrace()) return nullptr;
  const auto [layer, site] = *site_;
  if (size_t(layer) >= session_->searches.size()) return nullptr;
  const SiteSearch& search = session_->searches[size_t(layer)][size_t(site)];
  return search.traces.empty() ? nullptr : &search.traces.back();
}

void SiteViews::clearViews(const QString& why) {
  outliers_->clear();
  scales_->clear();
  greedy_->clear();
  blocks_.resize(0, 0);
  greedy_message_->setText(why);
  greedy_stack_->setCurrentIndex(1);
}

void SiteViews::show() {
  if (!session_) {
    clearViews(QObject::tr("No session yet: the replay shows once calibration is done."));
    return;
  }
  if (!site_) {
    clearViews(QObject::tr("Pick a site in the model tree."));
    return;
  }
  const auto [layer, site] = *site_;
  const Session& s = *session_;
  const QString before = QObject::tr("before (none)");
  const QString after = QObject::tr("after (%1)").arg(methodDisplayName(s.settings.method));
  const QString where =
      QObject::tr("layer %1 · %2").arg(layer).arg(QString::fromLatin1(site_name(site).data()));

  const bool has_stats =
      size_t(layer) < s.stats.size() && s.stats[size_t(layer)][size_t(site)].channels > 0;
  if (has_stats) {
    const SiteStats& stats = s.stats[size_t(layer)][size_t(site)];
    outliers_->setStats(stats, before, after, s.settings.stats.mx);
    scales_->setStats(stats, s.settings.stats.mx, before, after);
  } else {
    outliers_->clear();
    scales_->clear();
  }

  const bool has_trace =
      size_t(layer) < s.searches.size() && !s.searches[size_t(layer)][size_t(site)].traces.empty();
  if (!has_trace) {
    greedy_->clear();
    blocks_.resize(0, 0);
    greedy_message_->setText(
        QObject::tr("%1 has no greedy search at %2: only DuQuant and DuQuant++ search for "
                    "their rotations (pick one in the toolbar).")
            .arg(methodDisplayName(s.settings.method), where));
    greedy_stack_->setCurrentIndex(1);
    return;
  }
  const SiteSearch& search = s.searches[size_t(layer)][size_t(site)];
  blocks_ = has_stats ? search_input_blocks(s, layer, site) : RowMatrixXf();
  greedy_->setTrace(search.traces.back(), blocks_);
  greedy_stack_->setCurrentIndex(0);
  if (follow_) onStep(greedy_->currentStep());
}

void SiteViews::setFollowStepper(bool follow) {
  if (follow == follow_) return;
  follow_ = follow;
  if (follow_)
    onStep(greedy_->currentStep());
  else if (session_ && site_)
    show();
}

void SiteViews::onStep(int k) {
  if (!follow_ || !session_ || !site_ || !greedy_->hasTrace()) return;
  const auto [layer, site] = *site_;
  const auto stats = site_stats_at_step(*session_, layer, site, k);
  if (!stats) return;
  followed_ = *stats;
  const QString before = QObject::tr("before (sampled rows)");
  const QString after = QObject::tr("after step %1 of %2 (%3, sampled rows)")
                            .arg(k)
                            .arg(greedy_->maxSteps())
                            .arg(methodDisplayName(session_->settings.method));
  outliers_->setStats(followed_, before, after, session_->settings.stats.mx);
  scales_->setStats(followed_, session_->settings.stats.mx, before, after);
}

}  // namespace mxlens::gui
