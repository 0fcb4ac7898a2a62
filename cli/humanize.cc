// kubectl-style short durations: two units at most, so table columns stay narrow.
#include "cli/humanize.h"

#include <string.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tcpscope::cli {

std::string ShortDuration(absl::Duration duration) {
  if (duration <= absl::ZeroDuration()) return "0s";
  if (duration < absl::Milliseconds(1)) {
    return absl::StrCat(absl::ToInt64Microseconds(duration), "us");
  }
  if (duration < absl::Seconds(1)) return absl::StrCat(absl::ToInt64Milliseconds(duration), "ms");
  if (duration < absl::Seconds(10)) {
    const int64_t tenths = absl::ToInt64Milliseconds(duration) / 100;
    return absl::StrCat(tenths / 10, ".", tenths % 10, "s");
  }
  const int64_t seconds = absl::ToInt64Seconds(duration);
  if (seconds < 60) return absl::StrCat(seconds, "s");
  if (seconds < 3600) return absl::StrFormat("%dm%02ds", seconds / 60, seconds % 60);
  if (seconds < 86400) return absl::StrFormat("%dh%02dm", seconds / 3600, seconds % 3600 / 60);
  return absl::StrFormat("%dd%02dh", seconds / 86400, seconds % 86400 / 3600);
}

std::string Age(uint64_t unix_ns, absl::Time now) {
  if (unix_ns == 0) return "-";
  return ShortDuration(now - absl::FromUnixNanos(static_cast<int64_t>(unix_ns)));
}

std::string Rtt(uint32_t srtt_us) {
  if (srtt_us == 0) return "-";
  return absl::StrFormat("%.2fms", srtt_us / 1000.0);
}

std::string EventTime(uint64_t unix_ns, absl::TimeZone zone) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%E3S", absl::FromUnixNanos(static_cast<int64_t>(unix_ns)),
                          zone);
}

std::string ErrnoName(int error) {
  const char* name = strerrorname_np(error);
  if (name != nullptr) return name;
  return absl::StrCat("errno ", error);
}

}  // namespace tcpscope::cli
