// The agent's time, injected into sources so their logic runs on live time, a replayed
// capture's time or a test's.
#pragma once

#include <time.h>

#include <cstdint>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tcpscope::agent {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall time: what events and snapshots are dated by.
  virtual absl::Time Now() const = 0;
  // CLOCK_MONOTONIC in nanoseconds: the eBPF ring records' clock.
  virtual uint64_t MonotonicNanos() const = 0;
  // Converts a ring record's time to Unix time.
  int64_t MonotonicToUnixNs() const {
    return absl::ToUnixNanos(Now()) - static_cast<int64_t>(MonotonicNanos());
  }
};

class RealClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  uint64_t MonotonicNanos() const override {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<uint64_t>(now.tv_sec) * 1000000000 + static_cast<uint64_t>(now.tv_nsec);
  }
  // The process's one real clock (stateless, never destroyed).
  static const Clock* Get() {
    static const RealClock* clock = new RealClock();
    return clock;
  }
};

// A clock that moves only when told: a replay follows its records' times with it, tests step it.
class ManualClock : public Clock {
 public:
  // `monotonic_to_unix_ns`: Unix time minus monotonic time, fixed for this clock's life.
  explicit ManualClock(int64_t monotonic_to_unix_ns, uint64_t monotonic_ns = 0)
      : offset_ns_(monotonic_to_unix_ns), monotonic_ns_(monotonic_ns) {}
  absl::Time Now() const override {
    return absl::FromUnixNanos(static_cast<int64_t>(monotonic_ns_) + offset_ns_);
  }
  uint64_t MonotonicNanos() const override { return monotonic_ns_; }
  // Never backwards.
  void AdvanceTo(uint64_t monotonic_ns) {
    if (monotonic_ns > monotonic_ns_) monotonic_ns_ = monotonic_ns;
  }

 private:
  const int64_t offset_ns_;
  uint64_t monotonic_ns_;
};

}  // namespace tcpscope::agent
