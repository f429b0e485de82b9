#pragma once
// The workbench window (gui.md): menus and a toolbar with the method selector; left dock with
// the model tree and the details of the selection and of the model; centre tabs Outliers,
// Scales, Greedy search, Perplexity; a status bar with the running job, its progress, ETA
// and Cancel.
//
// It computes nothing itself. Opening a checkpoint (File ▸ Open, Open Recent, drag and drop,
// the command line) checks it here, synchronously and cheaply (config, shard headers, tensor
// shapes, norm vectors), so that a failed open leaves everything as it was; then the model
// goes to the job runner, which tokenizes the calibration text and runs a quick calibration
// with the selected method. Everything slow (calibration, evaluation, session files, the
// demo model) runs on the runner (job_runner.h, workbench_jobs.h); results come back as
// shared immutable sessions and are handed to the panels (SessionObserver).
#include <QList>
#include <QMainWindow>
#include <QStringList>
#include <QTemporaryDir>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/calib/method.h"
#include "core/export/export.h"
#include "core/model/site_taps.h"

class QAction;
class QComboBox;
class QElapsedTimer;
class QLabel;
class QMenu;
class QMimeData;
class QProgressBar;
class QSplitter;
class QStackedWidget;
class QTabWidget;
class QToolButton;

namespace mxlens {
class Checkpoint;
class GreedyView;
class OutliersView;
class PerplexityView;
class ScalesView;
struct PerplexityRequest;
struct Session;
}  // namespace mxlens

namespace mxlens::gui {

class JobRunner;
class ModelSummaryPanel;
class ModelTree;
class SessionObserver;
class SiteViews;

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  // Shows a failure to the user. The default is a modal QMessageBox; tests inject a recorder.
  using ErrorReporter = std::function<void(const QString& title, const QString& message)>;

  static constexpr int kMaxRecent = 10;
  enum Tab { OutliersTab, ScalesTab, GreedyTab, PerplexityTab };

  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  // What File ▸ Open Checkpoint… runs once the dialog has a directory; also used by Open
  // Recent, drag and drop and the command line. On failure the error is reported and the
  // previously open model and session stay. On success the quick calibration is posted.
  // Returns whether the model was opened.
  bool openCheckpoint(const QString& dir);
  // File ▸ Open Demo: writes (once) and opens a tiny random-weight model with planted outlier
  // channels, so every view works without a download. Asynchronous.
  void openDemo();
  // File ▸ Open Session… / Save Session (As)… with the file chosen. Asynchronous (runner).
  void openSessionFile(const QString& file);
  void saveSessionFile(const QString& file);
  // File ▸ Calibration Text… / Evaluation Text…: empty = the built-in text (evaluation: the
  // calibration text). Persisted; with a model open the text is tokenized and (calibration
  // text) the quick calibration re-run.
  void setCalibrationTextFile(const QString& file);
  void setEvaluationTextFile(const QString& file);
  QString calibrationTextFile() const { return calibration_text_; }
  QString evaluationTextFile() const { return evaluation_text_; }

  // The method of the toolbar selector: it decides what "after" means. Changing it re-runs
  // the quick calibration on the open model.
  Method method() const;
  void setMethod(Method method);
  // Run ▸ Quick Calibration / Calibrate (full settings) / Evaluate (the Perplexity tab's run).
  void startQuickCalibration();
  void startCalibration();
  void startPerplexity(const PerplexityRequest& request);
  void cancelJob();

  // Threads of calibration and evaluation (a setting, persisted; default: all cores).
  int computeThreads() const { return threads_; }
  void setComputeThreads(int threads);

  void setErrorReporter(ErrorReporter reporter);

  // File ▸ Export ▸ Calibrated Checkpoint without the dialogs: exports the current session
  // (core/export/export.h) on the job thread. `force` replaces an existing output.
  void exportCheckpointTo(ExportFormat format, const QString& out, bool force);
  // The choices of the export dialog's format list, in ExportFormat order: each format's
  // one-line description, and, when the current session cannot go to it, why (so the refusal
  // shows before a file name is asked for). Empty without a session.
  QStringList exportFormatChoices() const;
  // The last finished export (for tests and the summary dialog); empty before one.
  std::optional<ExportReport> lastExport() const { return last_export_; }
  // Run ▸ Exportable Smoothing: calibrations tie o_proj smoothing across GQA groups
  // (SmoothingOptions::tie_gqa) so smoothed sessions can be exported. Persisted.
  bool tieGqaSmoothing() const;
  void setTieGqaSmoothing(bool on);

  // --- state and panels, for tests ------------------------------------------------------
  const Checkpoint* checkpoint() const { return checkpoint_.get(); }
  std::shared_ptr<const Session> session() const { return session_; }
  QString sessionFile() const { return session_file_; }
  JobRunner* runner() const { return runner_; }
  ModelSummaryPanel* summaryPanel() const { return summary_; }
  ModelTree* modelTree() const { return tree_; }
  QTabWidget* viewTabs() const { return tabs_; }
  OutliersView* outliersView() const { return outliers_; }
  ScalesView* scalesView() const { return scales_; }
  GreedyView* greedyView() const { return greedy_; }
  PerplexityView* perplexityView() const { return perplexity_; }
  SiteViews* siteViews() const { return site_views_.get(); }
  QString greedyMessage() const;
  QString plantCaveat() const;  // the banner's text; empty for an ordinary checkpoint
  QString jobText() const;      // the status bar's job label
  QStringList recentCheckpoints() const;
  QString aboutText() const;

 protected:
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;
  void closeEvent(QCloseEvent* event) override;

 private:
  void createCentre();
  void createModelDock();
  void createToolBar();
  void createStatusBar();
  void createFileMenu();
  void createViewMenu();
  void createRunMenu();
  void createHelpMenu();
  void connectRunner();
  QAction* addPendingAction(QMenu* menu, const QString& text, const QString& object_name,
                            const QString& what_it_will_do);
  bool openModel(const QString& dir, bool remember);
  void chooseCheckpoint();
  void chooseSessionToOpen();
  void chooseSessionToSave(bool ask);
  void chooseCalibrationText();
  void chooseEvaluationText();
  void chooseExport();
  void rememberRecent(const QString& dir);
  void rebuildRecentMenu();
  void updateTitle();
  void updateActions();
  void setSession(std::shared_ptr<const Session> session);
  void selectSite(int layer, Site site);
  void postCalibration(bool quick);
  void postTextJob();
  void stepGreedy(int delta, bool to_end);
  void onJobStarted(const QString& tag);
  void onJobEnded(const QString& tag, const QString& outcome);
  void onProgress(double fraction, const QString& stage);
  void showNote(const QString& note);
  void showPlantCaveat();
  static QString droppedDirectory(const QMimeData* mime);

  // GUI-side view of the model: the same immutable objects the runner uses.
  std::shared_ptr<const Checkpoint> checkpoint_;
  // One entry per ExportFormat: the dialog label and the session's refusal (empty: possible).
  struct ExportChoice {
    ExportFormat format;
    QString label;
    std::string refusal;
  };
  std::vector<ExportChoice> exportChoices() const;
  std::shared_ptr<const Session> session_;
  QString session_file_;
  // Bumped when another model opens: results of jobs posted for the previous one are dropped.
  uint64_t generation_ = 0;
  QString calibration_text_, evaluation_text_;
  int threads_ = 1;
  ErrorReporter report_error_;
  std::unique_ptr<QTemporaryDir> demo_dir_;
  std::optional<ExportReport> last_export_;
  QAction* tie_gqa_action_ = nullptr;
  QAction* export_action_ = nullptr;

  JobRunner* runner_;
  ModelSummaryPanel* summary_;
  ModelTree* tree_;
  QLabel* site_details_;
  QSplitter* left_splitter_;
  QTabWidget* tabs_;
  OutliersView* outliers_;
  ScalesView* scales_;
  GreedyView* greedy_;
  QStackedWidget* greedy_stack_;
  QLabel* greedy_message_;
  QLabel* plant_banner_;
  PerplexityView* perplexity_;
  std::unique_ptr<SiteViews> site_views_;
  QList<SessionObserver*> observers_;
  QComboBox* method_combo_;
  QMenu* recent_menu_ = nullptr;
  QLabel* backend_label_;
  QLabel* job_label_;
  QProgressBar* job_progress_;
  QLabel* job_eta_;
  QToolButton* job_cancel_;
  std::unique_ptr<QElapsedTimer> job_clock_;
  QAction* save_action_ = nullptr;
  QAction* save_as_action_ = nullptr;
  QAction* cancel_action_ = nullptr;
  QAction* calibrate_action_ = nullptr;
  QAction* quick_action_ = nullptr;
  QAction* evaluate_action_ = nullptr;
};

}  // namespace mxlens::gui
