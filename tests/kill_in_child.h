#pragma once
// A crash in the middle of a write, for the tests of atomic saves: a forked child runs the
// work, says when it reaches the chosen point, and the parent SIGKILLs it there (POSIX).
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

namespace mxlens::test {

struct KilledChild {
  pid_t pid = -1;       // the child's pid; negative when fork failed
  ssize_t reached = 0;  // 1 when the child called stop_here()
  bool reaped = false;  // waitpid returned the child
  int status = 0;       // its waitpid status
  bool killed_by_sigkill() const { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }
};

// Forks. The child runs `work(stop_here)`; stop_here() tells the parent and waits there to be
// killed. The child exits 0 when `work` returns, 2 when it throws, 3 when the pipe fails. The
// parent waits for stop_here() (or the child's end), SIGKILLs the child and reaps it.
inline KilledChild kill_child_at(const std::function<void(const std::function<void()>&)>& work) {
  KilledChild k;
  int fds[2];
  if (::pipe(fds) != 0) return k;
  k.pid = ::fork();
  if (k.pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return k;
  }
  if (k.pid == 0) {
    ::close(fds[0]);
    const std::function<void()> stop_here = [&] {
      const char byte = 'x';
      if (::write(fds[1], &byte, 1) != 1) ::_exit(3);
      ::sleep(10);  // the parent kills us here
    };
    try {
      work(stop_here);
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  char byte = 0;
  k.reached = ::read(fds[0], &byte, 1);
  ::close(fds[0]);
  ::kill(k.pid, SIGKILL);
  k.reaped = ::waitpid(k.pid, &k.status, 0) == k.pid;
  return k;
}

}  // namespace mxlens::test
