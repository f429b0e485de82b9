#pragma once
// PlotPanel: one QCustomPlot with what every mxlens plot does (gui.md "Behaviour people
// expect"): zoom and pan with the mouse, a double click resets the axes to the data, a context
// menu exports PNG/SVG/PDF, colours follow the widget palette (light and dark), and a message
// can stand in for the data ("no activation rows sampled ...") instead of empty axes.
//
// Views compose one or more panels and put their plottables into plot(). A view that owns
// items drawn in palette colours listens to paletteApplied() and recolours them.
#include <functional>
#include <vector>

#include <QColor>
#include <QPointer>
#include <QSharedPointer>
#include <QString>
#include <QWidget>

class QCustomPlot;
class QCPAxis;
class QCPAxisRect;
class QCPAxisTicker;
class QCPColorMap;
class QCPColorScale;
class QCPTextElement;
class QFont;
class QCPItemText;
class QCPLayerable;
class QMenu;
class QPalette;

namespace mxlens {

// Writes `plot` to `path`; the suffix picks the format (.png, .pdf, .svg; any case). The size
// is the plot's current size, or 800×600 while it has none (never shown). Returns false and
// sets *error (when given) to a sentence naming the file and the reason.
bool exportPlot(QCustomPlot* plot, const QString& path, QString* error = nullptr);
// Whether this build writes SVG (Qt SVG was found when mxlens was configured).
bool svgExportAvailable();

// Plot colours from a palette: text, axes and ticks from WindowText, background from Base,
// grid lines a faint mix of the two. Applies to every axis rect, colour scale, legend and
// text element of the plot.
void applyPlotPalette(QCustomPlot* plot, const QPalette& palette);
QColor plotTextColor(const QPalette& palette);
QColor plotGridColor(const QPalette& palette);
// A line colour for overlays (block boundaries) that reads on both the plot background and a
// heatmap: the text colour at partial opacity.
QColor plotOverlayColor(const QPalette& palette, int alpha = 110);

// Ticks on integers only (channels, blocks, rows, exponents): never 2.5 of a block.
QSharedPointer<QCPAxisTicker> integerAxisTicker();

// Keeps the ranges of two axes equal in both directions (zooming one zooms the other); the
// other axis' plot is replotted (queued) when it lives in a different QCustomPlot.
void linkAxes(QCPAxis* a, QCPAxis* b);

// Two axis rects side by side under titles (row 0), a colour scale at the right sharing their
// top and bottom margins, and one crisp colour map per rect drawn through that scale (rows of
// sampled tokens downwards, `x_label` along the bottom): the before/after heatmaps of the
// Outliers and Scales views. Replaces the plot's layout; the elements belong to the plot.
struct BeforeAfterLayout {
  QCPTextElement* before_title = nullptr;
  QCPTextElement* after_title = nullptr;
  QCPAxisRect* before = nullptr;
  QCPAxisRect* after = nullptr;
  QCPColorScale* scale = nullptr;
  QCPColorMap* before_map = nullptr;
  QCPColorMap* after_map = nullptr;
};
BeforeAfterLayout buildBeforeAfterLayout(QCustomPlot* plot, const QFont& title_font,
                                         const QString& x_label);

class PlotPanel : public QWidget {
  Q_OBJECT
 public:
  explicit PlotPanel(QWidget* parent = nullptr);

  QCustomPlot* plot() const { return plot_; }

  // What a double click (and "Reset view") does; default: rescale every axis to the data of
  // its plottables. The handler replaces the default; resetView() replots afterwards.
  void setResetHandler(std::function<void()> reset);
  void resetView();

  // A non-empty message hides the axis rects and colour scales and shows the text centred in
  // the plot; an empty one brings them back. Exports carry the message too.
  void setMessage(const QString& text);
  QString message() const { return message_text_; }

  // File name (without suffix) suggested by the export dialog.
  void setExportName(const QString& base_name) { export_name_ = base_name; }
  QString exportName() const { return export_name_; }
  bool exportTo(const QString& path, QString* error = nullptr) const;

  // The context menu the plot shows: Reset view, Export PNG…/SVG…/PDF… (SVG disabled, saying
  // why, without Qt SVG). The caller owns the menu; a view may add its own actions.
  QMenu* createContextMenu(QWidget* parent = nullptr);

  // replot(rpQueuedReplot): bursts of updates coalesce into one paint.
  void replotQueued();

  // Styles every element of the plot from the widget palette. Runs on palette changes and
  // when the panel is polished (before it is first shown), so elements a view adds after
  // constructing the panel are covered; a view may also call it directly.
  void applyPalette();

 signals:
  // Emitted after the plot took the colours of a new palette.
  void paletteApplied();
  void viewReset();

 protected:
  void changeEvent(QEvent* event) override;
  bool event(QEvent* event) override;

 private:
  void showContextMenu(const QPoint& pos);
  void exportWithDialog(const QString& suffix);

  QCustomPlot* plot_;
  QPointer<QCPItemText> message_item_;  // QPointer: a view may clear all items
  QString message_text_;
  QString export_name_ = QStringLiteral("plot");
  QString last_export_dir_;
  std::function<void()> reset_;
  // Layout elements hidden while a message shows, restored when it goes away.
  std::vector<QPointer<QCPLayerable>> hidden_;
};

}  // namespace mxlens
