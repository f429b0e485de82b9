#include "app/gui/job_runner.h"

#include <QCoreApplication>
#include <QDeadlineTimer>
#include <QElapsedTimer>
#include <QThread>
#include <exception>

#include "core/util/error.h"

namespace mxlens::gui {

namespace {

int64_t now_ms() {
  static const QElapsedTimer clock = [] {
    QElapsedTimer t;
    t.start();
    return t;
  }();
  return clock.elapsed();
}

// Fewer progress signals than core reports: the GUI repaints a bar, not every step.
constexpr int64_t kProgressIntervalMs = 50;

}  // namespace

JobRunner::JobRunner(QObject* parent) : QObject(parent) {
  thread_ = QThread::create([this] { run(); });
  thread_->setObjectName("mxlens-job-runner");
  thread_->start();
}

JobRunner::~JobRunner() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    queue_.clear();  // nobody waits on them: the owner is going away
    if (running_) cancel_flag_ = true;
  }
  wake_.notify_all();
  thread_->wait();
  delete thread_;
}

void JobRunner::post(const QString& tag, Job job) {
  QStringList dropped;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->tag == tag) {
        dropped << it->tag;
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    queue_.push_back({tag, std::move(job)});
  }
  wake_.notify_one();
  for (const QString& t : dropped) emit jobCancelled(t);
}

void JobRunner::cancel() {
  std::lock_guard lock(mutex_);
  // Only a job that runs now: the flag is cleared when the next one starts.
  if (running_) cancel_flag_ = true;
}

void JobRunner::cancel(const QString& tag) {
  QStringList dropped;
  {
    std::lock_guard lock(mutex_);
    if (running_ && running_tag_ == tag) cancel_flag_ = true;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->tag == tag) {
        dropped << it->tag;
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const QString& t : dropped) emit jobCancelled(t);
}

void JobRunner::cancelAll() {
  QStringList dropped;
  {
    std::lock_guard lock(mutex_);
    if (running_) cancel_flag_ = true;
    for (const Pending& p : queue_) dropped << p.tag;
    queue_.clear();
  }
  for (const QString& t : dropped) emit jobCancelled(t);
}

bool JobRunner::isBusy() const {
  std::lock_guard lock(mutex_);
  return running_ || !queue_.empty();
}

QString JobRunner::runningTag() const {
  std::lock_guard lock(mutex_);
  return running_ ? running_tag_ : QString();
}

bool JobRunner::waitIdle(int ms) {
  QDeadlineTimer deadline(ms);
  // Idle twice in a row with the queued results delivered in between: a result handler may
  // post the next job (a chosen text is tokenized, then calibrated).
  int idle_rounds = 0;
  while (!deadline.hasExpired()) {
    QCoreApplication::processEvents(QEventLoop::AllEvents, 10);
    if (isBusy()) {
      idle_rounds = 0;
      QThread::msleep(2);
      continue;
    }
    QCoreApplication::sendPostedEvents();
    if (++idle_rounds >= 2) return true;
  }
  return !isBusy();
}

void JobRunner::reportProgress(double fraction, std::string_view stage) {
  const int64_t now = now_ms();
  if (fraction < 1.0 && now - last_progress_ms_ < kProgressIntervalMs) return;
  last_progress_ms_ = now;
  emit progress(fraction, QString::fromUtf8(stage.data(), qsizetype(stage.size())));
}

void JobRunner::run() {
  for (;;) {
    Pending next;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      next = std::move(queue_.front());
      queue_.pop_front();
      running_ = true;
      running_tag_ = next.tag;
      cancel_flag_ = false;
    }
    emit jobStarted(next.tag);
    last_progress_ms_ = 0;
    const Progress progress(
        [this](double fraction, std::string_view stage) { reportProgress(fraction, stage); },
        &cancel_flag_);
    enum class Outcome { finished, cancelled, failed } outcome = Outcome::finished;
    QString message;
    try {
      progress.check_cancel();
      next.job(state_, progress);
    } catch (const Cancelled&) {
      outcome = Outcome::cancelled;
    } catch (const Error& e) {
      outcome = Outcome::failed;
      message = QString::fromStdString(e.what());
    } catch (const std::exception& e) {
      outcome = Outcome::failed;
      message = tr("unexpected failure: %1").arg(QString::fromStdString(e.what()));
    }
    // The outcome is posted before the runner reads as idle, so waitIdle() delivers it.
    switch (outcome) {
      case Outcome::finished:
        emit jobFinished(next.tag);
        break;
      case Outcome::cancelled:
        emit jobCancelled(next.tag);
        break;
      case Outcome::failed:
        emit jobFailed(next.tag, message);
        break;
    }
    {
      std::lock_guard lock(mutex_);
      running_ = false;
      running_tag_.clear();
    }
  }
}

}  // namespace mxlens::gui
