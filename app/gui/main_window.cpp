#include "app/gui/main_window.h"

#include <QAction>
#include <QActionGroup>
#include <QCloseEvent>
#include <QComboBox>
#include <QDir>
#include <QDockWidget>
#include <QElapsedTimer>
#include <QFileDialog>
#include <QFileInfo>
#include <QHash>
#include <QInputDialog>
#include <QKeySequence>
#include <QLabel>
#include <QMenu>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressBar>
#include <QScrollArea>
#include <QSettings>
#include <QSplitter>
#include <QStackedWidget>
#include <QStatusBar>
#include <QTabWidget>
#include <QThread>
#include <QToolBar>
#include <QToolButton>
#include <QUrl>
#include <QVBoxLayout>
#include <exception>

#include "app/gui/job_runner.h"
#include "app/gui/model_summary_panel.h"
#include "app/gui/model_tree.h"
#include "app/gui/site_views.h"
#include "app/gui/workbench_jobs.h"
#include "core/calib/session.h"
#include "core/model/checkpoint.h"
#include "core/model/llama_model.h"
#include "core/plant/plant_caveat.h"
#include "core/util/error.h"
#include "mxlens/gpu/cuda.h"
#include "widgets/greedy_view.h"
#include "widgets/outliers_view.h"
#include "widgets/perplexity_view.h"
#include "widgets/scales_view.h"

namespace mxlens::gui {

namespace {

constexpr const char* kRecentKey = "recentCheckpoints";
constexpr const char* kGeometryKey = "mainWindow/geometry";
constexpr const char* kStateKey = "mainWindow/state";
constexpr const char* kSplitterKey = "mainWindow/leftSplitter";
constexpr const char* kTabKey = "mainWindow/tab";
constexpr const char* kLastDirKey = "lastCheckpointParent";
constexpr const char* kLastSessionDirKey = "lastSessionDir";
constexpr const char* kMethodKey = "method";
constexpr const char* kCalibTextKey = "calibrationText";
constexpr const char* kEvalTextKey = "evaluationText";
constexpr const char* kThreadsKey = "compute/threads";
constexpr const char* kPplMethodsKey = "perplexity/methods";
constexpr const char* kPplScaleRuleKey = "perplexity/scaleRule";
constexpr const char* kPplWindowsKey = "perplexity/windows";
constexpr const char* kPplSeqlenKey = "perplexity/seqlen";
constexpr const char* kPplBackendKey = "perplexity/backend";

// Job tags: a tag names what a job is for; posting one replaces a waiting one with the same.
constexpr const char* kOpenTag = "open";
constexpr const char* kCalibrateTag = "calibrate";
constexpr const char* kCompareTag = "compare";
constexpr const char* kLoadSessionTag = "load-session";
constexpr const char* kSaveSessionTag = "save-session";
constexpr const char* kTextTag = "text";
constexpr const char* kEvalTextTag = "eval-text";
constexpr const char* kDemoTag = "demo";
constexpr const char* kExportTag = "export";
constexpr const char* kTieGqaKey = "calibration/tieGqaSmoothing";
constexpr const char* kLastExportDirKey = "lastExportDirectory";

QString failure_title(const QString& tag) {
  if (tag == kOpenTag) return QObject::tr("Could not prepare the model");
  if (tag == kCalibrateTag) return QObject::tr("Calibration failed");
  if (tag == kCompareTag) return QObject::tr("Perplexity run failed");
  if (tag == kLoadSessionTag) return QObject::tr("Could not open session");
  if (tag == kSaveSessionTag) return QObject::tr("Could not save session");
  if (tag == kTextTag || tag == kEvalTextTag) return QObject::tr("Could not read the text");
  if (tag == kDemoTag) return QObject::tr("Could not create the demo model");
  if (tag == kExportTag) return QObject::tr("Export failed");
  return QObject::tr("Job failed");
}

QString method_qname(Method m) {
  return QString::fromLatin1(method_name(m).data(), qsizetype(method_name(m).size()));
}

QString format_eta(double seconds) {
  const int s = int(seconds + 0.5);
  return QStringLiteral("%1:%2").arg(s / 60).arg(s % 60, 2, 10, QLatin1Char('0'));
}

}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  setObjectName("mainWindow");
  setAcceptDrops(true);
  report_error_ = [this](const QString& title, const QString& message) {
    QMessageBox::critical(this, title, message);
  };
  job_clock_ = std::make_unique<QElapsedTimer>();

  QSettings settings;
  threads_ = std::max(1, settings.value(kThreadsKey, QThread::idealThreadCount()).toInt());
  calibration_text_ = settings.value(kCalibTextKey).toString();
  evaluation_text_ = settings.value(kEvalTextKey).toString();

  runner_ = new JobRunner(this);
  createCentre();
  site_views_ =
      std::make_unique<SiteViews>(outliers_, scales_, greedy_, greedy_stack_, greedy_message_);
  createModelDock();
  createToolBar();
  createStatusBar();
  createFileMenu();
  createViewMenu();
  createRunMenu();
  createHelpMenu();
  connectRunner();

  observers_ = {tree_, site_views_.get()};

  restoreGeometry(settings.value(kGeometryKey).toByteArray());
  restoreState(settings.value(kStateKey).toByteArray());
  left_splitter_->restoreState(settings.value(kSplitterKey).toByteArray());
  tabs_->setCurrentIndex(settings.value(kTabKey, 0).toInt());
  if (settings.value(kGeometryKey).isNull()) resize(1280, 800);
  statusBar()->showMessage(tr("Open a checkpoint directory, or File ▸ Open Demo, to begin"));
  updateTitle();
  updateActions();
}

MainWindow::~MainWindow() {
  // The runner first: its thread may still be delivering to the panels.
  delete runner_;
  runner_ = nullptr;
  // The model before the demo's temporary directory that may hold its files.
  checkpoint_.reset();
}

// --- building the window -------------------------------------------------------------------

void MainWindow::createCentre() {
  tabs_ = new QTabWidget(this);
  tabs_->setObjectName("viewTabs");
  tabs_->setDocumentMode(true);
  outliers_ = new OutliersView(tabs_);
  outliers_->setObjectName("outliersView");
  scales_ = new ScalesView(tabs_);
  scales_->setObjectName("scalesView");
  greedy_stack_ = new QStackedWidget(tabs_);
  greedy_stack_->setObjectName("greedyStack");
  greedy_ = new GreedyView(greedy_stack_);
  greedy_->setObjectName("greedyView");
  greedy_message_ = new QLabel(greedy_stack_);
  greedy_message_->setObjectName("greedyMessage");
  greedy_message_->setAlignment(Qt::AlignCenter);
  greedy_message_->setWordWrap(true);
  greedy_message_->setMargin(24);
  greedy_stack_->addWidget(greedy_);
  greedy_stack_->addWidget(greedy_message_);
  perplexity_ = new PerplexityView(tabs_);
  perplexity_->setObjectName("perplexityView");
  tabs_->addTab(outliers_, tr("Outliers"));
  tabs_->addTab(scales_, tr("Scales"));
  tabs_->addTab(greedy_stack_, tr("Greedy search"));
  tabs_->addTab(perplexity_, tr("Perplexity"));
  // What a planted checkpoint's numbers mean (core/plant/plant_caveat.h), above every view.
  plant_banner_ = new QLabel(this);
  plant_banner_->setObjectName("plantBanner");
  plant_banner_->setWordWrap(true);
  plant_banner_->setMargin(8);
  plant_banner_->setFrameShape(QFrame::StyledPanel);
  plant_banner_->setAutoFillBackground(true);
  plant_banner_->setBackgroundRole(QPalette::ToolTipBase);
  plant_banner_->setForegroundRole(QPalette::ToolTipText);
  plant_banner_->hide();
  auto* centre = new QWidget(this);
  auto* centre_layout = new QVBoxLayout(centre);
  centre_layout->setContentsMargins(0, 0, 0, 0);
  centre_layout->setSpacing(0);
  centre_layout->addWidget(plant_banner_);
  centre_layout->addWidget(tabs_, 1);
  setCentralWidget(centre);
  connect(tabs_, &QTabWidget::currentChanged, this, [this](int index) {
    // Arrow keys step the replay once its tab is chosen.
    if (index == GreedyTab && greedy_->hasTrace()) greedy_->setFocus();
  });

  // CUDA is offered when a device is there (its line as the tooltip), else greyed with why.
  if (gpu::cuda_device_count() > 0)
    perplexity_->setCudaAvailability(true, QString::fromStdString(gpu::cuda_status()));
  else
    perplexity_->setCudaAvailability(false, QString::fromStdString(gpu::cuda_unavailable_reason()));
  QSettings settings;
  PerplexityRequest request;
  request.methods = {Method::fp, Method::rtn, Method::hadamard, Method::duquantpp};
  request.seqlen = 128;
  if (settings.contains(kPplMethodsKey)) {
    try {
      request.methods = parse_method_list(settings.value(kPplMethodsKey).toString().toStdString());
    } catch (const Error&) {
      // A list from another version: keep the default.
    }
  }
  request.scale_rule = ScaleRule(settings.value(kPplScaleRuleKey, 0).toInt());
  request.max_windows = settings.value(kPplWindowsKey, 0).toLongLong();
  request.seqlen = settings.value(kPplSeqlenKey, request.seqlen).toInt();
  request.backend = settings.value(kPplBackendKey).toString() == QLatin1String("cuda")
                        ? EvalBackend::cuda
                        : EvalBackend::cpu;
  perplexity_->setRequest(request);
  connect(perplexity_, &PerplexityView::runRequested, this,
          [this](const PerplexityRequest& r) { startPerplexity(r); });
  connect(perplexity_, &PerplexityView::cancelRequested, this,
          [this] { runner_->cancel(kCompareTag); });
}

void MainWindow::createModelDock() {
  auto* dock = new QDockWidget(tr("Model"), this);
  dock->setObjectName("dockModel");
  left_splitter_ = new QSplitter(Qt::Vertical, dock);
  left_splitter_->setObjectName("leftSplitter");
  tree_ = new ModelTree(left_splitter_);
  connect(tree_, &ModelTree::siteSelected, this,
          [this](int layer, int site) { selectSite(layer, Site(site)); });
  site_details_ = new QLabel(left_splitter_);
  site_details_->setObjectName("siteDetails");
  site_details_->setWordWrap(true);
  site_details_->setAlignment(Qt::AlignTop | Qt::AlignLeft);
  site_details_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  site_details_->setMargin(6);
  summary_ = new ModelSummaryPanel;
  summary_->setObjectName("modelSummary");
  auto* scroll = new QScrollArea(left_splitter_);
  scroll->setWidgetResizable(true);
  scroll->setWidget(summary_);
  left_splitter_->addWidget(tree_);
  left_splitter_->addWidget(site_details_);
  left_splitter_->addWidget(scroll);
  left_splitter_->setStretchFactor(0, 3);
  left_splitter_->setStretchFactor(2, 2);
  dock->setWidget(left_splitter_);
  addDockWidget(Qt::LeftDockWidgetArea, dock);
}

void MainWindow::createToolBar() {
  QToolBar* bar = addToolBar(tr("Method"));
  bar->setObjectName("mainToolBar");
  bar->addWidget(new QLabel(tr(" Method: "), bar));
  method_combo_ = new QComboBox(bar);
  method_combo_->setObjectName("methodSelector");
  method_combo_->setToolTip(tr("The method whose transform is shown as \"after\""));
  for (Method m : kAllMethods) {
    method_combo_->addItem(methodDisplayName(m), int(m));
    method_combo_->setItemData(method_combo_->count() - 1,
                               QString::fromLatin1(method_description(m).data()), Qt::ToolTipRole);
  }
  Method saved = Method::duquantpp;
  try {
    saved = parse_method(QSettings().value(kMethodKey, "duquantpp").toString().toStdString());
  } catch (const Error&) {
  }
  method_combo_->setCurrentIndex(method_combo_->findData(int(saved)));
  connect(method_combo_, &QComboBox::currentIndexChanged, this, [this] {
    QSettings().setValue(kMethodKey, method_qname(method()));
    if (checkpoint_) postCalibration(true);
  });
  bar->addWidget(method_combo_);
}

void MainWindow::createStatusBar() {
  job_label_ = new QLabel(this);
  job_label_->setObjectName("jobLabel");
  job_progress_ = new QProgressBar(this);
  job_progress_->setObjectName("jobProgress");
  job_progress_->setRange(0, 1000);
  job_progress_->setMaximumWidth(180);
  job_progress_->setTextVisible(false);
  job_progress_->hide();
  job_eta_ = new QLabel(this);
  job_eta_->setObjectName("jobEta");
  job_cancel_ = new QToolButton(this);
  job_cancel_->setObjectName("jobCancel");
  job_cancel_->setText(tr("Cancel"));
  job_cancel_->setToolTip(tr("Cancel the running job (Esc)"));
  job_cancel_->setEnabled(false);
  connect(job_cancel_, &QToolButton::clicked, this, &MainWindow::cancelJob);
  backend_label_ = new QLabel(QString::fromStdString(gpu::cuda_status()), this);
  backend_label_->setObjectName("backendStatus");
  statusBar()->addPermanentWidget(job_label_);
  statusBar()->addPermanentWidget(job_progress_);
  statusBar()->addPermanentWidget(job_eta_);
  statusBar()->addPermanentWidget(job_cancel_);
  statusBar()->addPermanentWidget(backend_label_);
}

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

  QAction* demo = file->addAction(tr("Open &Demo"), this, &MainWindow::openDemo);
  demo->setObjectName("actionOpenDemo");
  demo->setToolTip(
      tr("Open a small random-weight model with planted outlier channels, so "
         "every view can be tried without downloading a checkpoint"));
  file->addSeparator();
  QAction* text =
      file->addAction(tr("Calibration &Text…"), this, &MainWindow::chooseCalibrationText);
  text->setObjectName("actionCalibrationText");
  text->setToolTip(tr("The UTF-8 text calibration reads (default: a short built-in text)"));
  QAction* eval = file->addAction(tr("&Evaluation Text…"), this, &MainWindow::chooseEvaluationText);
  eval->setObjectName("actionEvaluationText");
  eval->setToolTip(
      tr("The UTF-8 text perplexity is measured on (default: the calibration "
         "text, windows before the calibration region)"));
  file->addSeparator();
  QAction* open_session =
      file->addAction(tr("Open &Session…"), this, &MainWindow::chooseSessionToOpen);
  open_session->setObjectName("actionOpenSession");
  open_session->setToolTip(
      tr("Reopen a saved session file (HDF5): statistics, transforms, "
         "search traces and results"));
  save_action_ = file->addAction(tr("&Save Session"), this, [this] { chooseSessionToSave(false); });
  save_action_->setObjectName("actionSaveSession");
  save_action_->setShortcut(QKeySequence::Save);
  save_action_->setToolTip(tr("Save the current session to its HDF5 file"));
  save_as_action_ =
      file->addAction(tr("Save Session &As…"), this, [this] { chooseSessionToSave(true); });
  save_as_action_->setObjectName("actionSaveSessionAs");
  save_as_action_->setShortcut(QKeySequence::SaveAs);
  save_as_action_->setToolTip(tr("Save the current session to a new HDF5 file"));
  QMenu* exp = file->addMenu(tr("&Export"));
  exp->setObjectName("menuExport");
  exp->setToolTipsVisible(true);
  export_action_ = exp->addAction(tr("Calibrated &Checkpoint…"), this, &MainWindow::chooseExport);
  export_action_->setObjectName("actionExportCheckpoint");
  export_action_->setToolTip(
      tr("Write the session's rotated, MXFP4-quantized model for a serving stack: fp_quant "
         "(transformers FP-Quant, W4A4 with the learned rotations) or GGUF (llama.cpp, "
         "weights only)"));
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
    Tab tab;
  } views[] = {
      {QT_TR_NOOP("Outliers"), "Outliers", OutliersTab},
      {QT_TR_NOOP("Scales"), "Scales", ScalesTab},
      {QT_TR_NOOP("Greedy Search"), "GreedySearch", GreedyTab},
      {QT_TR_NOOP("Perplexity"), "Perplexity", PerplexityTab},
  };
  auto* group = new QActionGroup(this);
  for (const auto& v : views) {
    QAction* show = view->addAction(tr(v.title));
    show->setObjectName(QStringLiteral("actionView") + v.name);
    show->setCheckable(true);
    show->setShortcut(QKeySequence(Qt::CTRL | Qt::Key(Qt::Key_1 + int(v.tab))));
    show->setStatusTip(tr("Show the %1 view").arg(tr(v.title)));
    group->addAction(show);
    const Tab tab = v.tab;
    connect(show, &QAction::triggered, this, [this, tab] { tabs_->setCurrentIndex(tab); });
    connect(tabs_, &QTabWidget::currentChanged, show,
            [show, tab](int index) { show->setChecked(index == tab); });
    show->setChecked(tabs_->currentIndex() == tab);
  }
  view->addSeparator();
  if (auto* dock = findChild<QDockWidget*>("dockModel")) {
    QAction* toggle = dock->toggleViewAction();
    toggle->setObjectName("actionViewModel");
    view->addAction(toggle);
  }
  view->addSeparator();
  QAction* follow = view->addAction(tr("Outliers and Scales Follow the Greedy Stepper"));
  follow->setObjectName("actionFollowStepper");
  follow->setCheckable(true);
  follow->setChecked(QSettings().value("view/follow_stepper", false).toBool());
  site_views_->setFollowStepper(follow->isChecked());
  connect(follow, &QAction::toggled, this, [this](bool on) {
    site_views_->setFollowStepper(on);
    QSettings().setValue("view/follow_stepper", on);
  });
  view->addSeparator();
  // Stepping the replay from anywhere in the window (the view also takes plain arrows when
  // it has focus).
  const struct {
    const char* title;
    const char* name;
    QKeySequence key;
    int delta;
    bool to_end;
  } steps[] = {
      {QT_TR_NOOP("Greedy: First Step"), "actionGreedyFirst", QKeySequence(Qt::CTRL | Qt::Key_Home),
       -1, true},
      {QT_TR_NOOP("Greedy: Previous Step"), "actionGreedyPrevious",
       QKeySequence(Qt::CTRL | Qt::Key_Left), -1, false},
      {QT_TR_NOOP("Greedy: Next Step"), "actionGreedyNext", QKeySequence(Qt::CTRL | Qt::Key_Right),
       1, false},
      {QT_TR_NOOP("Greedy: Last Step"), "actionGreedyLast", QKeySequence(Qt::CTRL | Qt::Key_End), 1,
       true},
  };
  for (const auto& s : steps) {
    QAction* a = view->addAction(tr(s.title));
    a->setObjectName(s.name);
    a->setShortcut(s.key);
    const int delta = s.delta;
    const bool to_end = s.to_end;
    connect(a, &QAction::triggered, this, [this, delta, to_end] { stepGreedy(delta, to_end); });
  }
}

void MainWindow::createRunMenu() {
  QMenu* run = menuBar()->addMenu(tr("&Run"));
  run->setObjectName("menuRun");
  run->setToolTipsVisible(true);
  quick_action_ =
      run->addAction(tr("&Quick Calibration"), this, &MainWindow::startQuickCalibration);
  quick_action_->setObjectName("actionQuickCalibrate");
  quick_action_->setToolTip(
      tr("Calibrate with the selected method on 8 short windows and "
         "fewer search steps: statistics within seconds"));
  calibrate_action_ = run->addAction(tr("&Calibrate"), this, &MainWindow::startCalibration);
  calibrate_action_->setObjectName("actionCalibrate");
  calibrate_action_->setToolTip(
      tr("Calibrate with the selected method and the full settings "
         "(128 windows, 128 greedy steps) on the calibration text"));
  evaluate_action_ = run->addAction(tr("&Evaluate"), this, [this] {
    tabs_->setCurrentIndex(PerplexityTab);
    startPerplexity(perplexity_->request());
  });
  evaluate_action_->setObjectName("actionEvaluate");
  evaluate_action_->setToolTip(
      tr("Measure W4A4 perplexity and KL to the full-precision model "
         "for the methods chosen in the Perplexity tab"));
  tie_gqa_action_ = run->addAction(tr("E&xportable Smoothing (tie GQA groups)"));
  tie_gqa_action_->setObjectName("actionTieGqaSmoothing");
  tie_gqa_action_->setCheckable(true);
  tie_gqa_action_->setChecked(QSettings().value(kTieGqaKey, false).toBool());
  tie_gqa_action_->setToolTip(
      tr("Under GQA, make o_proj's smoothing factors equal across the query heads that share "
         "a KV head, so they fold into v_proj rows: smoothed methods can then be exported. "
         "Off: the released code's online division"));
  connect(tie_gqa_action_, &QAction::toggled, this,
          [](bool on) { QSettings().setValue(kTieGqaKey, on); });
  run->addSeparator();
  cancel_action_ = run->addAction(tr("Ca&ncel"), this, &MainWindow::cancelJob);
  cancel_action_->setObjectName("actionCancel");
  cancel_action_->setShortcut(QKeySequence(Qt::Key_Escape));
  cancel_action_->setToolTip(tr("Cancel the running job"));
  cancel_action_->setEnabled(false);
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

void MainWindow::connectRunner() {
  connect(runner_, &JobRunner::jobStarted, this, &MainWindow::onJobStarted);
  connect(runner_, &JobRunner::progress, this, &MainWindow::onProgress);
  connect(runner_, &JobRunner::jobFinished, this,
          [this](const QString& tag) { onJobEnded(tag, tr("done")); });
  connect(runner_, &JobRunner::jobCancelled, this,
          [this](const QString& tag) { onJobEnded(tag, tr("cancelled")); });
  connect(runner_, &JobRunner::jobFailed, this, [this](const QString& tag, const QString& message) {
    onJobEnded(tag, tr("failed"));
    report_error_(failure_title(tag), message);
  });
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

void MainWindow::setComputeThreads(int threads) {
  threads_ = std::max(1, threads);
  QSettings().setValue(kThreadsKey, threads_);
}

Method MainWindow::method() const {
  return Method(method_combo_->currentData().toInt());
}

void MainWindow::setMethod(Method method) {
  method_combo_->setCurrentIndex(method_combo_->findData(int(method)));
}

QString MainWindow::plantCaveat() const {
  return plant_banner_->text();
}

QString MainWindow::greedyMessage() const {
  return site_views_->greedyMessage();
}

QString MainWindow::jobText() const {
  return job_label_->text();
}

// --- opening models ------------------------------------------------------------------------

void MainWindow::chooseCheckpoint() {
  QSettings settings;
  const QString start = settings.value(kLastDirKey, QDir::homePath()).toString();
  const QString dir = QFileDialog::getExistingDirectory(this, tr("Open Checkpoint"), start);
  if (dir.isEmpty()) return;
  settings.setValue(kLastDirKey, QFileInfo(dir).absolutePath());
  openCheckpoint(dir);
}

bool MainWindow::openCheckpoint(const QString& dir) {
  return openModel(dir, true);
}

bool MainWindow::openModel(const QString& dir, bool remember) {
  const QString path = QDir::cleanPath(QFileInfo(dir).absoluteFilePath());
  std::shared_ptr<const Checkpoint> opened;
  std::unique_ptr<LlamaWeights> weights;
  // Checked here, so that a failed open changes nothing: config, shard headers, tensor shapes
  // (Checkpoint::open) and the norm vectors (LlamaWeights). Fast for any size: shards are
  // memory-mapped, not read.
  try {
    opened = std::make_shared<const Checkpoint>(Checkpoint::open(path.toStdString()));
    weights = std::make_unique<LlamaWeights>(*opened);
  } catch (const Error& e) {
    report_error_(tr("Could not open checkpoint"), QString::fromStdString(e.what()));
    return false;
  } catch (const std::exception& e) {
    report_error_(tr("Could not open checkpoint"),
                  tr("%1: unexpected failure: %2").arg(path, QString::fromStdString(e.what())));
    return false;
  }
  // Only now, with the new model complete, replace the old one.
  ++generation_;
  // Work for the previous model stops; saving its session (no cancel point) still completes.
  for (const char* tag :
       {kOpenTag, kCalibrateTag, kCompareTag, kTextTag, kEvalTextTag, kLoadSessionTag})
    runner_->cancel(QString::fromLatin1(tag));
  checkpoint_ = opened;
  session_.reset();
  session_file_.clear();
  for (SessionObserver* o : observers_) o->onModelOpened(*checkpoint_);
  summary_->setCheckpoint(*checkpoint_);
  showPlantCaveat();
  site_details_->clear();
  perplexity_->resetResults();
  perplexity_->setMaxSeqlen(checkpoint_->config().max_position_embeddings);
  if (remember) rememberRecent(path);
  updateTitle();
  updateActions();
  statusBar()->showMessage(tr("Opened %1").arg(path), 5000);

  const uint64_t generation = generation_;
  auto owned_weights = std::make_shared<std::unique_ptr<LlamaWeights>>(std::move(weights));
  const std::string text = calibration_text_.toStdString();
  const std::string eval = evaluation_text_.toStdString();
  runner_->post(kOpenTag, [this, generation, opened, owned_weights, text, eval](
                              RunnerState& state, const Progress& progress) {
    progress.report(0.0, "tokenizing the calibration text");
    std::string note;
    jobOpenModel(state, opened, std::move(*owned_weights), text, eval, &note);
    if (!note.empty())
      invokeOnGui(this, [this, generation, note] {
        if (generation == generation_) showNote(QString::fromStdString(note));
      });
  });
  postCalibration(true);
  return true;
}

void MainWindow::openDemo() {
  if (!demo_dir_) {
    demo_dir_ = std::make_unique<QTemporaryDir>(QDir::temp().filePath("mxlens-demo-XXXXXX"));
    if (!demo_dir_->isValid()) {
      report_error_(failure_title(kDemoTag), tr("%1: cannot create a temporary directory: %2")
                                                 .arg(demo_dir_->path(), demo_dir_->errorString()));
      demo_dir_.reset();
      return;
    }
  }
  const std::filesystem::path dir = demo_dir_->path().toStdString();
  runner_->post(kDemoTag, [this, dir](RunnerState&, const Progress& progress) {
    const std::filesystem::path planted = jobWriteDemo(dir, progress);
    invokeOnGui(this, [this, planted] {
      if (openModel(QString::fromStdString(planted.string()), false))
        statusBar()->showMessage(tr("Demo: a random-weight tiny model with 4 outlier channels "
                                    "planted (×8) at the qkv, gu and down inputs"),
                                 10000);
    });
  });
}

// --- sessions and texts -------------------------------------------------------------------

void MainWindow::chooseSessionToOpen() {
  QSettings settings;
  const QString file = QFileDialog::getOpenFileName(
      this, tr("Open Session"), settings.value(kLastSessionDirKey, QDir::homePath()).toString(),
      tr("mxlens sessions (*.h5 *.hdf5);;All files (*)"));
  if (file.isEmpty()) return;
  settings.setValue(kLastSessionDirKey, QFileInfo(file).absolutePath());
  openSessionFile(file);
}

void MainWindow::chooseSessionToSave(bool ask) {
  if (!session_) return;
  QString file = session_file_;
  if (ask || file.isEmpty()) {
    QSettings settings;
    QString start = settings.value(kLastSessionDirKey, QDir::homePath()).toString();
    if (checkpoint_)
      start = QDir(start).filePath(
          QStringLiteral("%1-%2.h5")
              .arg(QString::fromStdString(checkpoint_->dir().filename().string()),
                   method_qname(session_->settings.method)));
    file =
        QFileDialog::getSaveFileName(this, tr("Save Session"), start, tr("mxlens sessions (*.h5)"));
    if (file.isEmpty()) return;
    if (QFileInfo(file).suffix().isEmpty()) file += QStringLiteral(".h5");
    settings.setValue(kLastSessionDirKey, QFileInfo(file).absolutePath());
  }
  saveSessionFile(file);
}

void MainWindow::openSessionFile(const QString& file) {
  const uint64_t generation = generation_;
  const std::filesystem::path path = file.toStdString();
  runner_->post(kLoadSessionTag,
                [this, generation, path, file](RunnerState& state, const Progress& progress) {
                  progress.report(0.0, "reading " + path.filename().string());
                  std::shared_ptr<const Session> session = jobLoadSession(state, path);
                  invokeOnGui(this, [this, generation, session, file] {
                    if (generation != generation_) return;
                    setSession(session);
                    session_file_ = file;
                    QSignalBlocker block(method_combo_);  // showing a session must not recalibrate
                    setMethod(session->settings.method);
                    statusBar()->showMessage(tr("Opened session %1").arg(file), 5000);
                  });
                });
}

void MainWindow::saveSessionFile(const QString& file) {
  if (!session_) {
    report_error_(failure_title(kSaveSessionTag), tr("%1: there is no session to save").arg(file));
    return;
  }
  const std::shared_ptr<const Session> session = session_;
  const std::filesystem::path path = file.toStdString();
  runner_->post(kSaveSessionTag, [this, session, path, file](RunnerState&, const Progress& p) {
    p.report(0.0, "writing " + path.filename().string());
    jobSaveSession(*session, path);
    invokeOnGui(this, [this, session, file] {
      if (session == session_) session_file_ = file;
      statusBar()->showMessage(tr("Saved session %1").arg(file), 5000);
    });
  });
}

bool MainWindow::tieGqaSmoothing() const {
  return tie_gqa_action_ && tie_gqa_action_->isChecked();
}

void MainWindow::setTieGqaSmoothing(bool on) {
  if (tie_gqa_action_) tie_gqa_action_->setChecked(on);
}

std::vector<MainWindow::ExportChoice> MainWindow::exportChoices() const {
  if (!session_ || !checkpoint_) return {};
  std::vector<ExportChoice> choices = {
      {ExportFormat::fp_quant,
       tr("fp_quant: transformers FP-Quant, MXFP4 W4A4 with the learned rotations"),
       {}},
      {ExportFormat::gguf,
       tr("gguf: llama.cpp, MXFP4 weights only (methods without rotations)"),
       {}},
  };
  for (ExportChoice& c : choices) {
    c.refusal = export_refusal(*checkpoint_, *session_, c.format);
    if (c.refusal.empty()) continue;
    // The refusal's first clause (the full text is shown when the format is picked).
    QString why = QString::fromStdString(c.refusal);
    const QString prefix = QString::fromStdString(std::string(to_string(c.format))) + ": ";
    if (why.startsWith(prefix)) why = why.mid(prefix.size());
    if (const qsizetype cut = why.indexOf("; "); cut > 0) why.truncate(cut);
    c.label += tr(" — not for this session: %1").arg(why);
  }
  return choices;
}

QStringList MainWindow::exportFormatChoices() const {
  QStringList labels;
  for (const ExportChoice& c : exportChoices()) labels << c.label;
  return labels;
}

void MainWindow::chooseExport() {
  if (!session_) {
    report_error_(failure_title(kExportTag), tr("There is no session to export: calibrate first."));
    return;
  }
  const std::vector<ExportChoice> choices = exportChoices();
  QStringList labels;
  for (const ExportChoice& c : choices) labels << c.label;
  bool ok = false;
  const QString picked = QInputDialog::getItem(this, tr("Export Calibrated Checkpoint"),
                                               tr("Format:"), labels, 0, false, &ok);
  if (!ok) return;
  const qsizetype index = labels.indexOf(picked);  // the dialog is not editable
  if (index < 0) return;
  const ExportChoice& choice = choices[size_t(index)];
  const ExportFormat format = choice.format;
  // A format this session cannot go to: say why now, not after a file name.
  if (!choice.refusal.empty()) {
    report_error_(failure_title(kExportTag),
                  QString::fromStdString(withExportHint(choice.refusal)));
    return;
  }
  QSettings settings;
  const QString start_dir = settings.value(kLastExportDirKey, QDir::homePath()).toString();
  const QString base = QStringLiteral("%1-%2").arg(
      QFileInfo(QString::fromStdString(checkpoint_->dir().string())).fileName(),
      method_qname(session_->settings.method));
  const QString out =
      format == ExportFormat::gguf
          ? QFileDialog::getSaveFileName(
                this, tr("Export GGUF File"), start_dir + "/" + base + ".gguf",
                tr("GGUF files (*.gguf)"), nullptr, QFileDialog::DontConfirmOverwrite)
          : QFileDialog::getSaveFileName(this, tr("Export fp_quant Directory (a new name)"),
                                         start_dir + "/" + base + "-fp_quant", QString(), nullptr,
                                         QFileDialog::DontConfirmOverwrite);
  if (out.isEmpty()) return;
  settings.setValue(kLastExportDirKey, QFileInfo(out).absolutePath());
  bool force = false;
  if (QFileInfo::exists(out)) {
    if (QMessageBox::question(this, tr("Replace?"),
                              tr("%1 already exists. Replace it? The old one is removed only "
                                 "after the new one is complete.")
                                  .arg(out)) != QMessageBox::Yes)
      return;
    force = true;
  }
  exportCheckpointTo(format, out, force);
}

void MainWindow::exportCheckpointTo(ExportFormat format, const QString& out, bool force) {
  if (!session_ || !checkpoint_) {
    report_error_(failure_title(kExportTag), tr("There is no session to export: calibrate first."));
    return;
  }
  const std::shared_ptr<const Session> session = session_;
  const std::filesystem::path session_file =
      session_file_.isEmpty() ? std::filesystem::path("(unsaved session)")
                              : std::filesystem::path(session_file_.toStdString());
  ExportOptions options;
  options.format = format;
  options.force = force;
  options.threads = threads_;
  const std::filesystem::path path = out.toStdString();
  const uint64_t generation = generation_;
  runner_->post(kExportTag, [this, session, session_file, path, options, generation](
                                RunnerState& state, const Progress& progress) {
    ExportReport report = jobExport(state, *session, session_file, path, options, progress);
    invokeOnGui(this, [this, report = std::move(report), generation] {
      if (generation != generation_) return;
      last_export_ = report;
      statusBar()->showMessage(tr("Exported %1 (%2 MB)")
                                   .arg(QString::fromStdString(report.out.string()))
                                   .arg(double(report.total_bytes()) / 1e6, 0, 'f', 2),
                               8000);
      QString text = tr("<p><b>%1</b> (%2, %3 quantized linears)</p><table>")
                         .arg(QString::fromStdString(report.out.string()).toHtmlEscaped(),
                              QString::fromLatin1(to_string(report.format).data()))
                         .arg(report.quantized_linears);
      for (const ExportedFile& f : report.files)
        text += QStringLiteral("<tr><td>%1</td><td align=right>%2</td></tr>")
                    .arg(QString::fromStdString(f.path.filename().string()).toHtmlEscaped())
                    .arg(qulonglong(f.bytes));
      text += "</table><ul>";
      for (const std::string& n : report.notes)
        text += "<li>" + QString::fromStdString(n).toHtmlEscaped() + "</li>";
      text += "</ul>";
      auto* box = new QMessageBox(QMessageBox::Information, tr("Export finished"), text,
                                  QMessageBox::Ok, this);
      box->setObjectName("exportSummary");
      box->setAttribute(Qt::WA_DeleteOnClose);
      box->open();  // not modal: the window stays usable (and tests are not blocked)
    });
  });
}

void MainWindow::chooseCalibrationText() {
  const QString file = QFileDialog::getOpenFileName(
      this, tr("Calibration Text (cancel: the built-in text)"),
      calibration_text_.isEmpty() ? QDir::homePath() : calibration_text_,
      tr("Text files (*.txt *.raw);;All files (*)"));
  setCalibrationTextFile(file);
}

void MainWindow::chooseEvaluationText() {
  const QString file =
      QFileDialog::getOpenFileName(this, tr("Evaluation Text (cancel: the calibration text)"),
                                   evaluation_text_.isEmpty() ? QDir::homePath() : evaluation_text_,
                                   tr("Text files (*.txt *.raw);;All files (*)"));
  setEvaluationTextFile(file);
}

void MainWindow::setCalibrationTextFile(const QString& file) {
  const QString path =
      file.isEmpty() ? QString() : QDir::cleanPath(QFileInfo(file).absoluteFilePath());
  if (!checkpoint_) {
    calibration_text_ = path;
    QSettings().setValue(kCalibTextKey, path);
    return;
  }
  // Tokenized on the runner first: a text that fails leaves the previous one in use.
  const uint64_t generation = generation_;
  const std::string text = path.toStdString();
  runner_->post(kTextTag, [this, generation, text, path](RunnerState& state, const Progress& p) {
    if (!state.checkpoint) return;
    p.report(0.0, "tokenizing the calibration text");
    std::string note;
    state.calibration_text = jobTokenizeText(*state.checkpoint, text, &note);
    invokeOnGui(this, [this, generation, path, note] {
      if (generation != generation_) return;
      calibration_text_ = path;
      QSettings().setValue(kCalibTextKey, path);
      if (!note.empty()) showNote(QString::fromStdString(note));
      postCalibration(true);
    });
  });
}

void MainWindow::setEvaluationTextFile(const QString& file) {
  const QString path =
      file.isEmpty() ? QString() : QDir::cleanPath(QFileInfo(file).absoluteFilePath());
  if (!checkpoint_ || path.isEmpty()) {
    evaluation_text_ = path;
    QSettings().setValue(kEvalTextKey, path);
    if (checkpoint_)
      runner_->post(kEvalTextTag,
                    [](RunnerState& state, const Progress&) { state.evaluation_text = {}; });
    return;
  }
  const uint64_t generation = generation_;
  const std::string text = path.toStdString();
  runner_->post(
      kEvalTextTag, [this, generation, text, path](RunnerState& state, const Progress& p) {
        if (!state.checkpoint) return;
        if (!state.checkpoint->tokenizer_json())
          throw Error(state.checkpoint->dir().string(),
                      "has no tokenizer.json; the model's tokenizer is needed to read " + text);
        p.report(0.0, "tokenizing the evaluation text");
        state.evaluation_text = jobTokenizeText(*state.checkpoint, text);
        invokeOnGui(this, [this, generation, path] {
          if (generation != generation_) return;
          evaluation_text_ = path;
          QSettings().setValue(kEvalTextKey, path);
        });
      });
}

// --- jobs ---------------------------------------------------------------------------------

void MainWindow::startQuickCalibration() {
  postCalibration(true);
}

void MainWindow::startCalibration() {
  if (checkpoint_ && calibration_text_.isEmpty())
    showNote(
        tr("Calibrating on the short built-in text: choose File ▸ Calibration Text… for "
           "figures that mean something"));
  postCalibration(false);
}

void MainWindow::postCalibration(bool quick) {
  if (!checkpoint_) return;
  const uint64_t generation = generation_;
  const Method m = method();
  const int threads = threads_;
  const bool tie_gqa = tieGqaSmoothing();
  runner_->post(kCalibrateTag, [this, generation, m, quick, threads, tie_gqa](
                                   RunnerState& state, const Progress& progress) {
    if (!state.checkpoint || state.calibration_text.empty()) return;  // the open job failed
    const LlamaConfig& cfg = state.checkpoint->config();
    const int64_t ids = int64_t(state.calibration_text.ids.size());
    CalibrationSettings settings =
        quick ? quickCalibrationSettings(m, cfg, ids) : fullCalibrationSettings(m, cfg, ids);
    settings.smoothing.tie_gqa = tie_gqa;
    std::shared_ptr<const Session> session = jobCalibrate(state, settings, threads, progress);
    invokeOnGui(this, [this, generation, session] {
      if (generation != generation_) return;
      setSession(session);
      session_file_.clear();
    });
  });
}

void MainWindow::startPerplexity(const PerplexityRequest& request) {
  if (!checkpoint_) {
    report_error_(failure_title(kCompareTag),
                  tr("No model is open: open a checkpoint (or the demo) first."));
    perplexity_->setRunning(false);
    return;
  }
  QSettings settings;
  QStringList names;
  for (Method m : request.methods) names << method_qname(m);
  settings.setValue(kPplMethodsKey, names.join(','));
  settings.setValue(kPplScaleRuleKey, int(request.scale_rule));
  settings.setValue(kPplWindowsKey, qlonglong(request.max_windows));
  settings.setValue(kPplSeqlenKey, request.seqlen);
  settings.setValue(kPplBackendKey, request.backend == EvalBackend::cuda ? "cuda" : "cpu");

  perplexity_->resetResults();
  perplexity_->setRunning(true);
  const uint64_t generation = generation_;
  const int threads = threads_;
  runner_->post(kCompareTag, [this, generation, request, threads](RunnerState& state,
                                                                  const Progress& progress) {
    if (!state.checkpoint) throw Error("perplexity", "no model is open");
    CompareOptions options;
    options.methods = request.methods;
    options.calibration = compareCalibrationSettings(
        state.checkpoint->config(), int64_t(state.calibration_text.ids.size()), request.scale_rule);
    options.seqlen = request.seqlen;
    options.max_windows = request.max_windows;
    options.threads = threads;
    options.model_factory = evaluationModelFactory(request.backend == EvalBackend::cuda);
    CompareEvents events;
    events.on_window = [this, generation](Method m, const WindowResult& w) {
      invokeOnGui(this, [this, generation, m, w] {
        if (generation == generation_) perplexity_->addWindow(m, w);
      });
    };
    events.on_method = [this, generation](const MethodResult& r) {
      auto result = std::make_shared<const MethodResult>(r);
      invokeOnGui(this, [this, generation, result] {
        if (generation == generation_) perplexity_->setMethodResult(*result);
      });
    };
    const CompareResult result = jobCompare(state, options, progress, events);
    if (!result.note.empty())
      invokeOnGui(this, [this, note = QString::fromStdString(result.note)] { showNote(note); });
  });
}

void MainWindow::cancelJob() {
  runner_->cancel();
}

void MainWindow::onJobStarted(const QString& tag) {
  QString what = tag;
  if (tag == kOpenTag)
    what = tr("Preparing the model");
  else if (tag == kCalibrateTag)
    what = tr("Calibrating (%1)").arg(methodDisplayName(method()));
  else if (tag == kCompareTag)
    what = tr("Measuring perplexity");
  else if (tag == kLoadSessionTag)
    what = tr("Opening session");
  else if (tag == kSaveSessionTag)
    what = tr("Saving session");
  else if (tag == kTextTag || tag == kEvalTextTag)
    what = tr("Reading text");
  else if (tag == kDemoTag)
    what = tr("Writing the demo model");
  else if (tag == kExportTag)
    what = tr("Exporting");
  job_label_->setText(what);
  job_label_->setProperty("job", what);
  job_label_->setProperty("tag", tag);
  job_progress_->setValue(0);
  job_progress_->show();
  job_eta_->clear();
  job_cancel_->setEnabled(true);
  cancel_action_->setEnabled(true);
  job_clock_->start();
}

void MainWindow::onProgress(double fraction, const QString& stage) {
  const QString what = job_label_->property("job").toString();
  fraction = std::clamp(fraction, 0.0, 1.0);
  job_progress_->setValue(int(fraction * 1000));
  job_label_->setText(
      stage.isEmpty() ? QStringLiteral("%1 · %2 %").arg(what).arg(int(fraction * 100))
                      : QStringLiteral("%1 · %2 · %3 %").arg(what, stage).arg(int(fraction * 100)));
  const double elapsed = double(job_clock_->elapsed()) / 1000.0;
  if (fraction > 0.01 && elapsed > 0.5)
    job_eta_->setText(tr("ETA %1").arg(format_eta(elapsed * (1.0 - fraction) / fraction)));
}

void MainWindow::onJobEnded(const QString& tag, const QString& outcome) {
  if (tag == kCompareTag) perplexity_->setRunning(false);
  const bool running = runner_ && !runner_->runningTag().isEmpty();
  // The label speaks of the last job started; a waiting job dropped does not change it, nor
  // does the end of one when the next has already started.
  if (tag == job_label_->property("tag").toString() && !running) {
    job_label_->setText(tr("%1: %2").arg(job_label_->property("job").toString(), outcome));
    job_progress_->hide();
    job_eta_->clear();
  }
  job_cancel_->setEnabled(running);
  cancel_action_->setEnabled(running);
}

void MainWindow::showPlantCaveat() {
  QString text;
  try {
    text = QString::fromStdString(plant_caveat(read_plant_summary(checkpoint_->dir())));
  } catch (const Error& e) {
    text = QString::fromStdString(e.what());
  }
  plant_banner_->setText(text.isEmpty() ? QString() : tr("Planted checkpoint. ") + text);
  plant_banner_->setVisible(!text.isEmpty());
}

void MainWindow::showNote(const QString& note) {
  statusBar()->showMessage(note, 15000);
}

// --- session and selection ----------------------------------------------------------------

void MainWindow::setSession(std::shared_ptr<const Session> session) {
  session_ = std::move(session);
  for (SessionObserver* o : observers_) o->onSessionChanged(session_);
  if (session_ && !tree_->selectedSite() && tree_->layerCount() > 0)
    tree_->selectSite(0, Site::Qkv);  // something to look at straight away
  if (const auto site = tree_->selectedSite())
    site_details_->setText(tree_->siteDetails(site->first, site->second));
  if (session_ && !session_->warnings.empty()) {
    QStringList w;
    for (const std::string& s : session_->warnings) w << QString::fromStdString(s);
    showNote(w.join(QStringLiteral("; ")));
  }
  updateActions();
}

void MainWindow::selectSite(int layer, Site site) {
  for (SessionObserver* o : observers_)
    if (o != tree_) o->onSiteSelected(layer, site);
  site_details_->setText(tree_->siteDetails(layer, site));
}

void MainWindow::stepGreedy(int delta, bool to_end) {
  tabs_->setCurrentIndex(GreedyTab);
  if (!greedy_->hasTrace()) return;
  if (to_end)
    greedy_->setStep(delta < 0 ? 0 : greedy_->maxSteps());
  else
    greedy_->setStep(greedy_->currentStep() + delta);
}

// --- recent, title, drag and drop ---------------------------------------------------------

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

void MainWindow::updateActions() {
  const bool model = bool(checkpoint_);
  save_action_->setEnabled(bool(session_));
  if (export_action_) export_action_->setEnabled(bool(session_));
  save_as_action_->setEnabled(bool(session_));
  quick_action_->setEnabled(model);
  calibrate_action_->setEnabled(model);
  evaluate_action_->setEnabled(model);
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
  settings.setValue(kSplitterKey, left_splitter_->saveState());
  settings.setValue(kTabKey, tabs_->currentIndex());
  QMainWindow::closeEvent(event);
}

}  // namespace mxlens::gui
