// Minimal leveled logging to stderr (abseil 20220623 has no absl/log):
//   TS_LOG(INFO) << "agent connected to " << address;
#pragma once

#include <sstream>

namespace tcpscope {

enum class LogSeverity { kINFO, kWARNING, kERROR, kFATAL };

class LogMessage {
 public:
  LogMessage(LogSeverity severity, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;

  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

// Messages below this severity are discarded (default INFO).
void SetMinLogSeverity(LogSeverity severity);

}  // namespace tcpscope

#define TS_LOG(severity) \
  ::tcpscope::LogMessage(::tcpscope::LogSeverity::k##severity, __FILE__, __LINE__).stream()
