// One line per message: time, severity letter, file:line, text. Written with a single write(2)
// so lines from different threads do not interleave.
#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tcpscope {
namespace {

std::atomic<LogSeverity> min_severity{LogSeverity::kINFO};

const char* Basename(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash == nullptr ? path : slash + 1;
}

}  // namespace

void SetMinLogSeverity(LogSeverity severity) { min_severity.store(severity); }

LogMessage::LogMessage(LogSeverity severity, const char* file, int line) : severity_(severity) {
  static constexpr char kLetters[] = {'I', 'W', 'E', 'F'};
  stream_ << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ ", absl::Now(), absl::UTCTimeZone())
          << kLetters[static_cast<int>(severity)] << ' ' << Basename(file) << ':' << line << "] ";
}

LogMessage::~LogMessage() {
  if (severity_ >= min_severity.load()) {
    stream_ << '\n';
    const std::string text = stream_.str();
    (void)!write(STDERR_FILENO, text.data(), text.size());
  }
  if (severity_ == LogSeverity::kFATAL) std::abort();
}

}  // namespace tcpscope
