// The workbench end to end, offscreen, on the real 656K model: opening it through the path
// File ▸ Open takes runs the quick calibration on the job runner; the model tree selects a
// site and the Outliers, Scales and Greedy views show exactly that site's session data; a
// perplexity run started from its view is cancelled after its first window while the event
// loop stays responsive; a broken checkpoint and a session of another model are refused with
// the previous model and session still shown; sessions save and reopen; the demo opens.
#include <QMessageBox>
#include <QtTest>

#include <QAction>
#include <QElapsedTimer>
#include <QFile>
#include <QPushButton>
#include <QSettings>
#include <QTemporaryDir>
#include <QTimer>
#include <cmath>

#include "app/gui/job_runner.h"
#include "app/gui/main_window.h"
#include "app/gui/model_tree.h"
#include "app/gui/site_views.h"
#include "core/calib/search_input.h"
#include "core/calib/session.h"
#include "core/io/session_file.h"
#include "core/model/checkpoint.h"
#include "tests/test_data.h"
#include "widgets/greedy_view.h"
#include "widgets/outliers_view.h"
#include "widgets/perplexity_view.h"
#include "widgets/scales_view.h"

using mxlens::Method;
using mxlens::Site;
using mxlens::gui::MainWindow;

namespace {

constexpr int kWaitMs = 60000;

// Largest |a − b| as a plain loop (GCC 12 warns falsely about Eigen's inlined AVX-512 max).
double max_abs_diff(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  double m = 0;
  for (Eigen::Index i = 0; i < a.rows(); ++i)
    for (Eigen::Index j = 0; j < a.cols(); ++j) m = std::max(m, std::fabs(a(i, j) - b(i, j)));
  return m;
}

struct ReportedError {
  QString title, message;
};

QString model_dir() {
  return QString::fromStdString(mxlens::test::model_656k().string());
}

// A window with a recording error reporter, one compute thread (the GUI thread keeps a core
// on a two-core CI machine), the 656K model opened as File ▸ Open does and its quick
// calibration finished.
struct Workbench {
  MainWindow window;
  QList<ReportedError> errors;

  Workbench() {
    window.setErrorReporter([this](const QString& t, const QString& m) { errors.append({t, m}); });
    window.setComputeThreads(1);
  }
  bool open() {
    if (!window.openCheckpoint(model_dir())) return false;
    return window.runner()->waitIdle(kWaitMs) && window.session() != nullptr;
  }
  const mxlens::SiteStats& stats(int layer, Site site) const {
    return window.session()->stats[size_t(layer)][size_t(site)];
  }
};

// For a person to look at (the asserts are what guard the window): the window with one tab.
void save_screenshot(MainWindow& window, int tab, const QString& name) {
  window.resize(1280, 800);
  window.show();
  window.viewTabs()->setCurrentIndex(tab);
  QCoreApplication::processEvents();
  const QString png = QDir(QCoreApplication::applicationDirPath()).filePath(name);
  if (window.grab().save(png)) qInfo("wrote %s", qPrintable(png));
}

QString describe(const QList<ReportedError>& errors) {
  QStringList lines;
  for (const ReportedError& e : errors) lines << e.title + ": " + e.message;
  return lines.join('\n');
}

}  // namespace

class TestWorkbench : public QObject {
  Q_OBJECT

  QTemporaryDir settings_dir_;

 private slots:
  void initTestCase() {
    QVERIFY(settings_dir_.isValid());
    QCoreApplication::setOrganizationName("mxlens-test");
    QCoreApplication::setApplicationName("test_workbench");
    QSettings::setDefaultFormat(QSettings::IniFormat);
    QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, settings_dir_.path());
    QVERIFY2(QFileInfo(model_dir() + "/config.json").exists(), qPrintable(model_dir()));
  }

  void init() { QSettings().clear(); }

  // Opening calibrates quickly with the selected method; the tree gets a badge per site.
  void openRunsQuickCalibration() {
    Workbench w;
    QElapsedTimer clock;
    clock.start();
    QVERIFY2(w.open(), qPrintable(describe(w.errors)));
    qInfo("open + quick calibration: %lld ms", clock.elapsed());
    QVERIFY2(w.errors.isEmpty(), qPrintable(describe(w.errors)));
    const auto session = w.window.session();
    QCOMPARE(int(session->settings.method), int(Method::duquantpp));
    QCOMPARE(session->settings.windows.count, 8);
    QCOMPARE(session->settings.windows.seqlen, 128);
    QCOMPARE(session->settings.greedy.max_steps, 32);
    QCOMPARE(QString::fromStdString(session->data.text_path), QString("(built-in English text)"));
    QCOMPARE(int(session->stats.size()), 2);
    QVERIFY(session->stats[0][0].sample_before.rows() > 0);

    mxlens::gui::ModelTree* tree = w.window.modelTree();
    QCOMPARE(tree->layerCount(), 2);
    for (int layer = 0; layer < 2; ++layer)
      for (Site site : mxlens::kAllSites) {
        const QString badge = tree->badgeText(layer, site);
        QVERIFY2(badge.contains("→"), qPrintable(badge));
        const auto& s = w.stats(layer, site);
        const double before = s.mean_exponent_spread_before(session->settings.stats.mx);
        QVERIFY2(badge.startsWith(QString::number(before, 'f', 1)), qPrintable(badge));
      }
    // The first site is selected so the views show something straight away.
    QVERIFY(tree->selectedSite());
    QVERIFY(!w.window.outliersView()->absmaxBars(false).isEmpty());
    QVERIFY(w.window.jobText().contains("done"));
  }

  // Selecting layer 1 · gu shows exactly session->stats[1][gu] in Outliers and Scales.
  void siteSelectionDrivesViews() {
    Workbench w;
    QVERIFY2(w.open(), qPrintable(describe(w.errors)));
    w.window.modelTree()->selectSite(0, Site::Qkv);
    QVERIFY(w.window.modelTree()->selectSite(1, Site::GateUp));
    const mxlens::SiteStats& s = w.stats(1, Site::GateUp);
    // Selecting a site must change what is shown: layer 0 · qkv is something else.
    QVERIFY(w.stats(0, Site::Qkv).absmax_before != s.absmax_before);

    const mxlens::OutliersView* outliers = w.window.outliersView();
    for (bool after : {false, true}) {
      const std::vector<float>& want = after ? s.absmax_after : s.absmax_before;
      const QVector<double> bars = outliers->absmaxBars(after);
      QCOMPARE(bars.size(), qsizetype(want.size()));
      for (size_t c = 0; c < want.size(); ++c) QCOMPARE(bars[qsizetype(c)], double(want[c]));
      const QCPColorMap* map = after ? outliers->afterMap() : outliers->beforeMap();
      const mxlens::RowMatrixXf& rows = after ? s.sample_after : s.sample_before;
      QCOMPARE(map->data()->keySize(), s.channels);
      QCOMPARE(map->data()->valueSize(), int(rows.rows()));
      const double lo = outliers->colorRange().lower;
      for (Eigen::Index r = 0; r < rows.rows(); ++r)
        for (int c = 0; c < s.channels; ++c)
          QCOMPARE(map->data()->cell(c, int(r)), std::max(std::fabs(double(rows(r, c))), lo));
    }

    const mxlens::ScalesView* scales = w.window.scalesView();
    const mxlens::QuantOptions& mx = w.window.session()->settings.stats.mx;
    for (bool after : {false, true}) {
      const auto& hist = after ? s.e8m0_hist_after : s.e8m0_hist_before;
      const QVector<double> bars = scales->histogramBars(after);
      QCOMPARE(bars.size(), 255);
      for (int e = 0; e < 255; ++e) {
        double sum = 0;
        for (int b = 0; b < s.blocks; ++b) sum += hist[size_t(b) * 256 + size_t(e)];
        QCOMPARE(bars[e], sum);
      }
      const std::vector<uint8_t> bytes = after ? s.sample_e8m0_after(mx) : s.sample_e8m0_before(mx);
      for (Eigen::Index r = 0; r < s.sample_before.rows(); ++r)
        for (int b = 0; b < s.blocks; ++b)
          QCOMPARE(scales->exponentCell(after, int(r), b), double(bytes[size_t(r) * s.blocks + b]));
    }
    QVERIFY(w.window.findChild<QLabel*>("siteDetails")->text().contains("layer 1 · gu"));
    save_screenshot(w.window, MainWindow::OutliersTab, "workbench_outliers.png");
    save_screenshot(w.window, MainWindow::ScalesTab, "workbench_scales.png");
    save_screenshot(w.window, MainWindow::GreedyTab, "workbench_greedy.png");
  }

  // The Greedy tab replays the site's trace step by step (setStep, keys, the window's
  // shortcuts); a method without a search says so instead.
  void greedyReplaysTrace() {
    Workbench w;
    QVERIFY2(w.open(), qPrintable(describe(w.errors)));
    w.window.show();
    QVERIFY(w.window.modelTree()->selectSite(1, Site::GateUp));
    const mxlens::SiteSearch& search = w.window.session()->searches[1][size_t(Site::GateUp)];
    QVERIFY(!search.traces.empty());
    const mxlens::GreedyTrace& trace = search.traces.back();
    QVERIFY(trace.max_steps() > 2);
    QVERIFY(w.window.greedyMessage().isEmpty());
    mxlens::GreedyView* greedy = w.window.greedyView();
    QCOMPARE(greedy->maxSteps(), trace.max_steps());
    QCOMPARE(greedy->keptPrefix(), trace.best_step);
    QCOMPARE(w.window.siteViews()->shownTrace(), &trace);
    // Z: the sampled rows cut into 32-wide blocks.
    const mxlens::SiteStats& s = w.stats(1, Site::GateUp);
    QCOMPARE(w.window.siteViews()->shownBlocks().rows(), s.sample_before.rows() * s.channels / 32);
    QCOMPARE(greedy->profile(true).size(), 32);

    const auto check_step = [&](int k) {
      QCOMPARE(greedy->currentStep(), k);
      const Eigen::MatrixXd want = trace.matrix_at_step(k);
      const Eigen::MatrixXd shown = greedy->shownMatrix();
      QCOMPARE(shown.rows(), want.rows());
      QVERIFY2(max_abs_diff(shown, want) < 1e-12, qPrintable(QString::number(k)));
    };
    for (int k : {0, 1, trace.best_step, trace.max_steps()}) {
      greedy->setStep(k);
      check_step(k);
    }
    // Step 1 and step 0 differ (else the checks above could not tell the steps apart).
    QVERIFY(max_abs_diff(trace.matrix_at_step(1), trace.matrix_at_step(0)) > 0.1);

    // Keys on the view, then the window's shortcuts from anywhere.
    QTest::keyClick(greedy, Qt::Key_Home);
    check_step(0);
    QTest::keyClick(greedy, Qt::Key_Right);
    check_step(1);
    w.window.findChild<QAction*>("actionGreedyNext")->trigger();
    check_step(2);
    w.window.findChild<QAction*>("actionGreedyLast")->trigger();
    check_step(trace.max_steps());
    w.window.findChild<QAction*>("actionGreedyFirst")->trigger();
    check_step(0);
    QCOMPARE(w.window.viewTabs()->currentIndex(), int(MainWindow::GreedyTab));

    // Original DuQuant: two 128-wide searches per site (R₁, zigzag, R₂); the tab replays R₂.
    w.window.setMethod(Method::duquant);
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    QCOMPARE(int(w.window.session()->settings.method), int(Method::duquant));
    QVERIFY(w.window.modelTree()->selectSite(0, Site::Down));
    const mxlens::SiteSearch& dq = w.window.session()->searches[0][size_t(Site::Down)];
    QCOMPARE(int(dq.traces.size()), 2);
    QCOMPARE(dq.traces.back().block_size, 128);
    QCOMPARE(w.window.siteViews()->shownTrace(), &dq.traces.back());
    greedy->setStep(greedy->maxSteps());
    QVERIFY(max_abs_diff(greedy->shownMatrix(),
                         dq.traces.back().matrix_at_step(greedy->maxSteps())) < 1e-12);
    QCOMPARE(greedy->profile(false).size(), 128);

    // RTN searches nothing: the toolbar's method recalibrates and the tab says so.
    w.window.setMethod(Method::rtn);
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    QCOMPARE(int(w.window.session()->settings.method), int(Method::rtn));
    QVERIFY2(w.window.greedyMessage().contains("no greedy search"),
             qPrintable(w.window.greedyMessage()));
    QVERIFY(!greedy->hasTrace());
    QVERIFY2(w.errors.isEmpty(), qPrintable(describe(w.errors)));
  }

  // A perplexity run from the view, cancelled after its first window: the view stops, the
  // run did stop early, and the GUI thread never stalled (a 5 ms timer's largest gap).
  // View ▸ Follow the Greedy Stepper: Outliers and Scales show the state at the step.
  void viewsFollowStepper() {
    Workbench w;
    QVERIFY2(w.open(), qPrintable(describe(w.errors)));
    QVERIFY(w.window.modelTree()->selectSite(0, Site::Down));
    const auto session = w.window.session();
    const mxlens::GreedyTrace& trace = session->searches[0][size_t(Site::Down)].traces.back();
    QVERIFY(trace.max_steps() >= 2);
    auto* follow = w.window.findChild<QAction*>("actionFollowStepper");
    QVERIFY(follow);
    follow->setChecked(true);
    for (int k : {0, 1, trace.max_steps()}) {
      w.window.greedyView()->setStep(k);
      const auto want = mxlens::site_stats_at_step(*session, 0, Site::Down, k);
      QVERIFY(want.has_value());
      const QVector<double> bars = w.window.outliersView()->absmaxBars(true);
      QCOMPARE(bars.size(), qsizetype(want->channels));
      for (int c = 0; c < want->channels; ++c)
        QCOMPARE(bars[c], double(want->absmax_after[size_t(c)]));
      const QVector<double> sqnr = w.window.scalesView()->sqnrBars(true);
      const std::vector<double> want_sqnr = want->sqnr_db_after();
      for (int b = 0; b < want->blocks; ++b) QCOMPARE(sqnr[b], want_sqnr[size_t(b)]);
    }
    // Unlinked, the views show the session's statistics again.
    follow->setChecked(false);
    const QVector<double> bars = w.window.outliersView()->absmaxBars(true);
    const auto& full = session->stats[0][size_t(Site::Down)].absmax_after;
    for (size_t c = 0; c < full.size(); ++c) QCOMPARE(bars[int(c)], double(full[c]));
  }

  void perplexityCancelStaysResponsive() {
    Workbench w;
    QVERIFY2(w.open(), qPrintable(describe(w.errors)));
    // A long evaluation text, so that the run is still going when the cancel arrives.
    const QString stories = QString::fromStdString(
        (mxlens::test::data_dir() / "tinystories-text" / "stories.txt").string());
    w.window.setEvaluationTextFile(stories);
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    QCOMPARE(w.window.evaluationTextFile(), QDir::cleanPath(QFileInfo(stories).absoluteFilePath()));
    w.window.show();
    w.window.viewTabs()->setCurrentIndex(MainWindow::PerplexityTab);

    mxlens::PerplexityView* view = w.window.perplexityView();
    mxlens::PerplexityRequest request;
    request.methods = {Method::fp, Method::rtn};
    request.max_windows = 200;
    request.seqlen = 256;
    view->setRequest(request);

    QElapsedTimer clock;
    qint64 last_tick = -1, max_gap = 0;
    QTimer ticker;
    ticker.setTimerType(Qt::PreciseTimer);
    ticker.setInterval(5);
    connect(&ticker, &QTimer::timeout, [&] {
      const qint64 now = clock.nsecsElapsed() / 1000;  // µs
      if (last_tick >= 0) max_gap = std::max(max_gap, now - last_tick);
      last_tick = now;
    });
    clock.start();
    ticker.start();
    QTest::mouseClick(view->runButton(), Qt::LeftButton);
    QVERIFY(view->isRunning());
    QVERIFY(QTest::qWaitFor([&] { return view->graphPointCount(Method::fp) > 0; }, kWaitMs));
    // Let the chart take a few hundred milliseconds of window updates before cancelling, so
    // the gap measurement covers the live updates and not only the start.
    QTest::qWait(std::max(0, 300 - int(clock.elapsed())));
    QVERIFY(view->cancelButton()->isEnabled());
    QTest::mouseClick(view->cancelButton(), Qt::LeftButton);
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    ticker.stop();
    qInfo("run + cancel: %lld ms, fp windows %d, largest gap between 5 ms ticks: %.1f ms",
          clock.elapsed(), view->graphPointCount(Method::fp), double(max_gap) / 1000.0);

    QVERIFY(!view->isRunning());
    QVERIFY(view->runButton()->isEnabled());
    QVERIFY(view->graphPointCount(Method::fp) >= 1);
    QVERIFY(view->graphPointCount(Method::fp) < 200);  // stopped early
    QCOMPARE(view->graphPointCount(Method::rtn), 0);
    QCOMPARE(view->tableRowCount(), 0);  // no method finished
    QVERIFY2(w.window.jobText().contains("cancelled"), qPrintable(w.window.jobText()));
    QVERIFY2(w.errors.isEmpty(), qPrintable(describe(w.errors)));
    QVERIFY2(max_gap < 100 * 1000, qPrintable(QString::number(double(max_gap) / 1000.0)));
    QVERIFY(max_gap > 0);  // the timer did tick during the run
  }

  // A complete small run fills the table (FP first) and the chart per method.
  void perplexityRunCompletes() {
    Workbench w;
    QVERIFY2(w.open(), qPrintable(describe(w.errors)));
    mxlens::PerplexityRequest request;
    request.methods = {Method::fp, Method::rtn};
    request.max_windows = 2;
    request.seqlen = 64;
    w.window.startPerplexity(request);
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    QVERIFY2(w.errors.isEmpty(), qPrintable(describe(w.errors)));
    mxlens::PerplexityView* view = w.window.perplexityView();
    QVERIFY(!view->isRunning());
    QCOMPARE(view->graphPointCount(Method::fp), 2);
    QCOMPARE(view->graphPointCount(Method::rtn), 2);
    QCOMPARE(view->tableRowCount(), 2);
    QCOMPARE(view->tableCell(0, 0), QString("fp"));
    save_screenshot(w.window, MainWindow::PerplexityTab, "workbench_perplexity.png");
  }

  // A broken checkpoint is reported by name; the model, the session and the views stay.
  void brokenCheckpointKeepsModelAndSession() {
    Workbench w;
    QVERIFY2(w.open(), qPrintable(describe(w.errors)));
    QVERIFY(w.window.modelTree()->selectSite(1, Site::GateUp));
    const mxlens::Checkpoint* model = w.window.checkpoint();
    const auto session = w.window.session();
    const QString title = w.window.windowTitle();
    const QVector<double> bars = w.window.outliersView()->absmaxBars(false);

    QTemporaryDir tmp;
    QFile config(tmp.filePath("config.json"));
    QVERIFY(config.open(QIODevice::WriteOnly));
    config.write("\x01\x02 this is not { json");
    config.close();
    QVERIFY(!w.window.openCheckpoint(tmp.path()));
    QCOMPARE(w.errors.size(), 1);
    qInfo("reported: %s", qPrintable(describe(w.errors)));
    QVERIFY2(w.errors[0].message.contains(tmp.path()), qPrintable(w.errors[0].message));
    QVERIFY2(w.errors[0].message.contains("config.json"), qPrintable(w.errors[0].message));

    QVERIFY(w.window.runner()->waitIdle(kWaitMs));  // nothing was posted
    QCOMPARE(w.errors.size(), 1);
    QCOMPARE(w.window.checkpoint(), model);
    QCOMPARE(w.window.session(), session);
    QCOMPARE(w.window.windowTitle(), title);
    QCOMPARE(w.window.modelTree()->layerCount(), 2);
    QVERIFY(!w.window.modelTree()->badgeText(1, Site::GateUp).isEmpty());
    QCOMPARE(w.window.outliersView()->absmaxBars(false), bars);
  }

  // Save Session writes the HDF5 file on the runner; Open Session shows it again; a session
  // of another model is refused and the current one stays.
  void sessionSaveOpenAndMismatch() {
    Workbench w;
    QVERIFY2(w.open(), qPrintable(describe(w.errors)));
    QTemporaryDir tmp;
    const QString file = tmp.filePath("656k.h5");
    w.window.saveSessionFile(file);
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    QVERIFY2(w.errors.isEmpty(), qPrintable(describe(w.errors)));
    QVERIFY(QFileInfo::exists(file));
    QCOMPARE(w.window.sessionFile(), file);

    const auto saved = w.window.session();
    w.window.setMethod(Method::hadamard);  // another session in between
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    QCOMPARE(int(w.window.session()->settings.method), int(Method::hadamard));
    w.window.openSessionFile(file);
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    QVERIFY2(w.errors.isEmpty(), qPrintable(describe(w.errors)));
    const auto reopened = w.window.session();
    QVERIFY(reopened != saved);
    QCOMPARE(int(reopened->settings.method), int(Method::duquantpp));
    QCOMPARE(int(w.window.method()), int(Method::duquantpp));  // the selector follows
    QCOMPARE(reopened->stats[1][2].absmax_after, saved->stats[1][2].absmax_after);
    QCOMPARE(w.window.sessionFile(), file);

    // The same session claiming other weights (runner idle: HDF5 from this thread is safe).
    mxlens::Session other = mxlens::load_session(file.toStdString());
    other.provenance.fingerprint.weights_sha256 = std::string(64, '0');
    const QString other_file = tmp.filePath("other-model.h5");
    mxlens::save_session(other, other_file.toStdString());
    w.window.openSessionFile(other_file);
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    QCOMPARE(w.errors.size(), 1);
    qInfo("reported: %s", qPrintable(describe(w.errors)));
    QVERIFY2(w.errors[0].message.contains(other_file), qPrintable(w.errors[0].message));
    QCOMPARE(w.window.session(), reopened);
    QCOMPARE(w.window.sessionFile(), file);
  }

  // File ▸ Open Demo: a planted tiny model, calibrated, with outliers to look at.
  void demoOpensPlantedModel() {
    Workbench w;
    w.window.openDemo();
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    QVERIFY2(w.errors.isEmpty(), qPrintable(describe(w.errors)));
    QVERIFY(w.window.checkpoint());
    QVERIFY2(w.window.windowTitle().startsWith("mxlens-demo"), qPrintable(w.window.windowTitle()));
    QVERIFY(w.window.session());
    QVERIFY(w.window.recentCheckpoints().isEmpty());  // a temporary directory is not recent
    // Planted ×8 channels stand far above the median channel at the qkv input.
    std::vector<float> absmax = w.stats(0, Site::Qkv).absmax_before;
    QCOMPARE(int(absmax.size()), 64);
    std::sort(absmax.begin(), absmax.end());
    qInfo("demo layer 0 qkv absmax: median %.3f, max %.3f", absmax[32], absmax.back());
    QVERIFY(absmax.back() > 4 * absmax[32]);
    QVERIFY(!w.window.modelTree()->badgeText(0, Site::Qkv).isEmpty());
    // The demo is a norm-mode plant: the window says what that means for the numbers.
    QVERIFY2(w.window.plantCaveat().contains("norm-mode") &&
                 w.window.plantCaveat().contains("RTN") &&
                 w.window.plantCaveat().contains("Smoothing"),
             qPrintable(w.window.plantCaveat()));
    // An ordinary checkpoint clears it.
    QVERIFY2(w.open(), qPrintable(describe(w.errors)));
    QVERIFY(w.window.plantCaveat().isEmpty());
    w.window.openDemo();
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    save_screenshot(w.window, MainWindow::OutliersTab, "workbench_demo_outliers.png");
  }

  // File ▸ Export ▸ Calibrated Checkpoint on the job thread: the default (online GQA
  // smoothing) DuQuant++ session is refused with the window's switch named; with Run ▸
  // Exportable Smoothing the export is written, opens as an fp_quant checkpoint and runs its
  // stored rotations.
  void exportCalibratedCheckpoint() {
    Workbench w;
    QVERIFY(w.open());
    QTemporaryDir tmp;
    QVERIFY(tmp.isValid());
    QCOMPARE(int(w.window.session()->settings.method), int(Method::duquantpp));
    QVERIFY(!w.window.tieGqaSmoothing());
    // The format list says before any file dialog what this session cannot become: online
    // GQA smoothing (fp_quant) and a rotation (gguf).
    QStringList choices = w.window.exportFormatChoices();
    QCOMPARE(choices.size(), 2);
    qInfo("format choices: %s | %s", qPrintable(choices[0]), qPrintable(choices[1]));
    QVERIFY2(choices[0].startsWith("fp_quant") && choices[0].contains("not for this session") &&
                 choices[0].contains("online"),
             qPrintable(choices[0]));
    QVERIFY2(choices[1].startsWith("gguf") && choices[1].contains("rotates"),
             qPrintable(choices[1]));
    const QString refused = tmp.filePath("refused");
    w.window.exportCheckpointTo(mxlens::ExportFormat::fp_quant, refused, false);
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    QCOMPARE(w.errors.size(), 1);
    QVERIFY2(w.errors[0].message.contains("Exportable Smoothing"), qPrintable(w.errors[0].message));
    QVERIFY(!QFileInfo::exists(refused));
    QVERIFY(!w.window.lastExport());

    w.errors.clear();
    w.window.setTieGqaSmoothing(true);
    w.window.findChild<QAction*>("actionQuickCalibrate")->trigger();
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    QVERIFY(w.window.session()->settings.smoothing.tie_gqa);
    choices = w.window.exportFormatChoices();
    QVERIFY2(!choices[0].contains("not for this session"), qPrintable(choices[0]));
    QVERIFY2(choices[1].contains("not for this session"), qPrintable(choices[1]));
    const QString out = tmp.filePath("exported");
    w.window.exportCheckpointTo(mxlens::ExportFormat::fp_quant, out, false);
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    QVERIFY2(w.errors.isEmpty(), qPrintable(w.errors.value(0).message));
    QVERIFY(w.window.lastExport());
    QCOMPARE(w.window.lastExport()->quantized_linears, 14);
    QVERIFY(w.window.findChild<QMessageBox*>("exportSummary"));
    const mxlens::Checkpoint exported = mxlens::Checkpoint::open(out.toStdString());
    QVERIFY(exported.fp_quant());
    QCOMPARE(exported.fp_quant()->mxlens_method, std::string("duquantpp"));
    // An existing output is refused without force.
    w.window.exportCheckpointTo(mxlens::ExportFormat::fp_quant, out, false);
    QVERIFY(w.window.runner()->waitIdle(kWaitMs));
    QCOMPARE(w.errors.size(), 1);
    QVERIFY2(w.errors[0].message.contains("--force") || w.errors[0].message.contains("exists"),
             qPrintable(w.errors[0].message));
  }
};

QTEST_MAIN(TestWorkbench)
#include "test_workbench.moc"
