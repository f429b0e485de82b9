#pragma once
// ScalesView (gui.md "Views: Scales"): what a site's transform does to the shared E8M0 block
// scales.
//
//   top     E8M0 exponent maps, sampled token rows × blocks, before and after side by side;
//           one colour per integer byte (categorical), the legend labelled in powers of two
//           (byte e is the scale 2^(e−127)); axes linked.
//   bottom  left: histogram of exponents over all tokens and blocks, before and after
//           overlaid; right: per-block SQNR bars, before/after grouped.
//   summary one line: tokens, mean and max exponent spread (max − min byte across the blocks
//           of a sampled token), site SQNR and relative RMS error, before → after.
//
// Map cells are the E8M0 bytes exactly (core's sample_e8m0_before/after under the given
// options; dqv2_log8 records ocp_floor bytes). The colour range is the bytes present except 0
// (an all-zero block) and 0xFF (a block holding Inf/NaN) when other bytes exist; those two
// draw in the end colours and hover names them. Histogram bars are keyed by exponent
// k = byte − 127 for bytes 0..254 with heights Σ over blocks of e8m0_hist_*; the NaN byte is
// counted in the summary. SQNR bars are sqnr_db_*() where finite (a block without noise,
// +inf, or without signal, NaN, has no bar).
#include <cstdint>
#include <vector>

#include <qcustomplot.h>
#include <QLabel>
#include <QString>
#include <QVector>
#include <QWidget>

#include "core/calib/site_stats.h"
#include "core/mx/quant_options.h"

namespace mxlens {

class PlotPanel;

class ScalesView : public QWidget {
  Q_OBJECT
 public:
  static inline const QString kNoSamplesMessage =
      QStringLiteral("no activation rows sampled: raise --sample-budget-mb");

  explicit ScalesView(QWidget* parent = nullptr);

  void setStats(const SiteStats& stats, const QuantOptions& mx, QString before, QString after);
  void clear();

  // --- for tests and the main window ---------------------------------------------------
  const QCPColorMap* exponentMap(bool after) const { return after ? after_map_ : before_map_; }
  // Map cell (row, block) as plotted: the E8M0 byte; NaN outside the data.
  double exponentCell(bool after, int row, int block) const;
  // Histogram bar heights as plotted, indexed by byte 0..254 (key = byte − 127).
  QVector<double> histogramBars(bool after) const;
  // SQNR bar heights as plotted, indexed by block; NaN where a block has no bar.
  QVector<double> sqnrBars(bool after) const;
  QString summaryText() const { return summary_->text(); }
  QString message() const;  // shown instead of the exponent maps; empty with data
  // What hovering a map cell shows; empty outside the data.
  QString cellText(bool after, int row, int block) const;
  QCustomPlot* exponentPlot() const;
  QCustomPlot* histogramPlot() const;
  QCustomPlot* sqnrPlot() const;
  PlotPanel* exponentPanel() const { return map_panel_; }
  PlotPanel* histogramPanel() const { return hist_panel_; }
  PlotPanel* sqnrPanel() const { return sqnr_panel_; }

 private:
  void buildMapPlot();
  void buildHistogramPlot();
  void buildSqnrPlot();
  void fillMaps();
  void fillHistogram(const SiteStats& stats);
  void fillSqnr(const SiteStats& stats);
  void fillSummary(const SiteStats& stats);
  void resetMaps();
  void resetHistogram();
  void resetSqnr();
  void hoverMap(QMouseEvent* event);

  PlotPanel* map_panel_;
  PlotPanel* hist_panel_;
  PlotPanel* sqnr_panel_;
  QLabel* summary_;
  QCPAxisRect* before_rect_ = nullptr;
  QCPAxisRect* after_rect_ = nullptr;
  QCPTextElement* before_title_ = nullptr;
  QCPTextElement* after_title_ = nullptr;
  QCPColorMap* before_map_ = nullptr;
  QCPColorMap* after_map_ = nullptr;
  QCPColorScale* scale_ = nullptr;
  QCPBars* hist_before_ = nullptr;
  QCPBars* hist_after_ = nullptr;
  QCPBars* sqnr_before_ = nullptr;
  QCPBars* sqnr_after_ = nullptr;

  int channels_ = 0;
  int blocks_ = 0;
  int rows_ = 0;
  std::vector<uint8_t> bytes_before_, bytes_after_;  // [rows × blocks]
  std::vector<int64_t> sample_tokens_;
  QuantOptions mx_;
  QString before_label_, after_label_;
  int hist_lo_ = 0, hist_hi_ = 0;  // exponent span with counts, for the histogram's reset
};

}  // namespace mxlens
