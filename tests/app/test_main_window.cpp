// The main window offscreen: menus, tabs and docks, opening the real 656K checkpoint through the
// function File ▸ Open Checkpoint… calls, and a broken directory that must leave the
// previous model in place and report (through an injected reporter, not a modal dialog).
#include <QtTest>

#include <QAction>
#include <QComboBox>
#include <QDockWidget>
#include <QDropEvent>
#include <QMenu>
#include <QMenuBar>
#include <QMimeData>
#include <QSettings>
#include <QStandardItemModel>
#include <QTabWidget>
#include <QTemporaryDir>

#include "app/gui/main_window.h"
#include "app/gui/model_summary_panel.h"
#include "app/gui/workbench_jobs.h"
#include "core/model/checkpoint.h"
#include "core/util/error.h"
#include "mxlens/gpu/cuda.h"
#include "tests/test_data.h"
#include "widgets/perplexity_view.h"
#include "widgets/scales_view.h"

using mxlens::gui::MainWindow;

namespace {

struct ReportedError {
  QString title, message;
};

QString model_dir() {
  return QString::fromStdString(mxlens::test::model_656k().string());
}

// Writes a copy of the 656K config.json with one field broken, and no weights.
QString make_broken_checkpoint(const QTemporaryDir& tmp, const QByteArray& config) {
  QFile file(tmp.filePath("config.json"));
  if (!file.open(QIODevice::WriteOnly)) return {};
  file.write(config);
  return tmp.path();
}

}  // namespace

class TestMainWindow : public QObject {
  Q_OBJECT

  QTemporaryDir settings_dir_;

 private slots:
  void initTestCase() {
    // Keep the user's settings out of it: a private INI location for this run.
    QVERIFY(settings_dir_.isValid());
    QCoreApplication::setOrganizationName("mxlens-test");
    QCoreApplication::setApplicationName("test_main_window");
    QSettings::setDefaultFormat(QSettings::IniFormat);
    QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, settings_dir_.path());
    QVERIFY2(QFileInfo(model_dir() + "/config.json").exists(), qPrintable(model_dir()));
  }

  void init() { QSettings().clear(); }

  void menusAndActions_data() {
    QTest::addColumn<QString>("action");
    QTest::addColumn<bool>("enabled");  // with no model open
    QTest::addColumn<QKeySequence>("shortcut");
    QTest::addColumn<bool>("pending");  // an action of a later issue
    QTest::newRow("File Open Checkpoint")
        << "actionOpenCheckpoint" << true << QKeySequence(QKeySequence::Open) << false;
    QTest::newRow("File Open Demo") << "actionOpenDemo" << true << QKeySequence() << false;
    QTest::newRow("File Calibration Text")
        << "actionCalibrationText" << true << QKeySequence() << false;
    QTest::newRow("File Open Session") << "actionOpenSession" << true << QKeySequence() << false;
    QTest::newRow("File Save Session")
        << "actionSaveSession" << false << QKeySequence(QKeySequence::Save) << false;
    QTest::newRow("File Save Session As")
        << "actionSaveSessionAs" << false << QKeySequence(QKeySequence::SaveAs) << false;
    QTest::newRow("File Export Checkpoint")
        << "actionExportCheckpoint" << false << QKeySequence() << false;
    QTest::newRow("File Quit") << "actionQuit" << true << QKeySequence(QKeySequence::Quit) << false;
    QTest::newRow("View Outliers")
        << "actionViewOutliers" << true << QKeySequence("Ctrl+1") << false;
    QTest::newRow("View Scales") << "actionViewScales" << true << QKeySequence("Ctrl+2") << false;
    QTest::newRow("View Greedy Search")
        << "actionViewGreedySearch" << true << QKeySequence("Ctrl+3") << false;
    QTest::newRow("View Perplexity")
        << "actionViewPerplexity" << true << QKeySequence("Ctrl+4") << false;
    QTest::newRow("View Greedy Next Step")
        << "actionGreedyNext" << true << QKeySequence("Ctrl+Right") << false;
    QTest::newRow("Run Quick Calibration")
        << "actionQuickCalibrate" << false << QKeySequence() << false;
    QTest::newRow("Run Calibrate") << "actionCalibrate" << false << QKeySequence() << false;
    QTest::newRow("Run Evaluate") << "actionEvaluate" << false << QKeySequence() << false;
    QTest::newRow("Run Cancel") << "actionCancel" << false << QKeySequence(Qt::Key_Escape) << false;
    QTest::newRow("Help About") << "actionAbout" << true << QKeySequence() << false;
  }
  void menusAndActions() {
    QFETCH(QString, action);
    QFETCH(bool, enabled);
    QFETCH(QKeySequence, shortcut);
    QFETCH(bool, pending);
    MainWindow window;
    auto* a = window.findChild<QAction*>(action);
    QVERIFY2(a, qPrintable(action));
    QCOMPARE(a->isEnabled(), enabled);
    QCOMPARE(a->shortcut(), shortcut);
    // Actions of later issues say what they will do; the others say what they do.
    QCOMPARE(a->toolTip().startsWith("Will "), pending);
  }

  void menuBarOrder() {
    MainWindow window;
    QStringList titles;
    for (QAction* a : window.menuBar()->actions()) titles << a->text().remove('&');
    QCOMPARE(titles, QStringList({"File", "View", "Run", "Help"}));
    QVERIFY(window.findChild<QMenu*>("menuOpenRecent"));
    QVERIFY(window.findChild<QMenu*>("menuExport"));
  }

  void viewActionsSelectTabs() {
    MainWindow window;
    window.show();
    auto* tabs = window.findChild<QTabWidget*>("viewTabs");
    auto* scales = window.findChild<QAction*>("actionViewScales");
    auto* perplexity = window.findChild<QAction*>("actionViewPerplexity");
    QVERIFY(tabs && scales && perplexity);
    QCOMPARE(tabs->count(), 4);
    QCOMPARE(tabs->tabText(2), QString("Greedy search"));
    QVERIFY(scales->isCheckable());
    scales->trigger();
    QCOMPARE(tabs->currentWidget(), static_cast<QWidget*>(window.scalesView()));
    QVERIFY(scales->isChecked());
    tabs->setCurrentIndex(MainWindow::PerplexityTab);  // and the other way round
    QVERIFY(perplexity->isChecked());
    QVERIFY(!scales->isChecked());
    auto* model_dock = window.findChild<QDockWidget*>("dockModel");
    QVERIFY(model_dock && model_dock->isVisible());
  }

  void openModelUpdatesSummary() {
    MainWindow window;
    QList<ReportedError> errors;
    window.setErrorReporter([&](const QString& t, const QString& m) { errors.append({t, m}); });
    QCOMPARE(window.summaryPanel()->fact("Hidden size"), QString());
    QVERIFY(window.openCheckpoint(model_dir()));
    QVERIFY(errors.isEmpty());
    QVERIFY(window.checkpoint());
    const auto* summary = window.summaryPanel();
    qInfo("summary facts: %s", qPrintable(summary->factNames().join(", ")));
    QCOMPARE(summary->fact("Hidden size"), QString("128"));
    QCOMPARE(summary->fact("Intermediate size"), QString("384"));
    QCOMPARE(summary->fact("Layers"), QString("2"));
    QCOMPARE(summary->fact("Vocabulary"), QString("2048"));
    QCOMPARE(summary->fact("Attention heads"), QString("8 query, 4 key/value (head dim 16)"));
    QCOMPARE(summary->fact("Tied embeddings"), QString("yes"));
    QCOMPARE(summary->fact("MX blocks per row"), QString("hidden 4, intermediate 12"));
    QCOMPARE(summary->fact("Tokenizer"), QString("tokenizer.json"));
    QVERIFY2(window.windowTitle().startsWith("tinystories-656k"), qPrintable(window.windowTitle()));
    QCOMPARE(window.recentCheckpoints().value(0), QDir::cleanPath(model_dir()));

    // For a person to look at (the asserts above are what guard the window).
    window.resize(1000, 640);
    window.findChild<QAction*>("actionViewOutliers")->trigger();
    const QString png =
        QDir(QCoreApplication::applicationDirPath()).filePath("main_window_656k.png");
    QVERIFY(window.grab().save(png));
    qInfo("wrote %s", qPrintable(png));
  }

  void brokenDirectoryKeepsPreviousModel_data() {
    QTest::addColumn<QByteArray>("config");
    QTest::addColumn<QString>("expected");  // a word the error message must contain
    QTest::newRow("config.json not JSON") << QByteArray("{ not json") << "config.json";
    QTest::newRow("config.json missing hidden_size")
        << QByteArray(R"({"architectures":["LlamaForCausalLM"],"model_type":"llama"})")
        << "config.json";
    QTest::newRow("directory does not exist") << QByteArray() << "does-not-exist";
  }
  void brokenDirectoryKeepsPreviousModel() {
    QFETCH(QByteArray, config);
    QFETCH(QString, expected);
    MainWindow window;
    QList<ReportedError> errors;
    window.setErrorReporter([&](const QString& t, const QString& m) { errors.append({t, m}); });
    QVERIFY(window.openCheckpoint(model_dir()));
    const QString title = window.windowTitle();
    const auto* before = window.checkpoint();

    QTemporaryDir tmp;
    const QString broken =
        config.isEmpty() ? tmp.filePath("does-not-exist") : make_broken_checkpoint(tmp, config);
    QVERIFY(!broken.isEmpty());
    QVERIFY(!window.openCheckpoint(broken));

    QCOMPARE(errors.size(), 1);
    qInfo("reported: %s: %s", qPrintable(errors[0].title), qPrintable(errors[0].message));
    QVERIFY2(errors[0].message.contains(expected), qPrintable(errors[0].message));
    QCOMPARE(window.checkpoint(), before);
    QCOMPARE(window.windowTitle(), title);
    QCOMPARE(window.summaryPanel()->fact("Hidden size"), QString("128"));
    QCOMPARE(window.recentCheckpoints(), QStringList{QDir::cleanPath(model_dir())});
  }

  void recentListPersists() {
    {
      MainWindow window;
      window.setErrorReporter([](const QString&, const QString&) {});
      QVERIFY(window.openCheckpoint(model_dir()));
    }
    MainWindow again;
    auto* recent = again.findChild<QMenu*>("menuOpenRecent");
    QVERIFY(recent && recent->isEnabled());
    QCOMPARE(recent->actions().value(0)->data().toString(), QDir::cleanPath(model_dir()));
    recent->actions().value(0)->trigger();  // Open Recent ▸ 1 opens it
    QVERIFY(again.checkpoint());
    QCOMPARE(again.summaryPanel()->fact("Layers"), QString("2"));
  }

  void dropDirectoryOpensIt() {
    MainWindow window;
    window.setErrorReporter([](const QString&, const QString&) {});
    QMimeData mime;
    mime.setUrls({QUrl::fromLocalFile(model_dir())});
    // The sequence a drag delivers: enter (accepted only for a directory), then drop.
    QDragEnterEvent enter(QPoint(10, 10), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QCoreApplication::sendEvent(&window, &enter);
    QVERIFY(enter.isAccepted());
    QDropEvent drop(QPointF(10, 10), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QCoreApplication::sendEvent(&window, &drop);
    QVERIFY(window.checkpoint());
    QVERIFY(window.windowTitle().startsWith("tinystories-656k"));

    // A file is not a checkpoint directory: the drag is refused.
    QMimeData file_mime;
    file_mime.setUrls({QUrl::fromLocalFile(model_dir() + "/config.json")});
    QDragEnterEvent file_enter(QPoint(10, 10), Qt::CopyAction, &file_mime, Qt::LeftButton,
                               Qt::NoModifier);
    file_enter.ignore();
    QCoreApplication::sendEvent(&window, &file_enter);
    QVERIFY(!file_enter.isAccepted());
  }

  void aboutNamesVersionAndCuda() {
    MainWindow window;
    const QString text = window.aboutText();
    QVERIFY2(text.contains(MXLENS_VERSION), qPrintable(text));
    QVERIFY2(text.contains(QString::fromStdString(mxlens::gpu::cuda_status()).toHtmlEscaped()),
             qPrintable(text));
    qInfo("backend line: %s", mxlens::gpu::cuda_status().c_str());
  }

  // The Perplexity tab offers CUDA exactly when a device is there; greyed, it says why.
  void perplexityBackendFollowsTheDevice() {
    MainWindow window;
    auto* combo = window.findChild<QComboBox*>("perplexityBackend");
    QVERIFY(combo);
    const int cuda = combo->findData(int(mxlens::EvalBackend::cuda));
    QVERIFY(cuda >= 0);
    const auto* model = qobject_cast<const QStandardItemModel*>(combo->model());
    const QStandardItem* item = model->item(cuda);
    const bool device = mxlens::gpu::cuda_device_count() > 0;
    QCOMPARE(item->isEnabled(), device);
    const std::string expected =
        device ? mxlens::gpu::cuda_status() : mxlens::gpu::cuda_unavailable_reason();
    QCOMPARE(item->toolTip(), QString::fromStdString(expected));
    // The factory the tab's choice gives: none for the CPU; CUDA's only with a device.
    QVERIFY(!mxlens::gui::evaluationModelFactory(false));
    if (device) {
      QVERIFY(bool(mxlens::gui::evaluationModelFactory(true)));
    } else {
      QVERIFY_THROWS_EXCEPTION(mxlens::Error, mxlens::gui::evaluationModelFactory(true));
    }
  }
};

QTEST_MAIN(TestMainWindow)
#include "test_main_window.moc"
