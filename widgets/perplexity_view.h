#pragma once
// PerplexityView (gui.md "Perplexity"): the choices of a side-by-side comparison against FP
// (methods, scale rule, backend, windows, sequence length) with Run / Cancel, a live chart of
// each method's running perplexity against evaluated windows, and a results table (PPL,
// ΔPPL vs FP, KL, top-1 agreement, tokens/s) that copies as CSV.
//
// The view runs nothing: Run emits a PerplexityRequest; whoever runs it (the app's job
// runner, with core's run_compare) feeds back addWindow() per window and setMethodResult()
// per finished method, and setRunning() around the run.
#include <map>
#include <vector>

#include <QMetaType>
#include <QPointF>
#include <QString>
#include <QStringList>
#include <QVector>
#include <QWidget>

#include "core/calib/compare.h"
#include "core/calib/method.h"
#include "core/eval/perplexity.h"
#include "core/mx/quant_options.h"

class QCheckBox;
class QComboBox;
class QCPGraph;
class QListWidget;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace mxlens {

class PlotPanel;

enum class EvalBackend { cpu, cuda };

// What Run asks for: a plain struct the app turns into CompareOptions.
struct PerplexityRequest {
  std::vector<Method> methods{Method::fp};  // in kAllMethods order, fp always first
  ScaleRule scale_rule = ScaleRule::ocp_floor;
  EvalBackend backend = EvalBackend::cpu;
  int64_t max_windows = 0;  // 0 = every usable window (CompareOptions::max_windows)
  int seqlen = 2048;

  bool operator==(const PerplexityRequest&) const = default;
};

class PerplexityView : public QWidget {
  Q_OBJECT
 public:
  explicit PerplexityView(QWidget* parent = nullptr);

  // The choices shown, and setting them (restoring last settings). setRequest ignores fp's
  // absence (fp is always run) and falls back to CPU when CUDA is unavailable.
  PerplexityRequest request() const;
  void setRequest(const PerplexityRequest& request);
  // The CUDA backend item: enabled or not; the reason is its tooltip (why it is unavailable,
  // or which device it would use).
  void setCudaAvailability(bool available, const QString& reason);
  // Caps the sequence length spin box (the model's context); ≥ 2.
  void setMaxSeqlen(int max_seqlen);

  // Run disabled and Cancel enabled while running; the choices are locked meanwhile.
  void setRunning(bool running);
  bool isRunning() const { return running_; }

  // Live chart: appends (window+1, running_ppl) to that method's line and queues a replot.
  void addWindow(Method method, const WindowResult& window);
  // Fills (or replaces) the method's table row.
  void setMethodResult(const MethodResult& result);
  // Empties the chart and the table.
  void resetResults();

  // The table as CSV (header and one line per row; cells as shown, a missing value empty,
  // fields quoted only where they need it), and putting it on the clipboard.
  QString csv() const;
  void copyCsv() const;

  // For tests and the app.
  QStringList chartMethods() const;  // method names with a line, in order of first window
  int graphPointCount(Method method) const;
  QVector<QPointF> graphPoints(Method method) const;  // (window+1, running PPL)
  int tableRowCount() const;
  int tableColumnCount() const;
  QString tableCell(int row, int column) const;
  QString tableHeader(int column) const;
  QTableWidget* table() const { return table_; }
  QComboBox* backendCombo() const { return backend_; }
  QComboBox* scaleRuleCombo() const { return scale_rule_; }
  QListWidget* methodList() const { return methods_; }
  QSpinBox* windowsSpinBox() const { return windows_; }
  QSpinBox* seqlenSpinBox() const { return seqlen_; }
  QPushButton* runButton() const { return run_; }
  QPushButton* cancelButton() const { return cancel_; }
  PlotPanel* chartPanel() const { return chart_panel_; }

 signals:
  void runRequested(const mxlens::PerplexityRequest& request);
  void cancelRequested();

 protected:
  bool eventFilter(QObject* watched, QEvent* event) override;

 private:
  QCPGraph* graphFor(Method method);
  void recolour();
  void resetChartView();
  int rowFor(Method method);

  bool running_ = false;
  bool follow_data_ = true;  // rescale on new windows until the user zooms or pans
  int64_t chart_windows_ = 0;
  std::map<Method, QCPGraph*> graphs_;
  std::vector<Method> chart_order_;
  std::vector<Method> table_order_;

  QListWidget* methods_;
  QComboBox* scale_rule_;
  QComboBox* backend_;
  QSpinBox* windows_;
  QSpinBox* seqlen_;
  QPushButton* run_;
  QPushButton* cancel_;
  PlotPanel* chart_panel_;
  QTableWidget* table_;
  QPushButton* copy_;
};

}  // namespace mxlens

Q_DECLARE_METATYPE(mxlens::PerplexityRequest)
