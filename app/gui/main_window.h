#pragma once
// The workbench window: menus, the central model summary, placeholder docks for the views
// to come, the status line. It opens checkpoints through core (mxlens::Checkpoint::open)
// and shows what it found; it computes nothing itself.
#include <QMainWindow>
#include <QStringList>
#include <functional>
#include <memory>

class QAction;
class QDockWidget;
class QLabel;
class QMenu;
class QMimeData;

namespace mxlens {
class Checkpoint;
}

namespace mxlens::gui {

class ModelSummaryPanel;

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  // Shows a failure to the user. The default is a modal QMessageBox; tests inject a recorder.
  using ErrorReporter = std::function<void(const QString& title, const QString& message)>;

  static constexpr int kMaxRecent = 10;

  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  // What File ▸ Open Checkpoint… runs once the dialog has a directory; also used by Open
  // Recent, drag and drop and the command line. On failure the error is reported and the
  // previously open model stays. Returns whether the model was opened.
  bool openCheckpoint(const QString& dir);

  void setErrorReporter(ErrorReporter reporter);
  const Checkpoint* checkpoint() const { return checkpoint_.get(); }
  ModelSummaryPanel* summaryPanel() const { return summary_; }
  QStringList recentCheckpoints() const;
  QString aboutText() const;

 protected:
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;
  void closeEvent(QCloseEvent* event) override;

 private:
  void createFileMenu();
  void createViewMenu();
  void createRunMenu();
  void createHelpMenu();
  QDockWidget* addPlaceholderDock(const QString& title, const QString& object_name,
                                  const QString& what_it_will_show);
  QAction* addPendingAction(QMenu* menu, const QString& text, const QString& object_name,
                            const QString& what_it_will_do);
  void chooseCheckpoint();
  void rememberRecent(const QString& dir);
  void rebuildRecentMenu();
  void updateTitle();
  static QString droppedDirectory(const QMimeData* mime);

  std::unique_ptr<Checkpoint> checkpoint_;
  ErrorReporter report_error_;
  ModelSummaryPanel* summary_;
  QMenu* recent_menu_ = nullptr;
  QLabel* backend_label_;
  QList<QDockWidget*> view_docks_;
};

}  // namespace mxlens::gui
