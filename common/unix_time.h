// The API's times are uint64 nanoseconds since the Unix epoch, 0 meaning "unknown"; these convert
// to and from absl::Time in one place.
#pragma once

#include <cstdint>

#include "absl/time/time.h"

namespace tcpscope {

// 0 for the epoch itself (absl::Time(), "never") and anything before it.
inline uint64_t UnixNanos(absl::Time time) {
  return time <= absl::UnixEpoch() ? 0 : static_cast<uint64_t>(absl::ToUnixNanos(time));
}

inline absl::Time TimeFromUnixNanos(uint64_t nanos) {
  return absl::FromUnixNanos(static_cast<int64_t>(nanos));
}

}  // namespace tcpscope
