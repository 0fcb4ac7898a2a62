// At-risk classification of snapshot connections.
#include "service/at_risk.h"

#include "common/unix_time.h"

namespace tcpscope::service {

v1::AtRiskReason AtRiskReasonOf(const v1::Connection& connection, absl::Time snapshot_time,
                                const AtRiskPolicy& policy) {
  switch (connection.state()) {
    case v1::TCP_STATE_ESTABLISHED:
      if (connection.keepalive().enabled()) {
        return connection.keepalive().probes_out() > 0 ? v1::AT_RISK_KEEPALIVE_PROBING
                                                       : v1::AT_RISK_REASON_UNSPECIFIED;
      }
      return absl::Milliseconds(connection.idle_ms()) > policy.idle_after
                 ? v1::AT_RISK_IDLE_NO_KEEPALIVE
                 : v1::AT_RISK_REASON_UNSPECIFIED;
    case v1::TCP_STATE_CLOSE_WAIT: {
      if (connection.state_since_unix_ns() == 0) return v1::AT_RISK_REASON_UNSPECIFIED;
      const absl::Time since = TimeFromUnixNanos(connection.state_since_unix_ns());
      return snapshot_time - since > policy.close_wait_after ? v1::AT_RISK_CLOSE_WAIT_STALE
                                                             : v1::AT_RISK_REASON_UNSPECIFIED;
    }
    default:
      return v1::AT_RISK_REASON_UNSPECIFIED;
  }
}

}  // namespace tcpscope::service
