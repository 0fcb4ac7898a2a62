// Synchronous SIGTERM/SIGINT handling with sigwait.
#include "common/shutdown.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

namespace tcpscope {
namespace {

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

void BlockShutdownSignals() {
  sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int WaitForShutdownSignal() {
  sigset_t set = ShutdownSignals();
  int signal_number = 0;
  while (sigwait(&set, &signal_number) != 0) {
  }
  return signal_number;
}

// Process-directed, so the thread waiting in sigwait takes it (every thread blocks it).
void RequestShutdown() { kill(getpid(), SIGTERM); }

}  // namespace tcpscope
