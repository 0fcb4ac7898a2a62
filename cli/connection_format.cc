// One row per connection end; "-" where a value does not apply (no probes without keepalive,
// no pairing examined during a handshake, no workload for a host process).
#include "cli/connection_format.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "cli/enum_names.h"
#include "cli/humanize.h"
#include "cli/workload_format.h"
#include "common/tcp_names.h"

namespace tcpscope::cli {

Table ConnectionsTable(const v1::ListConnectionsResponse& response, absl::Time now) {
  Table table({"HOST", "ROLE", "STATE", "IN STATE", "LOCAL", "REMOTE", "PEER", "AT RISK",
               "HALF-OPEN", "KEEPALIVE", "PROBES", "NEXT PROBE", "IDLE", "RTT", "SEND-Q", "RECV-Q",
               "POD", "PROCESS"});
  for (const v1::HostConnection& entry : response.connections()) {
    const v1::Connection& c = entry.connection();
    const v1::KeepaliveState& keepalive = c.keepalive();
    table.AddRow({entry.host(), std::string(RoleName(c.role())),
                  std::string(TcpStateName(c.state())), Age(c.state_since_unix_ns(), now),
                  FormatAddress(c.endpoints().local_address(), c.endpoints().local_port()),
                  FormatAddress(c.endpoints().remote_address(), c.endpoints().remote_port()),
                  entry.pairing() == v1::PAIRING_UNSPECIFIED
                      ? "-"
                      : std::string(PairingName(entry.pairing())),
                  entry.at_risk() == v1::AT_RISK_REASON_UNSPECIFIED
                      ? "-"
                      : AtRiskReasonNames().Name(entry.at_risk()),
                  entry.half_open() == v1::HALF_OPEN_REASON_UNSPECIFIED
                      ? "-"
                      : std::string(HalfOpenReasonName(entry.half_open())),
                  keepalive.enabled() ? "on" : "off",
                  keepalive.enabled() ? absl::StrCat(keepalive.probes_out()) : "-",
                  keepalive.enabled() && keepalive.next_probe_ms() > 0
                      ? ShortDuration(absl::Milliseconds(keepalive.next_probe_ms()))
                      : "-",
                  ShortDuration(absl::Milliseconds(c.idle_ms())), Rtt(c.srtt_us()),
                  absl::StrCat(c.send_queue()), absl::StrCat(c.recv_queue()),
                  WorkloadCell(c.origin()), ProcessCell(c.origin())});
  }
  return table;
}

}  // namespace tcpscope::cli
