#pragma once
// JobRunner: the one worker thread of the workbench (design.md "Threading", style.md §3).
//
// It owns the model-side state (RunnerState): the open checkpoint's weights, the tokenized
// calibration text, the current session. Every calibration, evaluation, session load and save
// (HDF5 is the serial library) runs here, one job at a time, in the order posted. The GUI
// thread only draws: it posts jobs and receives results through queued calls.
//
//   post(tag, job)   queues a job; a job with the same tag still waiting is dropped (reported
//                    as cancelled), so repeated requests never pile up;
//   cancel()         sets the flag the running job's Progress checks (core throws Cancelled
//                    between windows, sites and steps);
//   signals          jobStarted / progress / jobFinished / jobFailed / jobCancelled, emitted
//                    on the worker thread and so delivered queued to GUI-thread receivers.
// A job hands results back with QMetaObject::invokeMethod(context, functor,
// Qt::QueuedConnection) on a GUI-thread QObject (see invokeOnGui): if that object is gone by
// then, Qt drops the call.
//
// The destructor cancels the running job, drops the waiting ones and joins the thread.
#include <QCoreApplication>
#include <QObject>
#include <QPointer>
#include <QString>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/calib/session.h"
#include "core/model/checkpoint.h"
#include "core/model/llama_model.h"
#include "core/util/progress.h"

class QThread;

namespace mxlens::gui {

// Token ids of a text, as calibration and evaluation take them.
struct TokenizedText {
  std::string path;    // as given; "(built-in English text)" for the embedded one
  std::string sha256;  // of the bytes the ids came from
  std::vector<int32_t> ids;
  bool empty() const { return ids.empty(); }
};

// What the runner thread owns. Jobs read and replace these; nothing else touches them.
// The checkpoint and the session are immutable once made and shared (shared_ptr<const>) with
// the GUI, which reads the same objects to draw: no copies of the statistics, no locks.
struct RunnerState {
  std::shared_ptr<const Checkpoint> checkpoint;
  std::unique_ptr<LlamaWeights> weights;                // over *checkpoint
  std::shared_ptr<const ModelFingerprint> fingerprint;  // computed on first need
  std::shared_ptr<const Session> session;               // the current calibration (may be null)
  TokenizedText calibration_text;                       // tokenized with the model's tokenizer
  TokenizedText evaluation_text;                        // empty: evaluate on the calibration text
};

class JobRunner : public QObject {
  Q_OBJECT
 public:
  using Job = std::function<void(RunnerState& state, const Progress& progress)>;

  explicit JobRunner(QObject* parent = nullptr);
  ~JobRunner() override;

  // Queues `job`; a waiting job with the same tag is dropped (jobCancelled(tag)).
  void post(const QString& tag, Job job);
  // Cancels the running job (its Progress reports cancelled; core throws Cancelled).
  void cancel();
  // Cancels the running job if it has `tag` and drops waiting ones with it.
  void cancel(const QString& tag);
  // Cancels the running job and drops every waiting one.
  void cancelAll();

  bool isBusy() const;         // a job runs or waits
  QString runningTag() const;  // empty when idle

  // Tests only: processes GUI events until no job runs or waits and the results the jobs
  // queued have been delivered, at most `ms` milliseconds. Returns whether it got idle.
  bool waitIdle(int ms);

 signals:
  void jobStarted(const QString& tag);
  // fraction in [0, 1]; at most about 20 per second per job, plus the last one.
  void progress(double fraction, const QString& stage);
  void jobFinished(const QString& tag);
  void jobFailed(const QString& tag, const QString& message);
  void jobCancelled(const QString& tag);

 private:
  struct Pending {
    QString tag;
    Job job;
  };
  void run();
  void reportProgress(double fraction, std::string_view stage);

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> queue_;
  QString running_tag_;  // guarded by mutex_
  bool running_ = false;
  bool stopping_ = false;
  std::atomic<bool> cancel_flag_{false};
  int64_t last_progress_ms_ = 0;  // worker thread only
  RunnerState state_;             // worker thread only
  QThread* thread_;
};

// Calls `fn` on the GUI thread later, through a QPointer to `context` (a GUI-thread object):
// when `context` has been deleted by then, the call is dropped. Call it from the runner thread
// while `context` is alive (the owner of the runner destroys the runner, joining its thread,
// before it goes).
template <typename Fn>
void invokeOnGui(QObject* context, Fn&& fn) {
  QMetaObject::invokeMethod(
      QCoreApplication::instance(),
      [guard = QPointer<QObject>(context), fn = std::forward<Fn>(fn)]() mutable {
        if (guard) fn();
      },
      Qt::QueuedConnection);
}

}  // namespace mxlens::gui
