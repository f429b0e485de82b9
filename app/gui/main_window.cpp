#include "app/gui/main_window.h"

#include <QAction>
#include <QCloseEvent>
#include <QDir>
#include <QDockWidget>
#include <QFileDialog>
#include <QFileInfo>
#include <QKeySequence>
#include <QLabel>
#include <QMenu>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QSettings>
#include <QStatusBar>
#include <QUrl>
#include <exception>

#include "app/gui/model_summary_panel.h"
#include "core/model/checkpoint.h"
#include "core/util/error.h"
#include "mxlens/gpu/cuda.h"

namespace mxlens::gui {

namespace {

constexpr const char* kRecentKey = "recentCheckpoints";
constexpr const char* kGeometryKey = "mainWindow/geometry";
constexpr const char* kStateKey = "mainWindow/state";
constexpr const char* kLastDirKey = "lastCheckpointParent";

}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  setObjectName("mainWindow");
  setAcceptDrops(true);
  report_error_ = [this](const QString& title, const QString& message) {
    QMessageBox::critical(this, title, message);
  };

  summary_ = new ModelSummaryPanel(this);
  summary_->setObjectName("modelSummary");
  setCentralWidget(summary_);

  createFileMenu();
  createViewMenu();
  createRunMenu();
  createHelpMenu();

  backend_label_ = new QLabel(QString::fromStdString(gpu::cuda_status()), this);
  backend_label_->setObjectName("backendStatus");
  statusBar()->addPermanentWidget(backend_label_);
  statusBar()->showMessage(tr("Open a checkpoint directory to begin"));

  QSettings settings;
  restoreGeometry(settings.value(kGeometryKey).toByteArray());
  restoreState(settings.value(kStateKey).toByteArray());
  if (settings.value(kGeometryKey).isNull()) resize(1100, 720);
  updateTitle();
}

MainWindow::~MainWindow() = default;

void MainWindow::createFileMenu() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  file->setObjectName("menuFile");
  file->setToolTipsVisible(true);

  QAction* open = file->addAction(tr("&Open Checkpoint…"), this, &MainWindow::chooseCheckpoint);
  open->setObjectName("actionOpenCheckpoint");
  open->setShortcut(QKeySequence::Open);
  open->setToolTip(tr("Open a Hugging Face checkpoint directory (config.json + safetensors)"));

  recent_menu_ = file->addMenu(tr("Open &Recent"));
  recent_menu_->setObjectName("menuOpenRecent");
  rebuildRecentMenu();

  addPendingAction(file, tr("Open &Demo"), "actionOpenDemo",
                   tr("Will open a small synthetic model with planted outlier channels, so "
                      "every view can be tried without downloading a checkpoint"));
  file->addSeparator();
  addPendingAction(file, tr("Open &Session…"), "actionOpenSession",
                   tr("Will reopen a saved session file (HDF5): statistics, transforms, "
                      "search traces and results"));
  QAction* save = addPendingAction(file, tr("&Save Session"), "actionSaveSession",
                                   tr("Will save the current session to its HDF5 file"));
  save->setShortcut(QKeySequence::Save);
  addPendingAction(file, tr("Save Session &As…"), "actionSaveSessionAs",
                   tr("Will save the current session to a new HDF5 file"));
  QMenu* exp = file->addMenu(tr("&Export"));
  exp->setObjectName("menuExport");
  exp->setToolTipsVisible(true);
  addPendingAction(exp, tr("Calibrated &Checkpoint…"), "actionExportCheckpoint",
                   tr("Will write the rotated, MXFP4-quantized model as a checkpoint that "
                      "serving stacks load"));
  addPendingAction(exp, tr("Results as &CSV…"), "actionExportCsv",
                   tr("Will write the perplexity / KL table of the session as CSV"));
  file->addSeparator();
  QAction* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
  quit->setObjectName("actionQuit");
  quit->setShortcut(QKeySequence::Quit);
}

void MainWindow::createViewMenu() {
  QMenu* view = menuBar()->addMenu(tr("&View"));
  view->setObjectName("menuView");
  const struct {
    const char* title;
    const char* name;
    const char* what;
  } views[] = {
      {QT_TR_NOOP("Outliers"), "Outliers",
       QT_TR_NOOP("Activation heatmaps before and after the rotation, with 32-channel block "
                  "lines and per-channel absmax bars, arrive with the calibration issue.")},
      {QT_TR_NOOP("Scales"), "Scales",
       QT_TR_NOOP("The E8M0 exponent map, exponent histograms before and after, and "
                  "per-block SQNR arrive with the calibration issue.")},
      {QT_TR_NOOP("Greedy Search"), "GreedySearch",
       QT_TR_NOOP("Step-by-step replay of the DuQuant++ greedy rotation search arrives with "
                  "the search issue.")},
      {QT_TR_NOOP("Perplexity"), "Perplexity",
       QT_TR_NOOP("Live W4A4 perplexity and KL per method, on CPU or CUDA, arrives with the "
                  "evaluation issue.")},
  };
  QDockWidget* first = nullptr;
  for (const auto& v : views) {
    QDockWidget* dock =
        addPlaceholderDock(tr(v.title), QStringLiteral("dock") + v.name, tr(v.what));
    if (first)
      tabifyDockWidget(first, dock);
    else
      first = dock;
    QAction* toggle = dock->toggleViewAction();
    toggle->setObjectName(QStringLiteral("actionView") + v.name);
    toggle->setStatusTip(tr("Show or hide the %1 view").arg(tr(v.title)));
    view->addAction(toggle);
  }
}

QDockWidget* MainWindow::addPlaceholderDock(const QString& title, const QString& object_name,
                                            const QString& what_it_will_show) {
  auto* dock = new QDockWidget(title, this);
  dock->setObjectName(object_name);
  auto* placeholder = new QLabel(what_it_will_show, dock);
  placeholder->setWordWrap(true);
  placeholder->setAlignment(Qt::AlignCenter);
  placeholder->setMargin(24);
  dock->setWidget(placeholder);
  addDockWidget(Qt::RightDockWidgetArea, dock);
  dock->hide();
  view_docks_.append(dock);
  return dock;
}

void MainWindow::createRunMenu() {
  QMenu* run = menuBar()->addMenu(tr("&Run"));
  run->setObjectName("menuRun");
  run->setToolTipsVisible(true);
  addPendingAction(run, tr("&Calibrate"), "actionCalibrate",
                   tr("Will run the model on calibration text and collect activation "
                      "statistics at the four linear input sites of every layer"));
  addPendingAction(run, tr("&Evaluate"), "actionEvaluate",
                   tr("Will measure W4A4 perplexity and KL to the full-precision model, "
                      "window by window"));
  run->addSeparator();
  QAction* cancel = addPendingAction(run, tr("Ca&ncel"), "actionCancel",
                                     tr("Will cancel the running job (enabled while one runs)"));
  cancel->setShortcut(QKeySequence(Qt::Key_Escape));
}

void MainWindow::createHelpMenu() {
  QMenu* help = menuBar()->addMenu(tr("&Help"));
  help->setObjectName("menuHelp");
  QAction* about = help->addAction(tr("&About mxlens"), this, [this] {
    QMessageBox::about(this, tr("About mxlens"), aboutText());
  });
  about->setObjectName("actionAbout");
}

QAction* MainWindow::addPendingAction(QMenu* menu, const QString& text, const QString& object_name,
                                      const QString& what_it_will_do) {
  QAction* action = menu->addAction(text);
  action->setObjectName(object_name);
  action->setEnabled(false);
  action->setToolTip(what_it_will_do);
  action->setStatusTip(what_it_will_do);
  return action;
}

QString MainWindow::aboutText() const {
  return tr("<h3>mxlens %1</h3>"
            "<p>A workbench for MXFP4 W4A4 quantization of LLaMA-family models: where "
            "activation outliers sit inside each 32-element block, what a rotation does to "
            "the shared E8M0 scales, and what it costs in perplexity.</p>"
            "<p>Compute backend: %2</p>")
      .arg(QStringLiteral(MXLENS_VERSION),
           QString::fromStdString(gpu::cuda_status()).toHtmlEscaped());
}

void MainWindow::setErrorReporter(ErrorReporter reporter) {
  report_error_ = std::move(reporter);
}

void MainWindow::chooseCheckpoint() {
  QSettings settings;
  const QString start = settings.value(kLastDirKey, QDir::homePath()).toString();
  const QString dir = QFileDialog::getExistingDirectory(this, tr("Open Checkpoint"), start);
  if (dir.isEmpty()) return;
  settings.setValue(kLastDirKey, QFileInfo(dir).absolutePath());
  openCheckpoint(dir);
}

bool MainWindow::openCheckpoint(const QString& dir) {
  const QString path = QDir::cleanPath(QFileInfo(dir).absoluteFilePath());
  std::unique_ptr<Checkpoint> opened;
  try {
    opened = std::make_unique<Checkpoint>(Checkpoint::open(path.toStdString()));
  } catch (const Error& e) {
    report_error_(tr("Could not open checkpoint"), QString::fromStdString(e.what()));
    return false;
  } catch (const std::exception& e) {
    report_error_(tr("Could not open checkpoint"),
                  tr("%1: unexpected failure: %2").arg(path, QString::fromStdString(e.what())));
    return false;
  }
  // Only now, with the new model complete, replace the old one.
  checkpoint_ = std::move(opened);
  summary_->setCheckpoint(*checkpoint_);
  rememberRecent(path);
  updateTitle();
  statusBar()->showMessage(tr("Opened %1").arg(path), 5000);
  return true;
}

QStringList MainWindow::recentCheckpoints() const {
  return QSettings().value(kRecentKey).toStringList();
}

void MainWindow::rememberRecent(const QString& dir) {
  QStringList recent = recentCheckpoints();
  recent.removeAll(dir);
  recent.prepend(dir);
  while (recent.size() > kMaxRecent) recent.removeLast();
  QSettings().setValue(kRecentKey, recent);
  rebuildRecentMenu();
}

void MainWindow::rebuildRecentMenu() {
  recent_menu_->clear();
  const QStringList recent = recentCheckpoints();
  for (int i = 0; i < recent.size(); ++i) {
    const QString dir = recent[i];
    const QString label = QStringLiteral("&%1 %2").arg(i + 1).arg(QDir::toNativeSeparators(dir));
    QAction* action = recent_menu_->addAction(label, this, [this, dir] { openCheckpoint(dir); });
    action->setData(dir);
  }
  if (!recent.isEmpty()) {
    recent_menu_->addSeparator();
    recent_menu_->addAction(tr("&Clear Menu"), this, [this] {
      QSettings().remove(kRecentKey);
      rebuildRecentMenu();
    });
  }
  recent_menu_->setEnabled(!recent.isEmpty());
}

void MainWindow::updateTitle() {
  if (!checkpoint_) {
    setWindowTitle(QStringLiteral("mxlens"));
    return;
  }
  const LlamaConfig& c = checkpoint_->config();
  setWindowTitle(QStringLiteral("%1 (%2, %3 layers) — mxlens")
                     .arg(QString::fromStdString(checkpoint_->dir().filename().string()),
                          QString::fromStdString(c.architecture))
                     .arg(c.num_layers));
}

QString MainWindow::droppedDirectory(const QMimeData* mime) {
  if (!mime || !mime->hasUrls()) return {};
  for (const QUrl& url : mime->urls()) {
    if (!url.isLocalFile()) continue;
    const QFileInfo info(url.toLocalFile());
    if (info.isDir()) return info.absoluteFilePath();
  }
  return {};
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
  if (!droppedDirectory(event->mimeData()).isEmpty()) event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
  const QString dir = droppedDirectory(event->mimeData());
  if (dir.isEmpty()) return;
  event->acceptProposedAction();
  openCheckpoint(dir);
}

void MainWindow::closeEvent(QCloseEvent* event) {
  QSettings settings;
  settings.setValue(kGeometryKey, saveGeometry());
  settings.setValue(kStateKey, saveState());
  QMainWindow::closeEvent(event);
}

}  // namespace mxlens::gui
