// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "widgets/greedy_view.h"

#include <qcustomplot.h>
#include <QDoubleSpinBox>
#include <QHBoxLayout>
#include <QKeyEvent>
#include <QLabel>
#include <QSignalBlocker>
#include <QSlider>
#include <QSplitter>
#include <QStyle>
#include <QTimer>
#include <QToolButton>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <string>

#include "core/util/error.h"
#include "widgets/color_maps.h"
#include "widgets/plot_panel.h"
#include "widgets/readable_color.h"

namespace mxlens {

namespace {

constexpr double kDefaultSpeed = 8.0;  // steps per second: 128 steps in 16 s

QToolButton* makeButton(QWidget* parent, const char* name, QStyle::StandardPixmap icon,
                        const QString& tip) {
  auto* button = new QToolButton(parent);
  button->setObjectName(QLatin1String(name));
  button->setIcon(parent->style()->standardIcon(icon));
  button->setToolTip(tip);
  button->setAutoRaise(true);
  // Buttons never take focus, so the arrow keys stay with the view after a click.
  button->setFocusPolicy(Qt::NoFocus);
  return button;
}

// Two objective values with enough digits that a change shows: 3 significant digits unless
// they would print the same.
QString formatPair(double from, double to) {
  for (int digits = 3; digits <= 9; ++digits) {
    const QString a = QString::number(from, 'g', digits), b = QString::number(to, 'g', digits);
    if (a != b || from == to || digits == 9) return a + QStringLiteral(" → ") + b;
  }
  return {};
}

// Steps and channels are integers: no ticks at 2.5.
QSharedPointer<QCPAxisTicker> integerTicker() {
  auto ticker = QSharedPointer<QCPAxisTickerFixed>::create();
  ticker->setTickStep(1.0);
  ticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
  return ticker;
}

QString objectiveName(GreedyObjective objective) {
  const std::string_view name = to_string(objective);
  return QString::fromUtf8(name.data(), qsizetype(name.size()));
}

}  // namespace

GreedyView::GreedyView(QWidget* parent)
    : QWidget(parent),
      matrix_panel_(new PlotPanel(this)),
      objective_panel_(new PlotPanel(this)),
      profile_panel_(new PlotPanel(this)),
      first_(
          makeButton(this, "greedyFirst", QStyle::SP_MediaSkipBackward, tr("First step (Home)"))),
      previous_(makeButton(this, "greedyPrevious", QStyle::SP_MediaSeekBackward,
                           tr("Previous step (Left)"))),
      play_(makeButton(this, "greedyPlay", QStyle::SP_MediaPlay, tr("Play / pause (Space)"))),
      next_(makeButton(this, "greedyNext", QStyle::SP_MediaSeekForward, tr("Next step (Right)"))),
      last_(makeButton(this, "greedyLast", QStyle::SP_MediaSkipForward, tr("Last step (End)"))),
      speed_(new QDoubleSpinBox(this)),
      slider_(new QSlider(Qt::Horizontal, this)),
      text_(new QLabel(this)),
      timer_(new QTimer(this)) {
  setFocusPolicy(Qt::StrongFocus);
  matrix_panel_->setExportName(QStringLiteral("greedy-rotation"));
  objective_panel_->setExportName(QStringLiteral("greedy-objective"));
  profile_panel_->setExportName(QStringLiteral("greedy-profile"));
  buildMatrixPlot();
  buildObjectivePlot();
  buildProfilePlot();

  speed_->setObjectName(QStringLiteral("greedySpeed"));
  speed_->setRange(0.5, 120.0);
  speed_->setDecimals(1);
  speed_->setSingleStep(1.0);
  speed_->setValue(kDefaultSpeed);
  speed_->setSuffix(tr(" steps/s"));
  speed_->setToolTip(tr("Playback speed"));
  slider_->setObjectName(QStringLiteral("greedySlider"));
  slider_->setFocusPolicy(Qt::NoFocus);
  slider_->setRange(0, 0);
  slider_->setTickPosition(QSlider::TicksBelow);
  text_->setObjectName(QStringLiteral("greedyStepText"));
  text_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  play_->setCheckable(true);

  auto* right = new QSplitter(Qt::Vertical, this);
  right->addWidget(objective_panel_);
  right->addWidget(profile_panel_);
  auto* plots = new QSplitter(Qt::Horizontal, this);
  plots->addWidget(matrix_panel_);
  plots->addWidget(right);
  plots->setStretchFactor(0, 1);
  plots->setStretchFactor(1, 1);
  plots->setSizes({1000, 1000});  // half and half from the start, not by size hints

  auto* controls = new QHBoxLayout;
  for (QToolButton* b : {first_, previous_, play_, next_, last_}) controls->addWidget(b);
  controls->addWidget(speed_);
  controls->addWidget(slider_, 1);
  auto* layout = new QVBoxLayout(this);
  layout->addWidget(plots, 1);
  layout->addLayout(controls);
  layout->addWidget(text_);

  connect(first_, &QToolButton::clicked, this, [this] { setStep(0); });
  connect(previous_, &QToolButton::clicked, this, [this] { setStep(step_ - 1); });
  connect(next_, &QToolButton::clicked, this, [this] { setStep(step_ + 1); });
  connect(last_, &QToolButton::clicked, this, [this] { setStep(maxSteps()); });
  connect(play_, &QToolButton::toggled, this, &GreedyView::setPlaying);
  connect(slider_, &QSlider::valueChanged, this, &GreedyView::setStep);
  connect(speed_, &QDoubleSpinBox::valueChanged, this,
          [this](double v) { timer_->setInterval(std::max(1, int(std::lround(1000.0 / v)))); });
  timer_->setInterval(int(std::lround(1000.0 / kDefaultSpeed)));
  connect(timer_, &QTimer::timeout, this, &GreedyView::advance);
  for (PlotPanel* panel : {matrix_panel_, objective_panel_, profile_panel_})
    connect(panel, &PlotPanel::paletteApplied, this, &GreedyView::recolour);
  recolour();
  clear();
}

void GreedyView::buildMatrixPlot() {
  QCustomPlot* plot = matrix_panel_->plot();
  plot->plotLayout()->insertRow(0);
  plot->plotLayout()->addElement(0, 0, new QCPTextElement(plot, tr("rotation R after k steps")));
  color_map_ = new QCPColorMap(plot->xAxis, plot->yAxis);
  color_map_->setInterpolate(false);
  color_map_->setTightBoundary(false);
  color_map_->setGradient(divergingGradient());
  color_map_->setDataRange(symmetricRange(1.0));
  auto* scale = new QCPColorScale(plot);
  plot->plotLayout()->addElement(1, 1, scale);
  scale->setType(QCPAxis::atRight);
  scale->setLabel(tr("R[i, j]"));
  color_map_->setColorScale(scale);
  // setColorScale copies the scale's range; the range stays ±1 for every step so that colours
  // compare across steps.
  scale->setDataRange(symmetricRange(1.0));
  scale->setGradient(divergingGradient());
  auto* margins = new QCPMarginGroup(plot);
  plot->axisRect()->setMarginGroup(QCP::msBottom | QCP::msTop, margins);
  scale->setMarginGroup(QCP::msBottom | QCP::msTop, margins);
  plot->xAxis->setLabel(tr("output channel j (in block)"));
  plot->yAxis->setLabel(tr("input channel i"));
  plot->xAxis->setTicker(integerTicker());
  plot->yAxis->setTicker(integerTicker());
  plot->yAxis->setRangeReversed(true);  // row 0 at the top, as a matrix is written
  matrix_panel_->setResetHandler([this] { resetMatrixView(); });
}

void GreedyView::buildObjectivePlot() {
  QCustomPlot* plot = objective_panel_->plot();
  plot->xAxis->setLabel(tr("step"));
  plot->xAxis->setTicker(integerTicker());
  kept_shade_ = new QCPItemRect(plot);
  kept_shade_->setLayer(QStringLiteral("background"));
  kept_shade_->topLeft->setTypeX(QCPItemPosition::ptPlotCoords);
  kept_shade_->topLeft->setTypeY(QCPItemPosition::ptAxisRectRatio);
  kept_shade_->bottomRight->setTypeX(QCPItemPosition::ptPlotCoords);
  kept_shade_->bottomRight->setTypeY(QCPItemPosition::ptAxisRectRatio);
  kept_shade_->setSelectable(false);
  objective_graph_ = plot->addGraph();
  objective_graph_->setName(tr("objective"));
  objective_graph_->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 4));
  best_marker_ = plot->addGraph();
  best_marker_->setLineStyle(QCPGraph::lsNone);
  best_marker_->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDiamond, 11));
  best_label_ = new QCPItemText(plot);
  best_label_->setPositionAlignment(Qt::AlignLeft | Qt::AlignBottom);
  best_label_->setPadding(QMargins(6, 0, 0, 4));
  best_label_->setSelectable(false);
  step_line_ = new QCPItemStraightLine(plot);
  step_line_->setSelectable(false);
  objective_panel_->setResetHandler([this] { resetObjectiveView(); });
}

void GreedyView::buildProfilePlot() {
  QCustomPlot* plot = profile_panel_->plot();
  plot->xAxis->setLabel(tr("channel j (in block)"));
  plot->xAxis->setTicker(integerTicker());
  plot->yAxis->setLabel(tr("max |Z·R|"));
  profile_bars_ = new QCPBars(plot->xAxis, plot->yAxis);
  profile_bars_->setWidth(0.8);
  profile_start_ = plot->addGraph();
  profile_start_->setLineStyle(QCPGraph::lsStepCenter);
  plot->legend->setVisible(true);
  plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
  profile_panel_->setResetHandler([this] { resetProfileView(); });
}

void GreedyView::recolour() {
  const QPalette& pal = palette();
  const QColor text = plotTextColor(pal);
  const QColor accent = readableOn(pal, categoricalColor(0)), best = categoricalColor(6);
  objective_graph_->setPen(QPen(accent, 1.5));
  best_marker_->setPen(QPen(best, 2));
  best_marker_->setBrush(QBrush(best));
  best_label_->setColor(text);
  QColor shade = accent;
  shade.setAlpha(40);
  kept_shade_->setPen(Qt::NoPen);
  kept_shade_->setBrush(QBrush(shade));
  step_line_->setPen(QPen(text, 1, Qt::DashLine));
  QColor bars = accent;
  bars.setAlpha(170);
  profile_bars_->setPen(QPen(accent.darker(130), 1));
  profile_bars_->setBrush(QBrush(bars));
  profile_start_->setPen(QPen(text, 1.5, Qt::DashLine));
  // The panels styled their plots before this view added its colour scale, title and legend.
  for (PlotPanel* panel : {matrix_panel_, objective_panel_, profile_panel_}) {
    applyPlotPalette(panel->plot(), panel->palette());
    panel->replotQueued();
  }
}

void GreedyView::setTrace(const GreedyTrace& trace, Eigen::Ref<const RowMatrixXf> blocks) {
  setPlaying(false);
  clear();
  const int n = trace.block_size;
  if (trace.steps.empty()) {
    matrix_panel_->setMessage(tr("the trace has no steps"));
    return;
  }
  Eigen::MatrixXd M;
  try {
    M = trace.step_matrix();
  } catch (const Error& e) {
    matrix_panel_->setMessage(QString::fromStdString(e.what()));
    return;
  }
  const int S = trace.max_steps();
  matrices_.reserve(size_t(S) + 1);
  matrices_.push_back(Eigen::MatrixXd::Identity(n, n));
  for (int t = 0; t < S; ++t) {
    const int32_t d = trace.steps[size_t(t)].channel;
    if (d < 0 || d >= n) {
      matrices_.clear();
      matrix_panel_->setMessage(
          tr("step %1 chose channel %2, outside the block of %3").arg(t + 1).arg(d).arg(n));
      return;
    }
    // The same product as GreedyTrace::matrix_at_step, so the matrices agree bit for bit.
    const Eigen::MatrixXd next = matrices_.back() * swapped_step_matrix(M, d);
    matrices_.push_back(next);
  }
  objective_ = trace.objective;
  channels_ = trace.channels();
  for (const GreedyStep& s : trace.steps) objectives_.push_back(s.objective);
  best_step_ = std::clamp(trace.best_step, 0, S);
  profiles_.assign(size_t(S) + 1, {});

  if (blocks.rows() > 0 && blocks.cols() == n) {
    blocks_ = blocks.cast<double>();
    profile_panel_->setMessage({});
  } else if (blocks.rows() > 0) {
    profile_panel_->setMessage(
        tr("the blocks are %1 wide but the trace's block size is %2").arg(blocks.cols()).arg(n));
  } else {
    profile_panel_->setMessage(tr("no activation rows: the profile needs the search's input"));
  }

  color_map_->data()->setSize(n, n);
  color_map_->data()->setRange(QCPRange(0, n - 1), QCPRange(0, n - 1));
  matrix_panel_->setMessage({});
  objective_panel_->setMessage({});

  QVector<double> steps(S + 1);
  for (int t = 0; t <= S; ++t) steps[t] = t;
  objective_graph_->setData(steps, objectives_, true);
  best_marker_->setData({double(best_step_)}, {objectives_[best_step_]}, true);
  objective_panel_->plot()->yAxis->setLabel(objectiveName(objective_));
  best_label_->position->setCoords(best_step_, objectives_[best_step_]);
  best_label_->setText(tr("best k* = %1").arg(best_step_));
  kept_shade_->topLeft->setCoords(-0.5, 0);
  kept_shade_->bottomRight->setCoords(best_step_ + 0.5, 1);
  kept_shade_->setVisible(true);
  best_label_->setVisible(true);
  step_line_->setVisible(true);

  if (blocks_.rows() > 0) {
    const QVector<double>& start = profileAt(0);
    QVector<double> channels(n);
    for (int j = 0; j < n; ++j) channels[j] = j;
    profile_start_->setData(channels, start, true);
    profile_start_->setName(tr("step 0"));
  }

  {
    const QSignalBlocker block(slider_);
    slider_->setRange(0, S);
    slider_->setTickInterval(S > 64 ? 16 : S > 16 ? 4 : 1);
  }
  step_ = 0;
  showStep();
  resetMatrixView();
  resetObjectiveView();
  resetProfileView();
  for (PlotPanel* panel : {matrix_panel_, objective_panel_, profile_panel_}) panel->replotQueued();
  emit stepChanged(0);
}

void GreedyView::clear() {
  setPlaying(false);
  matrices_.clear();
  channels_.clear();
  objectives_.clear();
  profiles_.clear();
  blocks_.resize(0, 0);
  best_step_ = -1;
  step_ = 0;
  color_map_->data()->clear();
  objective_graph_->data()->clear();
  best_marker_->data()->clear();
  profile_bars_->data()->clear();
  profile_start_->data()->clear();
  kept_shade_->setVisible(false);
  best_label_->setVisible(false);
  step_line_->setVisible(false);
  {
    const QSignalBlocker block(slider_);
    slider_->setRange(0, 0);
  }
  const QString none = tr("no greedy search: pick a site calibrated with a DuQuant method");
  matrix_panel_->setMessage(none);
  objective_panel_->setMessage(none);
  profile_panel_->setMessage(none);
  text_->clear();
  updateControls();
}

void GreedyView::setStep(int k) {
  if (!hasTrace()) return;
  k = std::clamp(k, 0, maxSteps());
  if (k == step_ && slider_->value() == k) return;
  step_ = k;
  showStep();
  emit stepChanged(k);
}

void GreedyView::showStep() {
  const int n = int(matrices_.front().rows());
  const Eigen::MatrixXd& R = matrices_[size_t(step_)];
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) color_map_->data()->setCell(j, i, R(i, j));
  step_line_->point1->setCoords(step_, 0);
  step_line_->point2->setCoords(step_, 1);
  if (blocks_.rows() > 0) {
    const QVector<double>& p = profileAt(step_);
    QVector<double> channels(n);
    for (int j = 0; j < n; ++j) channels[j] = j;
    profile_bars_->setData(channels, p, true);
    profile_bars_->setName(tr("step %1").arg(step_));
    // An orthogonal R can raise a channel above step 0's maximum: keep the bars in view.
    QCPAxis* y = profile_panel_->plot()->yAxis;
    const double top = *std::max_element(p.begin(), p.end());
    if (top > y->range().upper) y->setRangeUpper(top * 1.08);
  }
  {
    const QSignalBlocker block(slider_);
    slider_->setValue(step_);
  }
  text_->setText(stepText());
  updateControls();
  for (PlotPanel* panel : {matrix_panel_, objective_panel_, profile_panel_}) panel->replotQueued();
}

void GreedyView::updateControls() {
  const bool any = hasTrace();
  first_->setEnabled(any && step_ > 0);
  previous_->setEnabled(any && step_ > 0);
  next_->setEnabled(any && step_ < maxSteps());
  last_->setEnabled(any && step_ < maxSteps());
  play_->setEnabled(any && maxSteps() > 0);
  slider_->setEnabled(any);
}

bool GreedyView::isPlaying() const {
  return timer_->isActive();
}

void GreedyView::setPlaying(bool playing) {
  playing = playing && hasTrace() && maxSteps() > 0;
  if (playing == isPlaying()) {
    const QSignalBlocker block(play_);
    play_->setChecked(playing);
    return;
  }
  if (playing) {
    if (step_ >= maxSteps()) setStep(0);
    timer_->start();
  } else {
    timer_->stop();
  }
  {
    const QSignalBlocker block(play_);
    play_->setChecked(playing);
  }
  play_->setIcon(style()->standardIcon(playing ? QStyle::SP_MediaPause : QStyle::SP_MediaPlay));
  emit playingChanged(playing);
}

double GreedyView::speed() const {
  return speed_->value();
}

void GreedyView::setSpeed(double steps_per_second) {
  speed_->setValue(steps_per_second);
}

void GreedyView::advance() {
  if (step_ >= maxSteps()) {
    setPlaying(false);
    return;
  }
  setStep(step_ + 1);
  if (step_ >= maxSteps()) setPlaying(false);
}

void GreedyView::keyPressEvent(QKeyEvent* event) {
  if (!hasTrace() || event->modifiers() & (Qt::ControlModifier | Qt::AltModifier)) {
    QWidget::keyPressEvent(event);
    return;
  }
  switch (event->key()) {
    case Qt::Key_Left:
      setStep(step_ - 1);
      break;
    case Qt::Key_Right:
      setStep(step_ + 1);
      break;
    case Qt::Key_Home:
      setStep(0);
      break;
    case Qt::Key_End:
      setStep(maxSteps());
      break;
    case Qt::Key_Space:
      setPlaying(!isPlaying());
      break;
    default:
      QWidget::keyPressEvent(event);
      return;
  }
  event->accept();
}

const QVector<double>& GreedyView::profileAt(int k) const {
  QVector<double>& p = profiles_[size_t(k)];
  if (p.isEmpty() && blocks_.rows() > 0) {
    const Eigen::RowVectorXd absmax =
        k == 0
            ? Eigen::RowVectorXd(blocks_.cwiseAbs().colwise().maxCoeff())
            : Eigen::RowVectorXd((blocks_ * matrices_[size_t(k)]).cwiseAbs().colwise().maxCoeff());
    p = QVector<double>(absmax.data(), absmax.data() + absmax.size());
  }
  return p;
}

Eigen::MatrixXd GreedyView::shownMatrix() const {
  QCPColorMapData* data = color_map_->data();  // cell() is not const in QCustomPlot 2.1
  const int n = data->keySize();
  Eigen::MatrixXd R(data->valueSize(), n);
  for (int i = 0; i < R.rows(); ++i)
    for (int j = 0; j < n; ++j) R(i, j) = data->cell(j, i);
  return R;
}

QVector<double> GreedyView::objectiveCurve() const {
  QVector<double> v;
  for (auto it = objective_graph_->data()->constBegin(); it != objective_graph_->data()->constEnd();
       ++it)
    v.push_back(it->value);
  return v;
}

int GreedyView::keptPrefix() const {
  return best_step_;
}

QString GreedyView::stepText() const {
  if (!hasTrace()) return {};
  const QString name = objectiveName(objective_);
  if (step_ == 0)
    return tr("step 0: start, %1 %2").arg(name, QString::number(objectives_[0], 'g', 3));
  const int d = channels_[size_t(step_) - 1];
  const QString what =
      d == 0 ? tr("channel 0 spread (no swap)") : tr("channel %1 swapped with 0").arg(d);
  QString text = tr("step %1: %2, %3 %4")
                     .arg(step_)
                     .arg(what, name, formatPair(objectives_[step_ - 1], objectives_[step_]));
  if (step_ == best_step_)
    text += tr(" (best: kept up to here)");
  else if (step_ > best_step_)
    text += tr(" (after the best step %1: not kept)").arg(best_step_);
  return text;
}

QVector<double> GreedyView::profile(bool atStep0) const {
  if (!hasTrace() || blocks_.rows() == 0) return {};
  return profileAt(atStep0 ? 0 : step_);
}

void GreedyView::resetMatrixView() {
  QCustomPlot* plot = matrix_panel_->plot();
  const int n = hasTrace() ? int(matrices_.front().rows()) : 1;
  plot->xAxis->setRange(-0.5, n - 0.5);
  plot->yAxis->setRange(-0.5, n - 0.5);
}

void GreedyView::resetObjectiveView() {
  QCustomPlot* plot = objective_panel_->plot();
  plot->xAxis->setRange(-0.5, maxSteps() + 0.5);
  bool found = false;
  QCPRange range = objective_graph_->getValueRange(found);
  if (found) {
    const double pad = std::max(range.size() * 0.08, std::abs(range.upper) * 1e-3 + 1e-12);
    plot->yAxis->setRange(range.lower - pad, range.upper + pad);
  }
}

void GreedyView::resetProfileView() {
  QCustomPlot* plot = profile_panel_->plot();
  const int n = hasTrace() ? int(matrices_.front().rows()) : 1;
  plot->xAxis->setRange(-0.6, n - 0.4);
  double top = 0;
  for (const QVector<double>& p : profiles_)
    for (double v : p) top = std::max(top, v);
  plot->yAxis->setRange(0, top > 0 ? top * 1.08 : 1);
}

}  // namespace mxlens
