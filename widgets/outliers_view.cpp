#include "widgets/outliers_view.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <QFontMetrics>
#include <QSplitter>
#include <QToolTip>
#include <QVBoxLayout>

#include "core/mx/e8m0.h"
#include "widgets/color_maps.h"
#include "widgets/plot_panel.h"

namespace mxlens {

namespace {

// Okabe–Ito orange and blue: distinct for colour-blind readers, readable on light and dark.
const QColor kBeforeColor(0xE6, 0x9F, 0x00);
const QColor kAfterColor(0x00, 0x72, 0xB2);

// Colours below lo·… are not told apart anyway; six decades cover what a reader can see.
constexpr double kColorDecades = 1e-6;

double clampCell(float v, const QCPRange& range) {
  const double a = std::fabs(double(v));
  if (std::isnan(a)) return range.lower;
  return std::clamp(a, range.lower, range.upper);
}

QCPRange colorRangeOf(const RowMatrixXf& a, const RowMatrixXf& b) {
  double hi = 0, lo_pos = std::numeric_limits<double>::infinity();
  for (const RowMatrixXf* m : {&a, &b}) {
    const float* p = m->data();
    for (Eigen::Index i = 0, n = m->size(); i < n; ++i) {
      const double v = std::fabs(double(p[i]));
      if (!std::isfinite(v)) continue;
      hi = std::max(hi, v);
      if (v > 0) lo_pos = std::min(lo_pos, v);
    }
  }
  if (!(hi > 0)) return QCPRange(kColorDecades, 1.0);
  const double lo = std::max(lo_pos, hi * kColorDecades);
  // A colour scale needs a non-empty range; one distinct magnitude gets a decade below it.
  return lo < hi ? QCPRange(lo, hi) : QCPRange(hi / 10, hi);
}

QCPItemStraightLine* verticalLine(QCustomPlot* plot, QCPAxisRect* rect, double x, const QPen& pen) {
  auto* line = new QCPItemStraightLine(plot);
  line->setClipAxisRect(rect);
  line->setLayer(QStringLiteral("overlay"));
  line->setSelectable(false);
  for (QCPItemPosition* p : {line->point1, line->point2})
    p->setAxes(rect->axis(QCPAxis::atBottom), rect->axis(QCPAxis::atLeft));
  line->point1->setCoords(x, 0);
  line->point2->setCoords(x, 1);
  line->setPen(pen);
  return line;
}

QString byteText(uint8_t byte, ScaleRule rule) {
  if (byte == kE8M0Nan) return QStringLiteral("E8M0 0xFF (NaN: the block holds Inf or NaN)");
  QString text =
      QStringLiteral("E8M0 %1 (scale %2").arg(byte).arg(powerOfTwoLabel(e8m0_exponent(byte)));
  if (rule == ScaleRule::fpquant) text += QStringLiteral(" × 4/3");
  text += ')';
  if (rule == ScaleRule::dqv2_log8) text += QStringLiteral(", ocp_floor byte");
  return text;
}

}  // namespace

OutliersView::OutliersView(QWidget* parent)
    : QWidget(parent), heat_panel_(new PlotPanel), bars_panel_(new PlotPanel) {
  heat_panel_->setExportName(QStringLiteral("outliers-heatmaps"));
  bars_panel_->setExportName(QStringLiteral("outliers-absmax"));
  auto* splitter = new QSplitter(Qt::Vertical);
  splitter->addWidget(heat_panel_);
  splitter->addWidget(bars_panel_);
  splitter->setStretchFactor(0, 3);
  splitter->setStretchFactor(1, 2);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(splitter);

  buildHeatmapPlot();
  buildBarsPlot();
  linkAxes(before_rect_->axis(QCPAxis::atBottom), after_rect_->axis(QCPAxis::atBottom));
  linkAxes(before_rect_->axis(QCPAxis::atLeft), after_rect_->axis(QCPAxis::atLeft));
  linkAxes(before_rect_->axis(QCPAxis::atBottom), bars_panel_->plot()->xAxis);

  heat_panel_->setResetHandler([this] { resetHeatmaps(); });
  bars_panel_->setResetHandler([this] { resetBars(); });
  connect(heat_panel_, &PlotPanel::paletteApplied, this, &OutliersView::recolorItems);
  connect(bars_panel_, &PlotPanel::paletteApplied, this, &OutliersView::recolorItems);
  connect(heat_panel_->plot(), &QCustomPlot::mouseMove, this, &OutliersView::hoverHeatmap);
  connect(bars_panel_->plot(), &QCustomPlot::mouseMove, this, &OutliersView::hoverBars);
  clear();
  // The panels styled their plots before the titles, colour scale and legend were added.
  heat_panel_->applyPalette();
  bars_panel_->applyPalette();
}

void OutliersView::buildHeatmapPlot() {
  QCustomPlot* plot = heat_panel_->plot();
  const BeforeAfterLayout l = buildBeforeAfterLayout(plot, QFont(font().family(), -1, QFont::Bold),
                                                     QStringLiteral("channel"));
  before_title_ = l.before_title;
  after_title_ = l.after_title;
  before_rect_ = l.before;
  after_rect_ = l.after;
  scale_ = l.scale;
  before_map_ = l.before_map;
  after_map_ = l.after_map;

  scale_->setDataScaleType(QCPAxis::stLogarithmic);
  scale_->axis()->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
  scale_->axis()->setNumberFormat(QStringLiteral("eb"));
  scale_->axis()->setNumberPrecision(0);
  scale_->axis()->setLabel(QStringLiteral("|x|"));
  scale_->setGradient(sequentialGradient());
}

void OutliersView::buildBarsPlot() {
  QCustomPlot* plot = bars_panel_->plot();
  plot->xAxis->setLabel(QStringLiteral("channel"));
  plot->yAxis->setLabel(QStringLiteral("absmax |x|"));
  plot->xAxis->grid()->setVisible(false);
  plot->xAxis->setTicker(integerAxisTicker());
  auto* group = new QCPBarsGroup(plot);
  group->setSpacingType(QCPBarsGroup::stAbsolute);
  group->setSpacing(0);
  bars_before_ = new QCPBars(plot->xAxis, plot->yAxis);
  bars_after_ = new QCPBars(plot->xAxis, plot->yAxis);
  for (auto [bars, color] :
       {std::pair{bars_before_, kBeforeColor}, std::pair{bars_after_, kAfterColor}}) {
    bars->setWidth(0.45);
    bars->setPen(Qt::NoPen);
    bars->setBrush(color);
    bars->setBarsGroup(group);
    bars->setAntialiased(false);
  }
  plot->legend->setVisible(true);
  plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
}

void OutliersView::clear() {
  SiteStats empty;
  setStats(empty, QString(), QString());
}

void OutliersView::setStats(const SiteStats& stats, QString beforeLabel, QString afterLabel,
                            const QuantOptions& mx) {
  channels_ = std::max(stats.channels, 0);
  blocks_ = (channels_ + kStatsBlock - 1) / kStatsBlock;
  tokens_seen_ = stats.tokens;
  mx_ = mx;
  before_label_ = beforeLabel.isEmpty() ? QStringLiteral("before") : beforeLabel;
  after_label_ = afterLabel.isEmpty() ? QStringLiteral("after") : afterLabel;
  const bool samples_ok = stats.sample_before.rows() > 0 &&
                          stats.sample_before.cols() == channels_ &&
                          stats.sample_after.rows() == stats.sample_before.rows() &&
                          stats.sample_after.cols() == channels_ && channels_ > 0;
  if (samples_ok) {
    sample_before_ = stats.sample_before;
    sample_after_ = stats.sample_after;
    sample_tokens_ = stats.sample_tokens;
    bytes_before_ = stats.sample_e8m0_before(mx);
    bytes_after_ = stats.sample_e8m0_after(mx);
  } else {
    sample_before_.resize(0, channels_);
    sample_after_.resize(0, channels_);
    sample_tokens_.clear();
    bytes_before_.clear();
    bytes_after_.clear();
  }
  auto sized = [this](const std::vector<float>& v) {
    return v.size() == size_t(channels_) ? v : std::vector<float>();
  };
  absmax_before_ = sized(stats.absmax_before);
  absmax_after_ = sized(stats.absmax_after);

  removeItems();
  fillHeatmaps();
  fillBars();
  addBlockLines();
  addLabels();
  recolorItems();
  resetHeatmaps();
  resetBars();
  heat_panel_->replotQueued();
  bars_panel_->replotQueued();
}

void OutliersView::removeItems() {
  for (QCPAbstractItem* item : heat_items_) heat_panel_->plot()->removeItem(item);
  for (QCPAbstractItem* item : bar_items_ + label_items_) bars_panel_->plot()->removeItem(item);
  heat_items_.clear();
  bar_items_.clear();
  label_items_.clear();
  labelled_.clear();
}

void OutliersView::fillHeatmaps() {
  before_title_->setText(before_label_);
  after_title_->setText(after_label_);
  const int rows = int(sample_before_.rows());
  if (rows == 0) {
    for (QCPColorMap* map : {before_map_, after_map_}) {
      map->data()->clear();
      map->setVisible(false);
    }
    heat_panel_->setMessage(channels_ > 0 ? kNoSamplesMessage : QStringLiteral("no site selected"));
    return;
  }
  heat_panel_->setMessage(QString());
  color_range_ = colorRangeOf(sample_before_, sample_after_);
  for (auto [map, sample] :
       {std::pair{before_map_, &sample_before_}, std::pair{after_map_, &sample_after_}}) {
    QCPColorMapData* data = map->data();
    data->setSize(channels_, rows);  // reallocates only when the size changes
    data->setRange(QCPRange(0, channels_ - 1), QCPRange(0, rows - 1));
    for (int r = 0; r < rows; ++r) {
      const float* x = sample->row(r).data();
      for (int c = 0; c < channels_; ++c) data->setCell(c, r, clampCell(x[c], color_range_));
    }
    map->setVisible(true);
  }
  scale_->setDataRange(color_range_);  // both maps follow the scale
}

void OutliersView::fillBars() {
  const QString before_name = QStringLiteral("absmax ") + before_label_;
  const QString after_name = QStringLiteral("absmax ") + after_label_;
  bars_before_->setName(before_name);
  bars_after_->setName(after_name);
  for (auto [bars, values] :
       {std::pair{bars_before_, &absmax_before_}, std::pair{bars_after_, &absmax_after_}}) {
    QVector<double> keys(qsizetype(values->size())), heights(qsizetype(values->size()));
    for (size_t c = 0; c < values->size(); ++c) {
      keys[qsizetype(c)] = double(c);
      const double v = (*values)[c];
      heights[qsizetype(c)] = std::isfinite(v) ? v : 0.0;  // QCPBars cannot draw Inf/NaN
    }
    bars->setData(keys, heights, true);
  }
}

void OutliersView::addBlockLines() {
  QPen pen(plotOverlayColor(palette()), 0);
  for (int b = 1; b < blocks_; ++b) {
    const double x = b * kStatsBlock - 0.5;
    if (sample_before_.rows() > 0) {
      heat_items_ << verticalLine(heat_panel_->plot(), before_rect_, x, pen);
      heat_items_ << verticalLine(heat_panel_->plot(), after_rect_, x, pen);
    }
    bar_items_ << verticalLine(bars_panel_->plot(), bars_panel_->plot()->axisRect(), x, pen);
  }
}

void OutliersView::addLabels() {
  if (absmax_before_.empty()) return;
  // Rank by absmax before the transform (the outliers the method is meant to tame); NaN last.
  std::vector<int> order(absmax_before_.size());
  std::iota(order.begin(), order.end(), 0);
  auto key = [this](int c) {
    const float v = absmax_before_[size_t(c)];
    return std::isnan(v) ? -1.0 : double(v);
  };
  const int k = std::min<int>(kLabelledChannels, int(order.size()));
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int a, int b) { return key(a) > key(b) || (key(a) == key(b) && a < b); });
  QCustomPlot* plot = bars_panel_->plot();
  // Labels of neighbouring channels would print over each other: a label within `near`
  // channels of a higher-ranked one sits a line above it.
  const int near = std::max(1, channels_ / 80);
  const int line_px = QFontMetrics(plot->font()).height();
  for (int i = 0; i < k; ++i) {
    const int c = order[size_t(i)];
    int level = 0;
    for (int j = 0; j < i; ++j) level += std::abs(order[size_t(j)] - c) <= near;
    labelled_ << c;
    auto* label = new QCPItemText(plot);
    label->setClipToAxisRect(true);
    label->setSelectable(false);
    label->position->setCoords(c, std::isfinite(key(c)) ? key(c) : 0.0);
    // Near the plot's edges the text grows inwards so it is not clipped at the full view.
    const Qt::Alignment h = c > channels_ * 0.96   ? Qt::AlignRight
                            : c < channels_ * 0.04 ? Qt::AlignLeft
                                                   : Qt::AlignHCenter;
    label->setPositionAlignment(h | Qt::AlignBottom);
    label->setText(QString::number(c));
    label->setPadding(QMargins(0, 0, 0, 2 + level * line_px));
    label_items_ << label;
  }
}

void OutliersView::recolorItems() {
  const QPen pen(plotOverlayColor(palette()), 0);
  for (QCPAbstractItem* item : heat_items_ + bar_items_)
    if (auto* line = qobject_cast<QCPItemStraightLine*>(item)) line->setPen(pen);
  for (QCPAbstractItem* item : label_items_)
    if (auto* label = qobject_cast<QCPItemText*>(item)) label->setColor(plotTextColor(palette()));
}

void OutliersView::resetHeatmaps() {
  const int rows = int(sample_before_.rows());
  const QCPRange x(-0.5, std::max(channels_, 1) - 0.5), y(-0.5, std::max(rows, 1) - 0.5);
  for (QCPAxisRect* rect : {before_rect_, after_rect_}) {
    rect->axis(QCPAxis::atBottom)->setRange(x);
    rect->axis(QCPAxis::atLeft)->setRange(y);
  }
}

void OutliersView::resetBars() {
  QCustomPlot* plot = bars_panel_->plot();
  plot->xAxis->setRange(-0.5, std::max(channels_, 1) - 0.5);
  double top = 0;
  for (const auto* v : {&absmax_before_, &absmax_after_})
    for (float a : *v)
      if (std::isfinite(a)) top = std::max(top, double(a));
  plot->yAxis->setRange(0, top > 0 ? top * 1.3 : 1.0);  // room for the labels and legend
}

QVector<double> OutliersView::absmaxBars(bool after) const {
  QVector<double> out;
  const QCPBars* bars = after ? bars_after_ : bars_before_;
  out.reserve(bars->data()->size());
  for (auto it = bars->data()->constBegin(); it != bars->data()->constEnd(); ++it) out << it->value;
  return out;
}

QCustomPlot* OutliersView::heatmapPlot() const {
  return heat_panel_->plot();
}

QCustomPlot* OutliersView::barsPlot() const {
  return bars_panel_->plot();
}

QString OutliersView::message() const {
  return heat_panel_->message();
}

QString OutliersView::cellText(bool after, int row, int channel) const {
  const RowMatrixXf& sample = after ? sample_after_ : sample_before_;
  if (row < 0 || row >= sample.rows() || channel < 0 || channel >= channels_) return {};
  const int block = channel / kStatsBlock;
  const std::vector<uint8_t>& bytes = after ? bytes_after_ : bytes_before_;
  QString text = QStringLiteral("%1\nrow %2").arg(after ? after_label_ : before_label_).arg(row);
  if (size_t(row) < sample_tokens_.size())
    text += QStringLiteral(" (token %1)").arg(sample_tokens_[size_t(row)]);
  text += QStringLiteral("\nchannel %1, block %2\nx = %3")
              .arg(channel)
              .arg(block)
              .arg(double(sample(row, channel)), 0, 'g', 6);
  const size_t at = size_t(row) * size_t(blocks_) + size_t(block);
  if (at < bytes.size()) text += '\n' + byteText(bytes[at], mx_.scale_rule);
  return text;
}

QString OutliersView::barText(int channel) const {
  if (channel < 0 || channel >= channels_) return {};
  QString text = QStringLiteral("channel %1, block %2").arg(channel).arg(channel / kStatsBlock);
  if (size_t(channel) < absmax_before_.size())
    text += QStringLiteral("\nabsmax %1: %2")
                .arg(before_label_)
                .arg(double(absmax_before_[size_t(channel)]), 0, 'g', 5);
  if (size_t(channel) < absmax_after_.size())
    text += QStringLiteral("\nabsmax %1: %2")
                .arg(after_label_)
                .arg(double(absmax_after_[size_t(channel)]), 0, 'g', 5);
  return text;
}

void OutliersView::hoverHeatmap(QMouseEvent* event) {
  QCustomPlot* plot = heat_panel_->plot();
  QCPAxisRect* rect = plot->axisRectAt(event->position());
  QString text;
  if (rect == before_rect_ || rect == after_rect_) {
    const int c =
        int(std::lround(rect->axis(QCPAxis::atBottom)->pixelToCoord(event->position().x())));
    const int r =
        int(std::lround(rect->axis(QCPAxis::atLeft)->pixelToCoord(event->position().y())));
    text = cellText(rect == after_rect_, r, c);
  }
  if (text.isEmpty())
    QToolTip::hideText();
  else
    QToolTip::showText(event->globalPosition().toPoint(), text, plot);
}

void OutliersView::hoverBars(QMouseEvent* event) {
  QCustomPlot* plot = bars_panel_->plot();
  QString text;
  if (plot->axisRect()->rect().contains(event->position().toPoint()))
    text = barText(int(std::lround(plot->xAxis->pixelToCoord(event->position().x()))));
  if (text.isEmpty())
    QToolTip::hideText();
  else
    QToolTip::showText(event->globalPosition().toPoint(), text, plot);
}

}  // namespace mxlens
