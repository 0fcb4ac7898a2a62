// Checks every message an agent sends before anything of it is applied: a refused message
// changes nothing. Errors name the offending field and value.
#pragma once

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/replica.pb.h"

namespace tcpscope::service {

struct ValidationLimits {
  int max_events_per_batch = 100000;
  int max_snapshot_connections = 1000000;
  // Event and snapshot times may be at most this far in the future (clock skew).
  absl::Duration max_clock_skew = absl::Hours(24);
};

absl::Status ValidateHello(const v1::Hello& hello);
absl::Status ValidateBatch(const v1::Batch& batch, absl::Time now,
                           const ValidationLimits& limits = {});
// A peer replica's messages (replica.proto), checked as strictly as an agent's.
absl::Status ValidateFragment(const v1::HostFragment& fragment, absl::Time now,
                              const ValidationLimits& limits = {});
absl::Status ValidateHostStatus(const v1::HostStatus& status);
absl::Status ValidateFindings(const v1::HostFindings& findings, absl::Time now,
                              const ValidationLimits& limits = {});

}  // namespace tcpscope::service
