// Clean shutdown on SIGTERM/SIGINT: the signals are blocked in every thread and the main
// thread waits for one synchronously, so no handler runs in an arbitrary thread.
#pragma once

namespace tcpscope {

// Call first in main(), before any thread starts, so every thread inherits the mask.
void BlockShutdownSignals();

// Blocks until SIGTERM or SIGINT arrives; returns the signal number.
int WaitForShutdownSignal();

// From any thread: makes WaitForShutdownSignal return (a SIGTERM to this process), for a part
// that failed and must end the program.
void RequestShutdown();

}  // namespace tcpscope
