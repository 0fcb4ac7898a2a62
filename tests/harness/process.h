// Runs the real tcpscope binaries (or any program) as child processes for integration tests.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tcpscope::testing {

// Directory of the built binaries (TCPSCOPE_BIN_DIR, set by ctest).
std::string BinaryPath(const std::string& name);

class Subprocess {
 public:
  // Starts argv[0] with its stdout and stderr sent to `log_path`.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(const std::vector<std::string>& argv,
                                                           const std::string& log_path);
  ~Subprocess();  // kills it if still running

  bool Running();
  // SIGTERM, then SIGKILL after `grace`; returns the exit status as from waitpid.
  int Stop(absl::Duration grace = absl::Seconds(10));
  void Kill();  // SIGKILL, reaped
  std::string Log() const;
  // Polls the log until it holds `text`, for at most `timeout`; whether it came.
  bool WaitForLog(absl::string_view text, absl::Duration timeout) const;
  pid_t pid() const { return pid_; }

 private:
  Subprocess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
  bool reaped_ = false;
  int status_ = 0;
};

// Runs a command to completion, capturing stdout (stderr goes to the test's stderr).
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunCommand(const std::string& command);

}  // namespace tcpscope::testing
