// JobRunner on its own: jobs run one at a time on one thread that is not the GUI thread, in
// the order posted; a waiting job is replaced by a later one with its tag; cancel reaches the
// running job's Progress; failures and cancellations are reported by tag; results come back
// on the GUI thread and are dropped when their receiver is gone; the destructor stops a
// running job and never runs the waiting ones.
#include <QtTest>

#include <QSignalSpy>
#include <QThread>
#include <atomic>
#include <memory>
#include <mutex>
#include <semaphore>

#include "app/gui/job_runner.h"
#include "core/util/error.h"

using mxlens::Progress;
using mxlens::gui::JobRunner;
using mxlens::gui::RunnerState;

namespace {

constexpr int kWaitMs = 10000;

// A job that waits until released (so that others queue behind it) and then spins on the
// cancel flag if asked to.
struct Gate {
  std::binary_semaphore started{0}, release{0};
  JobRunner::Job job(bool wait_for_cancel = false) {
    return [this, wait_for_cancel](RunnerState&, const Progress& progress) {
      started.release();
      release.acquire();
      while (wait_for_cancel) {
        progress.check_cancel();
        QThread::msleep(1);
      }
    };
  }
};

}  // namespace

class TestJobRunner : public QObject {
  Q_OBJECT

 private slots:
  void runsInOrderOnOneWorkerThread() {
    JobRunner runner;
    std::mutex m;
    QStringList ran;
    QList<QThread*> threads;
    QSignalSpy finished(&runner, &JobRunner::jobFinished);
    for (const QString tag : {"a", "b", "c"})
      runner.post(tag, [&, tag](RunnerState&, const Progress&) {
        std::lock_guard lock(m);
        ran << tag;
        threads << QThread::currentThread();
      });
    QVERIFY(runner.waitIdle(kWaitMs));
    QCOMPARE(ran, QStringList({"a", "b", "c"}));
    QCOMPARE(finished.size(), 3);
    QCOMPARE(finished[2][0].toString(), QString("c"));
    QVERIFY(threads[0] != QThread::currentThread());
    QCOMPARE(threads[1], threads[0]);
    QCOMPARE(threads[2], threads[0]);
  }

  void waitingJobWithSameTagIsReplaced() {
    JobRunner runner;
    QSignalSpy cancelled(&runner, &JobRunner::jobCancelled);
    Gate gate;
    runner.post("busy", gate.job());
    gate.started.acquire();  // "busy" runs; the next ones wait behind it
    std::atomic<int> which{0};
    runner.post("site-stats", [&](RunnerState&, const Progress&) { which = 1; });
    runner.post("other", [](RunnerState&, const Progress&) {});
    runner.post("site-stats", [&](RunnerState&, const Progress&) { which = 2; });
    QCOMPARE(cancelled.size(), 1);
    QCOMPARE(cancelled[0][0].toString(), QString("site-stats"));
    gate.release.release();
    QVERIFY(runner.waitIdle(kWaitMs));
    QCOMPARE(which.load(), 2);  // only the last one ran
  }

  void cancelStopsTheRunningJob() {
    JobRunner runner;
    QSignalSpy cancelled(&runner, &JobRunner::jobCancelled);
    QSignalSpy finished(&runner, &JobRunner::jobFinished);
    Gate gate;
    runner.post("calibrate", gate.job(true));
    std::atomic<bool> next_ran{false};
    runner.post("next", [&](RunnerState&, const Progress& p) {
      p.check_cancel();  // the flag was cleared for this job
      next_ran = true;
    });
    gate.started.acquire();
    QCOMPARE(runner.runningTag(), QString("calibrate"));
    runner.cancel();
    gate.release.release();
    QVERIFY(runner.waitIdle(kWaitMs));
    QCOMPARE(cancelled.size(), 1);
    QCOMPARE(cancelled[0][0].toString(), QString("calibrate"));
    QVERIFY(next_ran);
    QCOMPARE(finished.size(), 1);
    // cancel(tag) leaves a running job of another tag alone but drops waiting ones of its tag.
    Gate again;
    runner.post("busy", again.job());
    again.started.acquire();
    runner.post("compare", [](RunnerState&, const Progress&) { QFAIL("dropped job ran"); });
    runner.cancel("compare");
    again.release.release();
    QVERIFY(runner.waitIdle(kWaitMs));
    QCOMPARE(cancelled.size(), 2);
    QCOMPARE(finished.size(), 2);
  }

  void failuresAreReportedByTag() {
    JobRunner runner;
    QSignalSpy failed(&runner, &JobRunner::jobFailed);
    runner.post("load-session", [](RunnerState&, const Progress&) {
      throw mxlens::Error("/tmp/x.h5", "not an mxlens session");
    });
    runner.post("other", [](RunnerState&, const Progress&) { throw std::runtime_error("boom"); });
    QVERIFY(runner.waitIdle(kWaitMs));
    QCOMPARE(failed.size(), 2);
    QCOMPARE(failed[0][0].toString(), QString("load-session"));
    QVERIFY2(failed[0][1].toString().contains("/tmp/x.h5"), qPrintable(failed[0][1].toString()));
    QVERIFY2(failed[1][1].toString().contains("boom"), qPrintable(failed[1][1].toString()));
  }

  void progressAndResultsReachTheGuiThread() {
    JobRunner runner;
    QSignalSpy progress(&runner, &JobRunner::progress);
    QObject receiver;
    QThread* delivered_on = nullptr;
    runner.post("work", [&](RunnerState&, const Progress& p) {
      p.report(0.5, "half");
      p.report(1.0, "done");
      mxlens::gui::invokeOnGui(&receiver, [&] { delivered_on = QThread::currentThread(); });
    });
    QVERIFY(runner.waitIdle(kWaitMs));
    QCOMPARE(delivered_on, QThread::currentThread());
    QVERIFY(progress.size() >= 1);
    QCOMPARE(progress.last()[0].toDouble(), 1.0);  // the last report always arrives
    QCOMPARE(progress.last()[1].toString(), QString("done"));

    // A receiver deleted before the result arrives: the call is dropped.
    auto gone = std::make_unique<QObject>();
    bool called = false;
    Gate gate;
    runner.post("late", [&, target = gone.get()](RunnerState& s, const Progress& p) {
      gate.job()(s, p);
      mxlens::gui::invokeOnGui(target, [&] { called = true; });
    });
    gate.started.acquire();
    // Alive while the job queues the call, deleted before the GUI thread delivers it.
    gate.release.release();
    while (runner.isBusy()) QThread::msleep(1);
    gone.reset();
    QVERIFY(runner.waitIdle(kWaitMs));
    QVERIFY(!called);
  }

  void destructorStopsRunningAndDropsWaiting() {
    std::atomic<bool> waiting_ran{false};
    Gate gate;
    {
      JobRunner runner;
      runner.post("long", gate.job(true));
      runner.post("waiting", [&](RunnerState&, const Progress&) { waiting_ran = true; });
      gate.started.acquire();
      gate.release.release();
    }  // joins: the long job sees the cancel flag
    QVERIFY(!waiting_ran);
  }
};

QTEST_MAIN(TestJobRunner)
#include "test_job_runner.moc"
