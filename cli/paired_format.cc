// The left end is the entry's own (the half-open survivor, else the client's end, as the service
// orders them); the right end is entry.peer. Values a gone peer can no longer vouch for (its
// keepalive, queues, idle time) are "-" rather than stale numbers.
#include "cli/paired_format.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/humanize.h"
#include "cli/workload_format.h"
#include "common/tcp_names.h"

namespace tcpscope::cli {
namespace {

// "off", "on", or "on 2 out" while keepalive probes are unanswered.
std::string Keepalive(const v1::KeepaliveState& keepalive) {
  if (!keepalive.enabled()) return "off";
  if (keepalive.probes_out() == 0) return "on";
  return absl::StrCat("on ", keepalive.probes_out(), " out");
}

// Bytes sent but not acked / received but not read by the application.
std::string Queues(const v1::Connection& c) {
  return absl::StrCat(c.send_queue(), "/", c.recv_queue());
}

std::string Local(const v1::Connection& c) {
  return FormatAddress(c.endpoints().local_address(), c.endpoints().local_port());
}

std::string Idle(const v1::Connection& c) { return ShortDuration(absl::Milliseconds(c.idle_ms())); }

// HOST POD PROCESS LOCAL STATE KA SEND/RECV-Q IDLE of a live end.
std::vector<std::string> EndCells(const std::string& host, const v1::Connection& c) {
  return {host,
          WorkloadCell(c.origin()),
          ProcessCell(c.origin()),
          Local(c),
          std::string(TcpStateName(c.state())),
          Keepalive(c.keepalive()),
          Queues(c),
          Idle(c)};
}

// A gone peer still names who held it (as its host last reported): that is what an operator
// looks for when an end is half-open.
std::vector<std::string> PeerCells(const v1::HostConnection& entry, absl::Time now) {
  if (!entry.has_peer()) return std::vector<std::string>(8, "-");
  const v1::PeerEnd& peer = entry.peer();
  const v1::Connection& c = peer.connection();
  if (peer.present()) return EndCells(peer.host(), c);
  std::string state = "gone";
  if (peer.lost_unix_ns() != 0) absl::StrAppend(&state, " ", Age(peer.lost_unix_ns(), now), " ago");
  if (c.state() != v1::TCP_STATE_UNSPECIFIED) {
    absl::StrAppend(&state, " (", TcpStateName(c.state()), ")");
  }
  return {peer.host().empty() ? "-" : peer.host(),
          WorkloadCell(c.origin()),
          ProcessCell(c.origin()),
          Local(c),
          state,
          "-",
          "-",
          "-"};
}

}  // namespace

Table PairedConnectionsTable(const v1::ListConnectionsResponse& response, absl::Time now) {
  Table table({"HOST", "POD", "PROCESS", "LOCAL", "STATE", "KA", "SEND/RECV-Q", "IDLE", "|",
               "PEER-HOST", "PEER-POD", "PEER-PROCESS", "PEER-LOCAL", "PEER-STATE", "PEER-KA",
               "PEER-SEND/RECV-Q", "PEER-IDLE", "HALF-OPEN"});
  for (const v1::HostConnection& entry : response.connections()) {
    std::vector<std::string> row = EndCells(entry.host(), entry.connection());
    row.push_back("|");
    for (std::string& cell : PeerCells(entry, now)) row.push_back(std::move(cell));
    row.push_back(entry.half_open() == v1::HALF_OPEN_REASON_UNSPECIFIED
                      ? "-"
                      : std::string(HalfOpenReasonName(entry.half_open())));
    table.AddRow(std::move(row));
  }
  return table;
}

}  // namespace tcpscope::cli
