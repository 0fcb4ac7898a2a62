// Which connection ends may be silently dead: the classification behind
// tcpscope_connections_at_risk and the at-risk filters of the Observer API.
#pragma once

#include "absl/time/time.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::service {

struct AtRiskPolicy {
  // ESTABLISHED without keepalive and without data for longer than this.
  absl::Duration idle_after = absl::Minutes(30);
  // CLOSE_WAIT for longer than this.
  absl::Duration close_wait_after = absl::Minutes(1);
};

// At most one reason applies: the three conditions exclude each other (keepalive off; keepalive
// on with probes out; CLOSE_WAIT). `snapshot_time` is the agent's time of the snapshot, the
// clock that state_since_unix_ns was read with.
v1::AtRiskReason AtRiskReasonOf(const v1::Connection& connection, absl::Time snapshot_time,
                                const AtRiskPolicy& policy);

}  // namespace tcpscope::service
