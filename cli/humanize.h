// Short human forms of durations, times, sizes and errno values for table cells. `now` is
// always passed in, so output is testable.
#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace tcpscope::cli {

// Compact and rounded down: 850us, 12ms, 2.5s, 42s, 5m03s, 3h05m, 2d04h; 0 (or less) is 0s.
std::string ShortDuration(absl::Duration duration);

// ShortDuration(now - time) for a time in unix nanoseconds; "-" when the time is 0 (unknown).
std::string Age(uint64_t unix_ns, absl::Time now);

// Milliseconds with two decimals ("0.42ms"), "-" for 0 (not measured).
std::string Rtt(uint32_t srtt_us);

// "2024-05-01 10:00:00.123" in `zone`.
std::string EventTime(uint64_t unix_ns, absl::TimeZone zone);

// "ETIMEDOUT" for 110; "errno 4242" for what the C library does not name.
std::string ErrnoName(int error);

}  // namespace tcpscope::cli
