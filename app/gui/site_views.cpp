#include "app/gui/site_views.h"

#include <QLabel>
#include <QStackedWidget>

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

namespace {

// The search's input for `trace_index` of the site, as the header explains; empty when the
// rows cannot be cut into the trace's blocks.
RowMatrixXf greedy_blocks(const Session& session, int layer, Site site, size_t trace_index) {
  const SiteStats& stats = session.stats[size_t(layer)][size_t(site)];
  const SiteSearch& search = session.searches[size_t(layer)][size_t(site)];
  const int n = search.traces[trace_index].block_size;
  RowMatrixXf x = stats.sample_before;
  if (x.rows() == 0 || n <= 0 || x.cols() % n != 0) return {};
  if (size_t(layer) < session.transforms.size()) {
    const SiteTransform& t = session.transforms[size_t(layer)].site(site);
    if (t.has_smoothing() && Eigen::Index(t.smooth.size()) == x.cols())
      for (Eigen::Index c = 0; c < x.cols(); ++c) x.col(c) /= t.smooth[size_t(c)];
    // The steps before the traced rotation: the trace_index-th block rotation of the chain.
    ChannelTransform prefix;
    size_t rotations = 0;
    for (const ChannelTransform::Step& step : t.rotation.steps()) {
      if (step.kind == ChannelTransform::StepKind::BlockRotation && rotations++ == trace_index)
        break;
      switch (step.kind) {
        case ChannelTransform::StepKind::BlockRotation:
          prefix.add_block_rotation(step.rotation);
          break;
        case ChannelTransform::StepKind::Permutation:
          prefix.add_permutation(step.permutation);
          break;
        case ChannelTransform::StepKind::FullHadamard:
          prefix.add_full_hadamard(step.channels, step.sign_seed);
          break;
      }
    }
    if (!prefix.empty() && prefix.accepts(int(x.cols()))) prefix.apply_rows(x, 1);
  }
  // Row-major rows × C is the same memory as (rows·C/n) × n: one block per row.
  return Eigen::Map<const RowMatrixXf>(x.data(), x.rows() * (x.cols() / n), n);
}

}  // namespace

SiteViews::SiteViews(OutliersView* outliers, ScalesView* scales, GreedyView* greedy,
                     QStackedWidget* greedy_stack, QLabel* greedy_message)
    : outliers_(outliers),
      scales_(scales),
      greedy_(greedy),
      greedy_stack_(greedy_stack),
      greedy_message_(greedy_message) {
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
  const size_t trace_index = search.traces.size() - 1;
  blocks_ = has_stats ? greedy_blocks(s, layer, site, trace_index) : RowMatrixXf();
  greedy_->setTrace(search.traces[trace_index], blocks_);
  greedy_stack_->setCurrentIndex(0);
}

}  // namespace mxlens::gui
