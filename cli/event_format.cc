// One row per event. Only fields that carry information are shown (no "retransmits=0"); JSON
// output has all of them. The owner (process, pod or container) comes last.
#include "cli/event_format.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/humanize.h"
#include "cli/workload_format.h"
#include "common/tcp_names.h"

namespace tcpscope::cli {
namespace {

std::string Micros(uint64_t us) { return ShortDuration(absl::Microseconds(us)); }

// process=command[pid] and pod=... or container=..., each only when known.
void AppendOwner(const v1::Origin& origin, const std::string& prefix,
                 std::vector<std::string>* parts) {
  if (origin.pid() != 0 || !origin.command().empty()) {
    parts->push_back(absl::StrCat(prefix, "process=", ProcessCell(origin)));
  }
  if (std::string workload = WorkloadDetail(origin, prefix); !workload.empty()) {
    parts->push_back(std::move(workload));
  }
}

}  // namespace

std::vector<std::string> EventHeader() {
  return {"TIME", "HOST", "ROLE", "LOCAL", "", "REMOTE", "EVENT", "DETAILS"};
}

std::vector<size_t> EventMinWidths() { return {23, 12, 6, 21, 2, 21, 18, 0}; }

std::string EventKindName(const v1::Event& event) {
  const google::protobuf::OneofDescriptor* kind = v1::Event::descriptor()->FindOneofByName("kind");
  const google::protobuf::FieldDescriptor* field =
      event.GetReflection()->GetOneofFieldDescriptor(event, kind);
  return field != nullptr ? field->name() : "unknown";
}

std::string EventDetails(const v1::Event& event) {
  std::vector<std::string> parts;
  switch (event.kind_case()) {
    case v1::Event::kHandshake:
      if (event.handshake().has_duration_us()) {
        parts.push_back(absl::StrCat("duration=", Micros(event.handshake().duration_us())));
      }
      break;
    case v1::Event::kHandshakeFailed: {
      const v1::HandshakeFailed& failed = event.handshake_failed();
      parts.push_back(absl::StrCat("reason=", HandshakeFailureReasonName(failed.reason())));
      if (failed.syn_retransmits() > 0) {
        parts.push_back(absl::StrCat("syn_retransmits=", failed.syn_retransmits()));
      }
      if (failed.has_duration_us()) {
        parts.push_back(absl::StrCat("after=", Micros(failed.duration_us())));
      }
      if (failed.error() != 0) parts.push_back(absl::StrCat("error=", ErrnoName(failed.error())));
      break;
    }
    case v1::Event::kClose: {
      const v1::Close& close = event.close();
      parts.push_back(absl::StrCat("initiator=", CloseInitiatorName(close.initiator())));
      parts.push_back(absl::StrCat("reason=", CloseReasonName(close.reason())));
      if (close.has_lifetime_us()) {
        parts.push_back(absl::StrCat("lifetime=", Micros(close.lifetime_us())));
      }
      parts.push_back(absl::StrCat("sent=", close.bytes_sent()));
      parts.push_back(absl::StrCat("received=", close.bytes_received()));
      if (close.retransmits() > 0) {
        parts.push_back(absl::StrCat("retransmits=", close.retransmits()));
      }
      if (close.srtt_us() > 0) parts.push_back(absl::StrCat("rtt=", Rtt(close.srtt_us())));
      if (close.last_state() != v1::TCP_STATE_UNSPECIFIED) {
        parts.push_back(absl::StrCat("last_state=", TcpStateName(close.last_state())));
      }
      if (close.error() != 0) parts.push_back(absl::StrCat("error=", ErrnoName(close.error())));
      break;
    }
    case v1::Event::kKeepaliveProbe:
      parts.push_back(absl::StrCat("probe=", event.keepalive_probe().probe_number()));
      parts.push_back(absl::StrCat(
          "idle=", ShortDuration(absl::Milliseconds(event.keepalive_probe().idle_ms()))));
      break;
    case v1::Event::kKeepaliveTimeout: {
      const v1::KeepaliveTimeout& timeout = event.keepalive_timeout();
      parts.push_back(absl::StrCat("probes=", timeout.probes_sent()));
      parts.push_back(absl::StrCat("idle=", timeout.idle_s(), "s"));
      parts.push_back(absl::StrCat("interval=", timeout.interval_s(), "s"));
      parts.push_back(absl::StrCat("count=", timeout.count()));
      if (timeout.error() != 0) parts.push_back(absl::StrCat("error=", ErrnoName(timeout.error())));
      break;
    }
    case v1::Event::kKeepaliveAnswered:
      parts.push_back(
          absl::StrCat("outstanding=", event.keepalive_answered().probes_outstanding()));
      break;
    case v1::Event::kHalfOpen: {
      const v1::HalfOpen& half_open = event.half_open();
      parts.push_back(absl::StrCat("reason=", HalfOpenReasonName(half_open.reason())));
      if (!half_open.peer_host().empty()) {
        parts.push_back(absl::StrCat("peer=", half_open.peer_host()));
      }
      if (half_open.peer_last_state() != v1::TCP_STATE_UNSPECIFIED) {
        parts.push_back(absl::StrCat("peer_state=", TcpStateName(half_open.peer_last_state())));
      }
      if (half_open.peer_lost_unix_ns() != 0) {
        // How long detection took: from the loss of the peer's end to this finding.
        parts.push_back(absl::StrCat(
            "lost=", Age(half_open.peer_lost_unix_ns(),
                         absl::FromUnixNanos(static_cast<int64_t>(event.time_unix_ns())))));
      }
      AppendOwner(half_open.peer_origin(), "peer_", &parts);
      break;
    }
    case v1::Event::KIND_NOT_SET:
      break;
  }
  AppendOwner(event.origin(), "", &parts);
  return absl::StrJoin(parts, " ");
}

std::vector<std::string> EventRow(const v1::HostEvent& entry, absl::TimeZone zone) {
  const v1::Event& event = entry.event();
  const v1::Endpoints& endpoints = event.endpoints();
  return {EventTime(event.time_unix_ns(), zone),
          entry.host(),
          std::string(RoleName(event.role())),
          FormatAddress(endpoints.local_address(), endpoints.local_port()),
          "->",
          FormatAddress(endpoints.remote_address(), endpoints.remote_port()),
          EventKindName(event),
          EventDetails(event)};
}

}  // namespace tcpscope::cli
