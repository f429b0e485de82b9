#pragma once
// GreedyView: replays one DuQuant++ greedy rotation search (gui.md "Greedy search") from its
// trace, one step at a time. Left: the n×n rotation R_k after k steps as a heatmap (diverging
// map centred on 0, fixed range ±1, no interpolation). Right top: the objective of every
// evaluation 0..S, the kept prefix 0..k* shaded, k* marked, the current step as a vertical
// line. Right bottom: the block's absmax profile at this step (per in-block channel j,
// max over rows of |(Z·R_k)[:, j]|) against step 0. Under them: |< < play > >|, speed, a
// slider over 0..S, and the step in words ("step 17: channel 5 swapped with 0,
// range 3.91 → 3.12"). Keys while the view has focus: Left/Right, Home/End, Space.
//
// The view takes plain data and runs nothing: every R_k is built once when the trace is set
// (R_k = R_{k−1}·S_{ids[k−1]}, in double, the same products GreedyTrace::matrix_at_step
// forms), so stepping is instant; the profile of a step is computed when first shown and
// kept.
#include <vector>

#include <Eigen/Core>
#include <QString>
#include <QVector>
#include <QWidget>

#include "core/model/site_taps.h"
#include "core/rotation/greedy_trace.h"

class QCPBars;
class QCPColorMap;
class QCPGraph;
class QCPItemRect;
class QCPItemStraightLine;
class QCPItemText;
class QDoubleSpinBox;
class QLabel;
class QSlider;
class QTimer;
class QToolButton;

namespace mxlens {

class PlotPanel;

class GreedyView : public QWidget {
  Q_OBJECT
 public:
  explicit GreedyView(QWidget* parent = nullptr);

  // `blocks` (Z): rows × n, the search's input reshaped to one block per row; may be empty
  // (the profile panel then says why it is blank). A trace without steps, a Q' of the wrong
  // size, or blocks whose width is not the trace's block size show a message instead of data.
  // Shows step 0.
  void setTrace(const GreedyTrace& trace, Eigen::Ref<const RowMatrixXf> blocks);
  void clear();
  bool hasTrace() const { return !matrices_.empty(); }

  int currentStep() const { return step_; }
  int maxSteps() const { return hasTrace() ? int(matrices_.size()) - 1 : 0; }  // S
  // Clamped to 0..S; emits stepChanged when the step changes.
  void setStep(int k);

  bool isPlaying() const;
  void setPlaying(bool playing);  // playing from the last step starts over at 0
  double speed() const;           // steps per second
  void setSpeed(double steps_per_second);

  // What the view shows, for tests and for the app's status line.
  Eigen::MatrixXd shownMatrix() const;     // exactly the heatmap's cells (n×n, R_k)
  QVector<double> objectiveCurve() const;  // the S+1 objectives plotted
  int keptPrefix() const;                  // k* (the shaded prefix is 0..k*); −1 without trace
  QString stepText() const;                // the sentence under the plots
  // The absmax profile at the current step, or at step 0; empty without blocks.
  QVector<double> profile(bool atStep0) const;

  // The controls, for tests and for the app to put actions next to them. Object names:
  // "greedyFirst", "greedyPrevious", "greedyPlay", "greedyNext", "greedyLast", "greedySpeed",
  // "greedySlider", "greedyStepText".
  QToolButton* firstButton() const { return first_; }
  QToolButton* previousButton() const { return previous_; }
  QToolButton* playButton() const { return play_; }
  QToolButton* nextButton() const { return next_; }
  QToolButton* lastButton() const { return last_; }
  QSlider* slider() const { return slider_; }
  PlotPanel* matrixPanel() const { return matrix_panel_; }
  PlotPanel* objectivePanel() const { return objective_panel_; }
  PlotPanel* profilePanel() const { return profile_panel_; }

 signals:
  void stepChanged(int step);
  void playingChanged(bool playing);

 protected:
  void keyPressEvent(QKeyEvent* event) override;

 private:
  void buildMatrixPlot();
  void buildObjectivePlot();
  void buildProfilePlot();
  void recolour();
  void showStep();
  void updateControls();
  void advance();  // the play timer's tick
  const QVector<double>& profileAt(int k) const;
  void resetMatrixView();
  void resetObjectiveView();
  void resetProfileView();

  // The trace's data, kept as plain values.
  GreedyObjective objective_ = GreedyObjective::range;
  std::vector<Eigen::MatrixXd> matrices_;  // R_0..R_S
  std::vector<int32_t> channels_;          // ids[0..S]
  QVector<double> objectives_;             // peaks[0..S]
  int best_step_ = -1;
  Eigen::MatrixXd blocks_;                         // Z in double; 0 rows without blocks
  mutable std::vector<QVector<double>> profiles_;  // [S+1], computed on first use
  int step_ = 0;

  PlotPanel* matrix_panel_;
  PlotPanel* objective_panel_;
  PlotPanel* profile_panel_;
  QCPColorMap* color_map_ = nullptr;
  QCPGraph* objective_graph_ = nullptr;
  QCPGraph* best_marker_ = nullptr;
  QCPItemRect* kept_shade_ = nullptr;
  QCPItemStraightLine* step_line_ = nullptr;
  QCPItemText* best_label_ = nullptr;
  QCPGraph* profile_start_ = nullptr;
  QCPBars* profile_bars_ = nullptr;

  QToolButton* first_;
  QToolButton* previous_;
  QToolButton* play_;
  QToolButton* next_;
  QToolButton* last_;
  QDoubleSpinBox* speed_;
  QSlider* slider_;
  QLabel* text_;
  QTimer* timer_;
};

}  // namespace mxlens
