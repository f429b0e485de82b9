// GreedyView offscreen against core's greedy search on a small matrix with a planted outlier
// channel: every step's heatmap is GreedyTrace::matrix_at_step(k) (via setStep, the Next
// button and the Right key), the objective curve and kept prefix are the trace's, the words
// name the right channel, the profile is max |Z·R_k| per channel; play advances; clear and a
// second trace work.
// GCC 12: false -Wmaybe-uninitialized inside AVX-512 intrinsics inlined from Eigen reductions.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <QtTest>

#include <QDir>
#include <QPalette>
#include <QSlider>
#include <QToolButton>
#include <random>

#include "core/rotation/greedy_search.h"
#include "widgets/greedy_view.h"
#include "widgets/plot_panel.h"

using mxlens::GreedyView;
using mxlens::RowMatrixXf;

namespace {

constexpr int kRows = 256, kBlock = 32, kSteps = 16;

// Gaussian rows with channel `outlier` scaled up: the search has something to spread.
RowMatrixXf planted(uint32_t seed, int outlier, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  RowMatrixXf x(kRows, kBlock);
  for (int r = 0; r < kRows; ++r)
    for (int c = 0; c < kBlock; ++c) x(r, c) = normal(rng) * (c == outlier ? scale : 1.0f);
  return x;
}

mxlens::GreedyResult search(const RowMatrixXf& x, uint64_t seed) {
  mxlens::GreedyOptions options;
  options.block_size = kBlock;
  options.max_steps = kSteps;
  options.seed = seed;
  options.threads = 1;
  return mxlens::greedy_search(x, options);
}

QVector<double> directProfile(const RowMatrixXf& z, const Eigen::MatrixXd& R) {
  const Eigen::MatrixXd zr = z.cast<double>() * R;
  QVector<double> p(int(R.cols()));
  for (int j = 0; j < R.cols(); ++j) p[j] = zr.col(j).cwiseAbs().maxCoeff();
  return p;
}

double maxDiff(const QVector<double>& a, const QVector<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double d = 0;
  for (int i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

}  // namespace

// checkStep's QVERIFYs return from it only: stop the test function at the first failure.
#define CHECK_STEP(...)                     \
  do {                                      \
    checkStep(__VA_ARGS__);                 \
    if (QTest::currentTestFailed()) return; \
  } while (0)

class TestGreedyView : public QObject {
  Q_OBJECT

  RowMatrixXf z_;
  mxlens::GreedyTrace trace_;

  // Everything the view shows at step k agrees with the trace.
  void checkStep(const GreedyView& view, int k, const char* how) {
    const QByteArray where = QByteArray(how) + " step " + QByteArray::number(k);
    QCOMPARE(view.currentStep(), k);
    const Eigen::MatrixXd expected = trace_.matrix_at_step(k);
    const Eigen::MatrixXd shown = view.shownMatrix();
    QVERIFY2(shown.rows() == kBlock && shown.cols() == kBlock, where.constData());
    QVERIFY2((shown - expected).cwiseAbs().maxCoeff() <= 1e-12, where.constData());
    const QString text = view.stepText();
    if (k == 0) {
      QVERIFY2(text.startsWith("step 0: start, range "), qPrintable(text));
    } else {
      const int d = trace_.steps[size_t(k) - 1].channel;
      const QString what = d == 0 ? QString("channel 0 spread (no swap)")
                                  : QString("channel %1 swapped with 0").arg(d);
      QVERIFY2(text.startsWith(QString("step %1: %2, range ").arg(k).arg(what)), qPrintable(text));
      QVERIFY2(text.contains(QString::fromUtf8(" → ")), qPrintable(text));
    }
    const QVector<double> direct = directProfile(z_, expected);
    const double scale = z_.cwiseAbs().maxCoeff();
    QVERIFY2(maxDiff(view.profile(false), direct) <= 1e-9 * scale, where.constData());
  }

 private slots:
  void initTestCase() {
    z_ = planted(7, 5, 25.0f);
    trace_ = search(z_, 11).trace;
    QCOMPARE(trace_.max_steps(), kSteps);
    // The planted outlier makes the search improve on step 0.
    QVERIFY(trace_.best_step > 0);
    QVERIFY(trace_.objectives()[size_t(trace_.best_step)] < trace_.objectives()[0]);
  }

  void everyStepMatchesTheTrace() {
    GreedyView view;
    view.resize(1100, 700);
    QSignalSpy steps(&view, &GreedyView::stepChanged);
    view.setTrace(trace_, z_);
    QVERIFY(view.hasTrace());
    QCOMPARE(view.maxSteps(), kSteps);
    QCOMPARE(view.keptPrefix(), trace_.best_step);
    const std::vector<double> objectives = trace_.objectives();
    QCOMPARE(view.objectiveCurve(), QVector<double>(objectives.begin(), objectives.end()));
    QCOMPARE(view.slider()->maximum(), kSteps);
    CHECK_STEP(view, 0, "initial");
    QCOMPARE(maxDiff(view.profile(true), directProfile(z_, Eigen::MatrixXd::Identity(32, 32))),
             0.0);

    for (int k = 0; k <= kSteps; ++k) {
      view.setStep(k);
      CHECK_STEP(view, k, "setStep");
      QCOMPARE(view.slider()->value(), k);
    }
    // Backwards too: the cache must not depend on the order steps were visited in.
    for (int k = kSteps; k >= 0; --k) {
      view.setStep(k);
      CHECK_STEP(view, k, "setStep backwards");
    }
    QVERIFY(!view.previousButton()->isEnabled());
    for (int k = 1; k <= kSteps; ++k) {
      QTest::mouseClick(view.nextButton(), Qt::LeftButton);
      CHECK_STEP(view, k, "next button");
    }
    QVERIFY(!view.nextButton()->isEnabled());
    QTest::mouseClick(view.firstButton(), Qt::LeftButton);
    CHECK_STEP(view, 0, "first button");
    for (int k = 1; k <= kSteps; ++k) {
      QTest::keyClick(&view, Qt::Key_Right);
      CHECK_STEP(view, k, "Right key");
    }
    QTest::keyClick(&view, Qt::Key_Right);  // past the end: stays
    CHECK_STEP(view, kSteps, "Right key at the end");
    QTest::keyClick(&view, Qt::Key_Left);
    CHECK_STEP(view, kSteps - 1, "Left key");
    QTest::keyClick(&view, Qt::Key_Home);
    CHECK_STEP(view, 0, "Home key");
    QTest::keyClick(&view, Qt::Key_End);
    CHECK_STEP(view, kSteps, "End key");
    view.slider()->setValue(3);
    CHECK_STEP(view, 3, "slider");
    view.setStep(-4);
    QCOMPARE(view.currentStep(), 0);
    view.setStep(kSteps + 9);
    QCOMPARE(view.currentStep(), kSteps);
    QVERIFY(steps.count() > 3 * kSteps);
    QCOMPARE(steps.last().at(0).toInt(), kSteps);

    view.setStep(trace_.best_step);
    QVERIFY2(view.stepText().contains("best"), qPrintable(view.stepText()));
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    QCoreApplication::processEvents();
    const QString png = QDir(QDir::tempPath()).filePath("mxlens_greedy_view.png");
    QVERIFY(view.grab().save(png));
    qInfo("greedy view screenshot: %s", qPrintable(png));
    // A dark palette reaches every plot (PlotPanel restyles, the view recolours its items).
    QPalette dark = view.palette();
    dark.setColor(QPalette::Window, QColor(37, 37, 38));
    dark.setColor(QPalette::Base, QColor(30, 30, 30));
    dark.setColor(QPalette::WindowText, QColor(230, 230, 230));
    dark.setColor(QPalette::Text, QColor(230, 230, 230));
    dark.setColor(QPalette::ButtonText, QColor(230, 230, 230));
    dark.setColor(QPalette::Button, QColor(50, 50, 50));
    view.setPalette(dark);
    QCoreApplication::processEvents();  // the plots' queued replots
    const QString dark_png = QDir(QDir::tempPath()).filePath("mxlens_greedy_view_dark.png");
    QVERIFY(view.grab().save(dark_png));
  }

  void playAdvancesAndStops() {
    GreedyView view;
    view.setTrace(trace_, z_);
    view.setSpeed(100.0);
    QSignalSpy playing(&view, &GreedyView::playingChanged);
    QTest::keyClick(&view, Qt::Key_Space);
    QVERIFY(view.isPlaying());
    QVERIFY(view.playButton()->isChecked());
    QTRY_VERIFY_WITH_TIMEOUT(view.currentStep() >= 2, 5000);
    // It stops by itself at the last step.
    QTRY_VERIFY_WITH_TIMEOUT(!view.isPlaying(), 5000);
    QCOMPARE(view.currentStep(), kSteps);
    CHECK_STEP(view, kSteps, "after play");
    QVERIFY(!view.playButton()->isChecked());
    QCOMPARE(playing.count(), 2);
    // Play from the end starts over; the button pauses.
    QTest::mouseClick(view.playButton(), Qt::LeftButton);
    QVERIFY(view.isPlaying());
    QVERIFY(view.currentStep() < kSteps);
    QTest::mouseClick(view.playButton(), Qt::LeftButton);
    QVERIFY(!view.isPlaying());
    const int paused_at = view.currentStep();
    QTest::qWait(100);
    QCOMPARE(view.currentStep(), paused_at);
  }

  void clearThenAnotherTrace() {
    GreedyView view;
    view.setTrace(trace_, z_);
    view.setStep(5);
    view.clear();
    QVERIFY(!view.hasTrace());
    QCOMPARE(view.keptPrefix(), -1);
    QVERIFY(view.objectiveCurve().isEmpty());
    QVERIFY(view.profile(false).isEmpty());
    QVERIFY(view.stepText().isEmpty());
    QVERIFY(!view.matrixPanel()->message().isEmpty());
    QTest::keyClick(&view, Qt::Key_Right);  // nothing to step: no crash, no change
    QCOMPARE(view.currentStep(), 0);

    // A second search (another outlier, another Q'), first without blocks.
    const RowMatrixXf z2 = planted(3, 20, 40.0f);
    const mxlens::GreedyTrace t2 = search(z2, 99).trace;
    view.setTrace(t2, RowMatrixXf());
    QCOMPARE(view.currentStep(), 0);
    QVERIFY(view.profile(false).isEmpty());
    QVERIFY(!view.profilePanel()->message().isEmpty());
    QVERIFY(view.matrixPanel()->message().isEmpty());
    view.setStep(t2.max_steps());
    QVERIFY((view.shownMatrix() - t2.matrix_at_step(t2.max_steps())).cwiseAbs().maxCoeff() <=
            1e-12);
    const std::vector<double> o2 = t2.objectives();
    QCOMPARE(view.objectiveCurve(), QVector<double>(o2.begin(), o2.end()));
    QCOMPARE(view.keptPrefix(), t2.best_step);

    // And the first again with its blocks: the profile comes back.
    view.setTrace(trace_, z_);
    view.setStep(7);
    CHECK_STEP(view, 7, "after clear");
  }

  void wrongBlocksWidthIsAMessage() {
    GreedyView view;
    const RowMatrixXf narrow = RowMatrixXf::Ones(4, 16);
    view.setTrace(trace_, narrow);
    QVERIFY(view.hasTrace());
    QVERIFY(view.profile(false).isEmpty());
    QVERIFY2(view.profilePanel()->message().contains("16"),
             qPrintable(view.profilePanel()->message()));
  }
};

QTEST_MAIN(TestGreedyView)
#include "test_greedy_view.moc"
