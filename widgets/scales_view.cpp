#include "widgets/scales_view.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <QLocale>
#include <QSplitter>
#include <QToolTip>
#include <QVBoxLayout>

#include "core/mx/e8m0.h"
#include "widgets/color_maps.h"
#include "widgets/plot_panel.h"

namespace mxlens {

namespace {

const QColor kBeforeColor(0xE6, 0x9F, 0x00);  // Okabe–Ito orange, as OutliersView
const QColor kAfterColor(0x00, 0x72, 0xB2);   // Okabe–Ito blue
constexpr int kMaxLegendLabels = 16;

QString fmt(double v, int decimals) {
  if (std::isnan(v)) return QStringLiteral("–");
  if (std::isinf(v)) return v > 0 ? QStringLiteral("∞") : QStringLiteral("−∞");
  return QString::number(v, 'f', decimals);
}

struct Spread {
  double mean = std::numeric_limits<double>::quiet_NaN();
  int max = 0;
};

// Per sampled token, max − min byte across its blocks (the same bytes core's
// mean_exponent_spread_* uses, so the numbers agree with the badge).
Spread spreadOf(const std::vector<uint8_t>& bytes, int rows, int blocks) {
  Spread s;
  if (rows <= 0 || blocks <= 0 || bytes.size() != size_t(rows) * size_t(blocks)) return s;
  double total = 0;
  for (int r = 0; r < rows; ++r) {
    const auto first = bytes.begin() + ptrdiff_t(r) * blocks;
    const auto [lo, hi] = std::minmax_element(first, first + blocks);
    const int spread = int(*hi) - int(*lo);
    total += spread;
    s.max = std::max(s.max, spread);
  }
  s.mean = total / rows;
  return s;
}

double relativeRmsError(const std::vector<double>& signal, const std::vector<double>& noise) {
  double s = 0, n = 0;
  for (double v : signal) s += v;
  for (double v : noise) n += v;
  return s > 0 ? std::sqrt(n / s) : std::numeric_limits<double>::quiet_NaN();
}

QString byteText(uint8_t byte, ScaleRule rule) {
  if (byte == kE8M0Nan) return QStringLiteral("E8M0 0xFF: NaN (the block holds Inf or NaN)");
  QString text =
      QStringLiteral("E8M0 %1: scale %2").arg(byte).arg(powerOfTwoLabel(e8m0_exponent(byte)));
  if (rule == ScaleRule::fpquant) text += QStringLiteral(" × 4/3");
  if (byte == 0) text += QStringLiteral(" (an all-zero block)");
  if (rule == ScaleRule::dqv2_log8) text += QStringLiteral(" (ocp_floor byte)");
  return text;
}

QCPBars* makeBars(QCustomPlot* plot, const QColor& color, int alpha, double width) {
  auto* bars = new QCPBars(plot->xAxis, plot->yAxis);
  QColor fill = color;
  fill.setAlpha(alpha);
  bars->setBrush(fill);
  bars->setPen(QPen(color, 0));
  bars->setWidth(width);
  bars->setAntialiased(false);
  return bars;
}

}  // namespace

ScalesView::ScalesView(QWidget* parent)
    : QWidget(parent),
      map_panel_(new PlotPanel),
      hist_panel_(new PlotPanel),
      sqnr_panel_(new PlotPanel),
      summary_(new QLabel) {
  map_panel_->setExportName(QStringLiteral("scales-e8m0"));
  hist_panel_->setExportName(QStringLiteral("scales-histogram"));
  sqnr_panel_->setExportName(QStringLiteral("scales-sqnr"));
  summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  summary_->setWordWrap(true);
  summary_->setContentsMargins(6, 4, 6, 4);

  auto* bottom = new QSplitter(Qt::Horizontal);
  bottom->addWidget(hist_panel_);
  bottom->addWidget(sqnr_panel_);
  auto* splitter = new QSplitter(Qt::Vertical);
  splitter->addWidget(map_panel_);
  splitter->addWidget(bottom);
  splitter->setStretchFactor(0, 3);
  splitter->setStretchFactor(1, 2);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(summary_);
  layout->addWidget(splitter, 1);

  buildMapPlot();
  buildHistogramPlot();
  buildSqnrPlot();
  linkAxes(before_rect_->axis(QCPAxis::atBottom), after_rect_->axis(QCPAxis::atBottom));
  linkAxes(before_rect_->axis(QCPAxis::atLeft), after_rect_->axis(QCPAxis::atLeft));
  map_panel_->setResetHandler([this] { resetMaps(); });
  hist_panel_->setResetHandler([this] { resetHistogram(); });
  sqnr_panel_->setResetHandler([this] { resetSqnr(); });
  connect(map_panel_->plot(), &QCustomPlot::mouseMove, this, &ScalesView::hoverMap);
  clear();
  // The panels styled their plots before the titles, colour scale and legends were added.
  for (PlotPanel* panel : {map_panel_, hist_panel_, sqnr_panel_}) panel->applyPalette();
}

void ScalesView::buildMapPlot() {
  QCustomPlot* plot = map_panel_->plot();
  const BeforeAfterLayout l = buildBeforeAfterLayout(plot, QFont(font().family(), -1, QFont::Bold),
                                                     QStringLiteral("block (32 channels)"));
  before_title_ = l.before_title;
  after_title_ = l.after_title;
  before_rect_ = l.before;
  after_rect_ = l.after;
  scale_ = l.scale;
  before_map_ = l.before_map;
  after_map_ = l.after_map;

  scale_->axis()->setLabel(QStringLiteral("block scale"));
}

void ScalesView::buildHistogramPlot() {
  QCustomPlot* plot = hist_panel_->plot();
  plot->xAxis->setLabel(QStringLiteral("block exponent k (scale 2ᵏ)"));
  plot->yAxis->setLabel(QStringLiteral("token-blocks"));
  plot->xAxis->setTicker(integerAxisTicker());
  // Overlaid, not grouped: the two distributions share each exponent's slot.
  hist_before_ = makeBars(plot, kBeforeColor, 110, 0.85);
  hist_after_ = makeBars(plot, kAfterColor, 110, 0.85);
  plot->legend->setVisible(true);
  plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
}

void ScalesView::buildSqnrPlot() {
  QCustomPlot* plot = sqnr_panel_->plot();
  plot->xAxis->setLabel(QStringLiteral("block"));
  plot->yAxis->setLabel(QStringLiteral("SQNR (dB)"));
  plot->xAxis->setTicker(integerAxisTicker());
  auto* group = new QCPBarsGroup(plot);
  group->setSpacingType(QCPBarsGroup::stAbsolute);
  group->setSpacing(1);
  sqnr_before_ = makeBars(plot, kBeforeColor, 255, 0.4);
  sqnr_after_ = makeBars(plot, kAfterColor, 255, 0.4);
  sqnr_before_->setBarsGroup(group);
  sqnr_after_->setBarsGroup(group);
  plot->legend->setVisible(true);
  plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
}

void ScalesView::clear() {
  setStats(SiteStats{}, QuantOptions{}, QString(), QString());
}

void ScalesView::setStats(const SiteStats& stats, const QuantOptions& mx, QString before,
                          QString after) {
  mx_ = mx;
  before_label_ = before.isEmpty() ? QStringLiteral("before") : before;
  after_label_ = after.isEmpty() ? QStringLiteral("after") : after;
  const int channels = std::max(stats.channels, 0);
  channels_ = channels;
  blocks_ = (channels + kStatsBlock - 1) / kStatsBlock;
  const bool samples_ok = channels > 0 && stats.sample_before.rows() > 0 &&
                          stats.sample_before.cols() == channels &&
                          stats.sample_after.rows() == stats.sample_before.rows() &&
                          stats.sample_after.cols() == channels;
  rows_ = samples_ok ? int(stats.sample_before.rows()) : 0;
  if (samples_ok) {
    bytes_before_ = stats.sample_e8m0_before(mx);
    bytes_after_ = stats.sample_e8m0_after(mx);
    sample_tokens_ = stats.sample_tokens;
  } else {
    bytes_before_.clear();
    bytes_after_.clear();
    sample_tokens_.clear();
  }
  fillMaps();
  fillHistogram(stats);
  fillSqnr(stats);
  fillSummary(stats);
  resetMaps();
  resetHistogram();
  resetSqnr();
  for (PlotPanel* panel : {map_panel_, hist_panel_, sqnr_panel_}) panel->replotQueued();
}

void ScalesView::fillMaps() {
  before_title_->setText(before_label_);
  after_title_->setText(after_label_);
  if (rows_ == 0) {
    for (QCPColorMap* map : {before_map_, after_map_}) {
      map->data()->clear();
      map->setVisible(false);
    }
    map_panel_->setMessage(blocks_ > 0 ? kNoSamplesMessage : QStringLiteral("no site selected"));
    return;
  }
  map_panel_->setMessage(QString());
  // Colour range: the bytes present, leaving out the special 0 and 0xFF unless alone.
  int lo = 255, hi = 0, lo_all = 255, hi_all = 0;
  for (const auto* bytes : {&bytes_before_, &bytes_after_})
    for (uint8_t b : *bytes) {
      lo_all = std::min<int>(lo_all, b);
      hi_all = std::max<int>(hi_all, b);
      if (b == 0 || b == kE8M0Nan) continue;
      lo = std::min<int>(lo, b);
      hi = std::max<int>(hi, b);
    }
  if (lo > hi) {
    lo = lo_all;
    hi = hi_all;
  }

  for (auto [map, bytes] :
       {std::pair{before_map_, &bytes_before_}, std::pair{after_map_, &bytes_after_}}) {
    QCPColorMapData* data = map->data();
    data->setSize(blocks_, rows_);
    data->setRange(QCPRange(0, blocks_ - 1), QCPRange(0, rows_ - 1));
    for (int r = 0; r < rows_; ++r)
      for (int b = 0; b < blocks_; ++b)
        data->setCell(b, r, double((*bytes)[size_t(r) * size_t(blocks_) + size_t(b)]));
    map->setVisible(true);
  }
  scale_->setGradient(categoricalGradient(lo, hi));
  // A one-byte range still needs width: half a unit each side keeps the byte in the middle.
  scale_->setDataRange(lo < hi ? QCPRange(lo, hi) : QCPRange(lo - 0.5, hi + 0.5));

  // Legend in powers of two, every byte while they fit, else every n-th.
  auto ticker = QSharedPointer<QCPAxisTickerText>::create();
  const int step = std::max(1, (hi - lo + kMaxLegendLabels) / kMaxLegendLabels);
  for (int b = lo; b <= hi; b += step)
    ticker->addTick(b, b == kE8M0Nan ? QStringLiteral("NaN") : powerOfTwoLabel(e8m0_exponent(b)));
  scale_->axis()->setTicker(ticker);
  scale_->axis()->setSubTicks(false);
}

void ScalesView::fillHistogram(const SiteStats& stats) {
  hist_before_->setName(before_label_);
  hist_after_->setName(after_label_);
  const size_t n_blocks = size_t(std::max(stats.blocks, 0));
  int lo = 255, hi = -1, lo_any = 255, hi_any = -1;
  for (auto [bars, hist] : {std::pair{hist_before_, &stats.e8m0_hist_before},
                            std::pair{hist_after_, &stats.e8m0_hist_after}}) {
    if (hist->size() != n_blocks * 256 || n_blocks == 0) {
      bars->data()->clear();
      continue;
    }
    QVector<double> keys(255), counts(255, 0.0);
    for (int e = 0; e < 255; ++e) keys[e] = e8m0_exponent(uint8_t(e));
    for (size_t b = 0; b < n_blocks; ++b)
      for (int e = 0; e < 255; ++e) counts[e] += double((*hist)[b * 256 + size_t(e)]);
    for (int e = 0; e < 255; ++e) {
      if (counts[e] == 0) continue;
      lo_any = std::min(lo_any, e);
      hi_any = std::max(hi_any, e);
      if (e == 0) continue;  // all-zero blocks would stretch the axis to 2⁻¹²⁷
      lo = std::min(lo, e);
      hi = std::max(hi, e);
    }
    bars->setData(keys, counts, true);
  }
  if (lo > hi) {
    lo = lo_any;
    hi = hi_any;
  }
  hist_lo_ = hi >= lo ? e8m0_exponent(uint8_t(lo)) : -10;
  hist_hi_ = hi >= lo ? e8m0_exponent(uint8_t(hi)) : 10;
}

void ScalesView::fillSqnr(const SiteStats& stats) {
  sqnr_before_->setName(before_label_);
  sqnr_after_->setName(after_label_);
  for (auto [bars, db] : {std::pair{sqnr_before_, stats.sqnr_db_before()},
                          std::pair{sqnr_after_, stats.sqnr_db_after()}}) {
    QVector<double> keys, values;
    keys.reserve(qsizetype(db.size()));
    values.reserve(qsizetype(db.size()));
    for (size_t b = 0; b < db.size(); ++b)
      if (std::isfinite(db[b])) {
        keys << double(b);
        values << db[b];
      }
    bars->setData(keys, values, true);
  }
}

void ScalesView::fillSummary(const SiteStats& stats) {
  QStringList parts;
  parts << QStringLiteral("tokens %1").arg(QLocale().toString(qlonglong(stats.tokens)));
  if (rows_ > 0) {
    const Spread sb = spreadOf(bytes_before_, rows_, blocks_);
    const Spread sa = spreadOf(bytes_after_, rows_, blocks_);
    parts << QStringLiteral("exponent spread mean %1 → %2, max %3 → %4 (%5 sampled rows)")
                 .arg(fmt(sb.mean, 2), fmt(sa.mean, 2))
                 .arg(sb.max)
                 .arg(sa.max)
                 .arg(rows_);
  } else {
    parts << QStringLiteral("exponent spread: no sampled rows");
  }
  parts << QStringLiteral("SQNR %1 → %2 dB")
               .arg(fmt(stats.total_sqnr_db_before(), 2), fmt(stats.total_sqnr_db_after(), 2));
  const double eb = relativeRmsError(stats.signal_before, stats.noise_before);
  const double ea = relativeRmsError(stats.signal_after, stats.noise_after);
  parts << QStringLiteral("relative RMS error %1 % → %2 %").arg(fmt(100 * eb, 2), fmt(100 * ea, 2));
  auto nan_blocks = [&](const std::vector<uint32_t>& hist) {
    uint64_t n = 0;
    if (hist.size() == size_t(std::max(stats.blocks, 0)) * 256)
      for (size_t b = 0; b < size_t(stats.blocks); ++b) n += hist[b * 256 + kE8M0Nan];
    return n;
  };
  const uint64_t nb = nan_blocks(stats.e8m0_hist_before), na = nan_blocks(stats.e8m0_hist_after);
  if (nb + na > 0) parts << QStringLiteral("NaN blocks %1 → %2").arg(nb).arg(na);
  summary_->setText(QStringLiteral("%1 → %2: ").arg(before_label_, after_label_) +
                    parts.join(QStringLiteral(" · ")));
}

void ScalesView::resetMaps() {
  const QCPRange x(-0.5, std::max(blocks_, 1) - 0.5), y(-0.5, std::max(rows_, 1) - 0.5);
  for (QCPAxisRect* rect : {before_rect_, after_rect_}) {
    rect->axis(QCPAxis::atBottom)->setRange(x);
    rect->axis(QCPAxis::atLeft)->setRange(y);
  }
}

void ScalesView::resetHistogram() {
  QCustomPlot* plot = hist_panel_->plot();
  plot->xAxis->setRange(hist_lo_ - 1.5, hist_hi_ + 1.5);
  double top = 0;
  for (QCPBars* bars : {hist_before_, hist_after_})
    for (auto it = bars->data()->constBegin(); it != bars->data()->constEnd(); ++it)
      top = std::max(top, it->value);
  plot->yAxis->setRange(0, top > 0 ? top * 1.3 : 1.0);  // room for the legend
}

void ScalesView::resetSqnr() {
  QCustomPlot* plot = sqnr_panel_->plot();
  plot->xAxis->setRange(-0.6, std::max(blocks_, 1) - 0.4);
  double lo = 0, hi = 0;
  for (QCPBars* bars : {sqnr_before_, sqnr_after_})
    for (auto it = bars->data()->constBegin(); it != bars->data()->constEnd(); ++it) {
      lo = std::min(lo, it->value);
      hi = std::max(hi, it->value);
    }
  plot->yAxis->setRange(lo * 1.08, hi > lo ? hi * 1.3 : lo + 1.0);  // room for the legend
}

double ScalesView::exponentCell(bool after, int row, int block) const {
  const QCPColorMap* map = exponentMap(after);
  if (!map->visible() || row < 0 || row >= rows_ || block < 0 || block >= blocks_)
    return std::numeric_limits<double>::quiet_NaN();
  return map->data()->cell(block, row);
}

QVector<double> ScalesView::histogramBars(bool after) const {
  QVector<double> out;
  const QCPBars* bars = after ? hist_after_ : hist_before_;
  out.reserve(bars->data()->size());
  for (auto it = bars->data()->constBegin(); it != bars->data()->constEnd(); ++it) out << it->value;
  return out;
}

QVector<double> ScalesView::sqnrBars(bool after) const {
  QVector<double> out(blocks_, std::numeric_limits<double>::quiet_NaN());
  const QCPBars* bars = after ? sqnr_after_ : sqnr_before_;
  for (auto it = bars->data()->constBegin(); it != bars->data()->constEnd(); ++it) {
    const int b = int(it->key);
    if (b >= 0 && b < blocks_) out[b] = it->value;
  }
  return out;
}

QString ScalesView::message() const {
  return map_panel_->message();
}

QCustomPlot* ScalesView::exponentPlot() const {
  return map_panel_->plot();
}
QCustomPlot* ScalesView::histogramPlot() const {
  return hist_panel_->plot();
}
QCustomPlot* ScalesView::sqnrPlot() const {
  return sqnr_panel_->plot();
}

QString ScalesView::cellText(bool after, int row, int block) const {
  if (row < 0 || row >= rows_ || block < 0 || block >= blocks_) return {};
  const std::vector<uint8_t>& bytes = after ? bytes_after_ : bytes_before_;
  QString text = QStringLiteral("%1\nrow %2").arg(after ? after_label_ : before_label_).arg(row);
  if (size_t(row) < sample_tokens_.size())
    text += QStringLiteral(" (token %1)").arg(sample_tokens_[size_t(row)]);
  text += QStringLiteral("\nblock %1 (channels %2–%3)\n")
              .arg(block)
              .arg(block * kStatsBlock)
              .arg(std::min(channels_, (block + 1) * kStatsBlock) - 1);
  text += byteText(bytes[size_t(row) * size_t(blocks_) + size_t(block)], mx_.scale_rule);
  return text;
}

void ScalesView::hoverMap(QMouseEvent* event) {
  QCustomPlot* plot = map_panel_->plot();
  QCPAxisRect* rect = plot->axisRectAt(event->position());
  QString text;
  if (rect == before_rect_ || rect == after_rect_) {
    const double x = rect->axis(QCPAxis::atBottom)->pixelToCoord(event->position().x());
    const double y = rect->axis(QCPAxis::atLeft)->pixelToCoord(event->position().y());
    text = cellText(rect == after_rect_, int(std::lround(y)), int(std::lround(x)));
  }
  if (text.isEmpty())
    QToolTip::hideText();
  else
    QToolTip::showText(event->globalPosition().toPoint(), text, plot);
}

}  // namespace mxlens
