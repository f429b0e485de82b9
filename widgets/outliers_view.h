#pragma once
// OutliersView (gui.md "Views: Outliers"): where the large activations of one site sit, before
// and after the method's transform.
//
//   top     two heatmaps side by side, sampled token rows × channels (before, after), one
//           shared logarithmic colour scale with the same range on both, crisp cells, a
//           vertical line every 32 channels (MX block boundaries); zooming or panning one
//           heatmap moves the other.
//   bottom  per-channel absmax bars (before vs after, grouped), block boundary lines, and the
//           k channels with the largest absmax before the transform labelled with their index.
//
// Cell values are |x| (a float widened to double), clamped into the colour range
// [lo, hi]: hi = the largest finite |x| of both samples, lo = the smallest positive |x| but
// not below hi·1e-6 (six decades); 0 and NaN draw as lo, ±Inf as hi. The colour scale is
// logarithmic, so the colour is log10 |x|. Hover shows the token row, channel, value, block and
// the block's E8M0 byte (core's sample_e8m0_*; dqv2_log8 shows the ocp_floor byte, as core
// records). With no sampled rows the heatmap plot shows a message instead of empty axes; the
// absmax bars still draw.
//
// The view copies what it needs from the SiteStats: the caller may drop them afterwards.
#include <cstdint>
#include <vector>

#include <qcustomplot.h>
#include <QList>
#include <QString>
#include <QVector>
#include <QWidget>

#include "core/calib/site_stats.h"
#include "core/mx/quant_options.h"

namespace mxlens {

class PlotPanel;

class OutliersView : public QWidget {
  Q_OBJECT
 public:
  static constexpr int kLabelledChannels = 5;
  static inline const QString kNoSamplesMessage =
      QStringLiteral("no activation rows sampled: raise --sample-budget-mb");

  explicit OutliersView(QWidget* parent = nullptr);

  // `mx` picks the scale rule of the E8M0 bytes shown on hover.
  void setStats(const SiteStats& stats, QString beforeLabel, QString afterLabel,
                const QuantOptions& mx = {});
  void clear();

  // --- for tests and the main window ---------------------------------------------------
  const QCPColorMap* beforeMap() const { return before_map_; }
  const QCPColorMap* afterMap() const { return after_map_; }
  const QCPColorScale* colorScale() const { return scale_; }
  // The colour range [lo, hi] shared by both heatmaps (see the header comment).
  QCPRange colorRange() const { return color_range_; }
  // Bar heights as plotted, one per channel (empty when nothing is plotted).
  QVector<double> absmaxBars(bool after) const;
  // Channels carrying a label, largest absmax (before) first.
  QList<int> labelledChannels() const { return labelled_; }
  QCustomPlot* plot() const { return heatmapPlot(); }
  QCustomPlot* heatmapPlot() const;
  QCustomPlot* barsPlot() const;
  PlotPanel* heatmapPanel() const { return heat_panel_; }
  PlotPanel* barsPanel() const { return bars_panel_; }
  // The message the heatmap plot shows instead of data; empty when it shows data.
  QString message() const;
  // What hovering a heatmap cell shows; empty outside the data.
  QString cellText(bool after, int row, int channel) const;
  // What hovering the bars at `channel` shows; empty outside the data.
  QString barText(int channel) const;

 private:
  void buildHeatmapPlot();
  void buildBarsPlot();
  void removeItems();
  void fillHeatmaps();
  void fillBars();
  void addBlockLines();
  void addLabels();
  void resetHeatmaps();
  void resetBars();
  void recolorItems();
  void hoverHeatmap(QMouseEvent* event);
  void hoverBars(QMouseEvent* event);

  PlotPanel* heat_panel_;
  PlotPanel* bars_panel_;
  QCPAxisRect* before_rect_ = nullptr;
  QCPAxisRect* after_rect_ = nullptr;
  QCPTextElement* before_title_ = nullptr;
  QCPTextElement* after_title_ = nullptr;
  QCPColorMap* before_map_ = nullptr;
  QCPColorMap* after_map_ = nullptr;
  QCPColorScale* scale_ = nullptr;
  QCPBars* bars_before_ = nullptr;
  QCPBars* bars_after_ = nullptr;
  QList<QCPAbstractItem*> heat_items_, bar_items_, label_items_;
  QList<int> labelled_;
  QCPRange color_range_{1e-6, 1.0};

  // Copied from the stats for hover text and view resets.
  int channels_ = 0;
  int blocks_ = 0;
  int64_t tokens_seen_ = 0;
  RowMatrixXf sample_before_, sample_after_;
  std::vector<int64_t> sample_tokens_;
  std::vector<uint8_t> bytes_before_, bytes_after_;  // [rows × blocks]
  std::vector<float> absmax_before_, absmax_after_;
  QuantOptions mx_;
  QString before_label_, after_label_;
};

}  // namespace mxlens
