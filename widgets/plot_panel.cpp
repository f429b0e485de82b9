#include "widgets/plot_panel.h"

#include <algorithm>
#include <cmath>

#include <qcustomplot.h>
#include <QContextMenuEvent>
#include <QDir>
#include <QEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QMenu>
#include <QMessageBox>
#include <QPalette>
#include <QStandardPaths>
#include <QVBoxLayout>

#ifdef MXLENS_HAVE_QT_SVG
#include <QSvgGenerator>
#endif

namespace mxlens {

namespace {

// A plot that was never shown has no useful size yet; exports then use this one.
constexpr int kFallbackWidth = 800;
constexpr int kFallbackHeight = 600;

QColor mix(const QColor& a, const QColor& b, double t) {
  return QColor::fromRgbF(float(a.redF() * (1 - t) + b.redF() * t),
                          float(a.greenF() * (1 - t) + b.greenF() * t),
                          float(a.blueF() * (1 - t) + b.blueF() * t));
}

void styleAxis(QCPAxis* axis, const QColor& text, const QColor& grid, const QColor& subgrid) {
  const QPen line(text, 0);
  axis->setBasePen(line);
  axis->setTickPen(line);
  axis->setSubTickPen(line);
  axis->setTickLabelColor(text);
  axis->setLabelColor(text);
  axis->grid()->setPen(QPen(grid, 0, Qt::DotLine));
  axis->grid()->setSubGridPen(QPen(subgrid, 0, Qt::DotLine));
  axis->grid()->setZeroLinePen(QPen(grid, 0, Qt::SolidLine));
}

bool checkWritten(const QString& path, QString* error) {
  const QFileInfo info(path);
  if (info.exists() && info.size() > 0) return true;
  if (error) *error = QStringLiteral("%1: nothing was written").arg(path);
  return false;
}

}  // namespace

QColor plotTextColor(const QPalette& palette) {
  return palette.color(QPalette::Active, QPalette::WindowText);
}

QColor plotGridColor(const QPalette& palette) {
  return mix(palette.color(QPalette::Active, QPalette::Base), plotTextColor(palette), 0.22);
}

QColor plotOverlayColor(const QPalette& palette, int alpha) {
  QColor c = plotTextColor(palette);
  c.setAlpha(alpha);
  return c;
}

void applyPlotPalette(QCustomPlot* plot, const QPalette& palette) {
  const QColor text = plotTextColor(palette);
  const QColor base = palette.color(QPalette::Active, QPalette::Base);
  const QColor grid = plotGridColor(palette);
  const QColor subgrid = mix(base, text, 0.1);
  plot->setBackground(QBrush(base));
  for (QCPLayoutElement* element : plot->plotLayout()->elements(true)) {
    if (auto* rect = qobject_cast<QCPAxisRect*>(element)) {
      rect->setBackground(QBrush(base));
      for (QCPAxis* axis : rect->axes()) styleAxis(axis, text, grid, subgrid);
    } else if (auto* scale = qobject_cast<QCPColorScale*>(element)) {
      styleAxis(scale->axis(), text, grid, subgrid);
    } else if (auto* title = qobject_cast<QCPTextElement*>(element)) {
      title->setTextColor(text);
    } else if (auto* legend = qobject_cast<QCPLegend*>(element)) {
      legend->setBrush(QBrush(base));
      legend->setBorderPen(QPen(grid, 0));
      legend->setTextColor(text);
      for (int i = 0; i < legend->itemCount(); ++i)
        if (QCPAbstractLegendItem* item = legend->item(i)) item->setTextColor(text);
    }
  }
}

namespace {

// QCustomPlot's readable steps (1, 2, 2.5, 5 × 10ⁿ) restricted to integers: 2.5 becomes 2,
// anything below 1 becomes 1, and sub-ticks only fall on integers.
class IntegerAxisTicker : public QCPAxisTicker {
 protected:
  double getTickStep(const QCPRange& range) override {
    const double step = QCPAxisTicker::getTickStep(range);
    if (step <= 1) return 1;
    if (step < 10) return step == 2.5 ? 2.0 : std::round(step);
    return std::round(step);
  }
  int getSubTickCount(double tickStep) override {
    if (tickStep < 10) return std::max(0, int(tickStep) - 1);
    return QCPAxisTicker::getSubTickCount(tickStep);
  }
};

}  // namespace

QSharedPointer<QCPAxisTicker> integerAxisTicker() {
  return QSharedPointer<IntegerAxisTicker>::create();
}

void linkAxes(QCPAxis* a, QCPAxis* b) {
  // QCPAxis::setRange returns early when the range is unchanged, so the pair settles after
  // one round trip instead of recursing.
  auto follow = [](QCPAxis* from, QCPAxis* to) {
    QObject::connect(from, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), to,
                     [from, to](const QCPRange& range) {
                       to->setRange(range);
                       if (to->parentPlot() != from->parentPlot())
                         to->parentPlot()->replot(QCustomPlot::rpQueuedReplot);
                     });
  };
  follow(a, b);
  follow(b, a);
}

bool svgExportAvailable() {
#ifdef MXLENS_HAVE_QT_SVG
  return true;
#else
  return false;
#endif
}

bool exportPlot(QCustomPlot* plot, const QString& path, QString* error) {
  if (!plot) {
    if (error) *error = QStringLiteral("%1: no plot to export").arg(path);
    return false;
  }
  int width = plot->width(), height = plot->height();
  if (width < 100 || height < 80) {
    width = kFallbackWidth;
    height = kFallbackHeight;
  }
  const QString suffix = QFileInfo(path).suffix().toLower();
  if (suffix == QLatin1String("png")) {
    if (!plot->savePng(path, width, height)) {
      if (error) *error = QStringLiteral("%1: could not write the PNG file").arg(path);
      return false;
    }
    return checkWritten(path, error);
  }
  if (suffix == QLatin1String("pdf")) {
    if (!plot->savePdf(path, width, height, QCP::epNoCosmetic, QStringLiteral("mxlens"))) {
      if (error) *error = QStringLiteral("%1: could not write the PDF file").arg(path);
      return false;
    }
    return checkWritten(path, error);
  }
  if (suffix == QLatin1String("svg")) {
#ifdef MXLENS_HAVE_QT_SVG
    {
      QSvgGenerator generator;
      generator.setFileName(path);
      generator.setSize(QSize(width, height));
      generator.setViewBox(QRect(0, 0, width, height));
      generator.setTitle(QStringLiteral("mxlens plot"));
      QCPPainter painter;
      if (!painter.begin(&generator)) {
        if (error) *error = QStringLiteral("%1: could not open the SVG file").arg(path);
        return false;
      }
      plot->toPainter(&painter, width, height);
      painter.end();
    }
    return checkWritten(path, error);
#else
    if (error)
      *error = QStringLiteral("%1: SVG export is not available (mxlens was built without Qt SVG)")
                   .arg(path);
    return false;
#endif
  }
  if (error)
    *error = QStringLiteral("%1: unknown image format \"%2\" (use .png, .svg or .pdf)")
                 .arg(path, suffix);
  return false;
}

PlotPanel::PlotPanel(QWidget* parent) : QWidget(parent), plot_(new QCustomPlot(this)) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(plot_);
  plot_->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
  plot_->setNoAntialiasingOnDrag(true);
  plot_->setContextMenuPolicy(Qt::CustomContextMenu);
  connect(plot_, &QCustomPlot::customContextMenuRequested, this, &PlotPanel::showContextMenu);
  connect(plot_, &QCustomPlot::mouseDoubleClick, this, [this](QMouseEvent*) { resetView(); });
  applyPalette();
}

void PlotPanel::setResetHandler(std::function<void()> reset) {
  reset_ = std::move(reset);
}

void PlotPanel::resetView() {
  if (reset_)
    reset_();
  else
    plot_->rescaleAxes();
  plot_->replot(QCustomPlot::rpQueuedReplot);
  emit viewReset();
}

void PlotPanel::setMessage(const QString& text) {
  message_text_ = text;
  if (text.isEmpty()) {
    for (const QPointer<QCPLayerable>& layerable : hidden_)
      if (layerable) layerable->setVisible(true);
    hidden_.clear();
    if (message_item_) message_item_->setVisible(false);
  } else {
    if (hidden_.empty()) {
      for (QCPLayoutElement* element : plot_->plotLayout()->elements(true)) {
        if ((qobject_cast<QCPAxisRect*>(element) || qobject_cast<QCPColorScale*>(element) ||
             qobject_cast<QCPLegend*>(element)) &&
            element->visible()) {
          element->setVisible(false);
          hidden_.emplace_back(element);
        }
      }
    }
    if (!message_item_) {
      message_item_ = new QCPItemText(plot_);
      message_item_->setLayer(QStringLiteral("overlay"));
      // An item's parent layerable is its clip axis rect, which the message hides: detach it
      // (setClipToAxisRect(false) alone keeps the parent and with it the hidden state).
      message_item_->setClipToAxisRect(true);
      message_item_->setClipAxisRect(nullptr);
      message_item_->setClipToAxisRect(false);
      message_item_->position->setType(QCPItemPosition::ptViewportRatio);
      message_item_->position->setCoords(0.5, 0.5);
      message_item_->setPositionAlignment(Qt::AlignCenter);
      message_item_->setSelectable(false);
      QFont big = font();
      big.setPointSizeF(big.pointSizeF() * 1.25);
      message_item_->setFont(big);
      message_item_->setColor(plotTextColor(palette()));
    }
    message_item_->setText(text);
    message_item_->setVisible(true);
  }
  replotQueued();
}

bool PlotPanel::exportTo(const QString& path, QString* error) const {
  return exportPlot(plot_, path, error);
}

void PlotPanel::replotQueued() {
  plot_->replot(QCustomPlot::rpQueuedReplot);
}

void PlotPanel::changeEvent(QEvent* event) {
  if (event->type() == QEvent::PaletteChange || event->type() == QEvent::ApplicationPaletteChange)
    applyPalette();
  QWidget::changeEvent(event);
}

bool PlotPanel::event(QEvent* event) {
  if (event->type() == QEvent::Polish) applyPalette();
  return QWidget::event(event);
}

void PlotPanel::applyPalette() {
  applyPlotPalette(plot_, palette());
  if (message_item_) message_item_->setColor(plotTextColor(palette()));
  emit paletteApplied();
  replotQueued();
}

QMenu* PlotPanel::createContextMenu(QWidget* parent) {
  auto* menu = new QMenu(parent);
  menu->addAction(tr("Reset view"), this, &PlotPanel::resetView);
  menu->addSeparator();
  menu->addAction(tr("Export PNG…"), this, [this] { exportWithDialog(QStringLiteral("png")); });
  QAction* svg = menu->addAction(svgExportAvailable()
                                     ? tr("Export SVG…")
                                     : tr("Export SVG… (not available: built without Qt SVG)"),
                                 this, [this] { exportWithDialog(QStringLiteral("svg")); });
  svg->setEnabled(svgExportAvailable());
  menu->addAction(tr("Export PDF…"), this, [this] { exportWithDialog(QStringLiteral("pdf")); });
  return menu;
}

void PlotPanel::showContextMenu(const QPoint& pos) {
  QMenu* menu = createContextMenu(this);
  menu->setAttribute(Qt::WA_DeleteOnClose);
  menu->popup(plot_->mapToGlobal(pos));
}

void PlotPanel::exportWithDialog(const QString& suffix) {
  if (last_export_dir_.isEmpty())
    last_export_dir_ = QStandardPaths::writableLocation(QStandardPaths::PicturesLocation);
  const QString suggested = QDir(last_export_dir_).filePath(export_name_ + '.' + suffix);
  const QString filter = QStringLiteral("%1 (*.%2)").arg(suffix.toUpper(), suffix);
  QString path = QFileDialog::getSaveFileName(this, tr("Export plot"), suggested, filter);
  if (path.isEmpty()) return;
  if (QFileInfo(path).suffix().isEmpty()) path += '.' + suffix;
  last_export_dir_ = QFileInfo(path).absolutePath();
  QString error;
  if (!exportPlot(plot_, path, &error)) QMessageBox::warning(this, tr("Export failed"), error);
}

BeforeAfterLayout buildBeforeAfterLayout(QCustomPlot* plot, const QFont& title_font,
                                         const QString& x_label) {
  QCPLayoutGrid* layout = plot->plotLayout();
  layout->clear();
  BeforeAfterLayout l;
  l.before_title = new QCPTextElement(plot, QString(), title_font);
  l.after_title = new QCPTextElement(plot, QString(), title_font);
  l.before = new QCPAxisRect(plot, true);
  l.after = new QCPAxisRect(plot, true);
  l.scale = new QCPColorScale(plot);
  layout->addElement(0, 0, l.before_title);
  layout->addElement(0, 1, l.after_title);
  layout->addElement(1, 0, l.before);
  layout->addElement(1, 1, l.after);
  layout->addElement(1, 2, l.scale);
  layout->setRowStretchFactor(0, 0.001);
  layout->setColumnStretchFactor(2, 0.001);
  auto* margins = new QCPMarginGroup(plot);
  for (QCPLayoutElement* e :
       {static_cast<QCPLayoutElement*>(l.before), static_cast<QCPLayoutElement*>(l.after),
        static_cast<QCPLayoutElement*>(l.scale)})
    e->setMarginGroup(QCP::msTop | QCP::msBottom, margins);

  l.scale->setType(QCPAxis::atRight);
  l.scale->setBarWidth(12);
  l.scale->setRangeDrag(false);
  l.scale->setRangeZoom(false);
  for (QCPAxisRect* rect : {l.before, l.after}) {
    for (QCPAxis* axis : rect->axes()) axis->grid()->setVisible(false);
    rect->axis(QCPAxis::atBottom)->setLabel(x_label);
    rect->axis(QCPAxis::atLeft)->setRangeReversed(true);  // row 0 on top, like a matrix
    rect->axis(QCPAxis::atBottom)->setTicker(integerAxisTicker());
    rect->axis(QCPAxis::atLeft)->setTicker(integerAxisTicker());
  }
  l.before->axis(QCPAxis::atLeft)->setLabel(QStringLiteral("sampled token row"));
  l.before_map =
      new QCPColorMap(l.before->axis(QCPAxis::atBottom), l.before->axis(QCPAxis::atLeft));
  l.after_map = new QCPColorMap(l.after->axis(QCPAxis::atBottom), l.after->axis(QCPAxis::atLeft));
  for (QCPColorMap* map : {l.before_map, l.after_map}) {
    map->setInterpolate(false);
    map->setTightBoundary(false);
    map->setColorScale(l.scale);  // one scale: both maps share its data range and gradient
  }
  return l;
}

}  // namespace mxlens
