// Ring-buffer record decoding. The record's enum fields carry tcpscope.v1 enum numbers.
#include "agent/bpf_event_decoder.h"

#include <sys/socket.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/tcp_names.h"

// A switch over the kernel's kinds that misses one is a build error, not a dropped record.
#pragma GCC diagnostic error "-Wswitch"

namespace tcpscope::agent {
namespace {

// The kernel side writes proto enum numbers; these keep the two in step.
constexpr bool Same(int kernel, int proto) { return kernel == proto; }
// Each kind the program emits is the proto's EventKind of that name (a kind the proto does not
// have does not compile), and FIN_SENT is none of them.
#define TCPSCOPE_CHECK_KIND(name, number)                           \
  static_assert(Same(TCPSCOPE_EVENT_##name, v1::EVENT_KIND_##name), \
                "agent/bpf/tcpscope_event.h: " #name " is not EventKind's number");
TCPSCOPE_EVENT_KINDS(TCPSCOPE_CHECK_KIND)
#undef TCPSCOPE_CHECK_KIND
static_assert(TCPSCOPE_EVENT_FIN_SENT >= v1::EventKind_ARRAYSIZE &&
              TCPSCOPE_EVENT_RESET_ANSWERED >= v1::EventKind_ARRAYSIZE);
static_assert(Same(TCPSCOPE_ROLE_CLIENT, v1::ROLE_CLIENT) &&
              Same(TCPSCOPE_ROLE_SERVER, v1::ROLE_SERVER));
static_assert(Same(TCPSCOPE_INITIATOR_LOCAL, v1::CLOSE_INITIATOR_LOCAL) &&
              Same(TCPSCOPE_INITIATOR_REMOTE, v1::CLOSE_INITIATOR_REMOTE) &&
              Same(TCPSCOPE_INITIATOR_SIMULTANEOUS, v1::CLOSE_INITIATOR_SIMULTANEOUS) &&
              Same(TCPSCOPE_INITIATOR_UNKNOWN, v1::CLOSE_INITIATOR_UNKNOWN));
static_assert(Same(TCPSCOPE_REASON_FIN, v1::CLOSE_REASON_FIN) &&
              Same(TCPSCOPE_REASON_RESET_SENT, v1::CLOSE_REASON_RESET_SENT) &&
              Same(TCPSCOPE_REASON_RESET_RECEIVED, v1::CLOSE_REASON_RESET_RECEIVED) &&
              Same(TCPSCOPE_REASON_KEEPALIVE_TIMEOUT, v1::CLOSE_REASON_KEEPALIVE_TIMEOUT) &&
              Same(TCPSCOPE_REASON_KEEPALIVE_RESET, v1::CLOSE_REASON_KEEPALIVE_RESET) &&
              Same(TCPSCOPE_REASON_RETRANSMIT_TIMEOUT, v1::CLOSE_REASON_RETRANSMIT_TIMEOUT) &&
              Same(TCPSCOPE_REASON_OTHER, v1::CLOSE_REASON_OTHER));
static_assert(Same(TCPSCOPE_FAILURE_REFUSED, v1::HANDSHAKE_FAILURE_REFUSED) &&
              Same(TCPSCOPE_FAILURE_TIMEOUT, v1::HANDSHAKE_FAILURE_TIMEOUT) &&
              Same(TCPSCOPE_FAILURE_RESET, v1::HANDSHAKE_FAILURE_RESET) &&
              Same(TCPSCOPE_FAILURE_UNREACHABLE, v1::HANDSHAKE_FAILURE_UNREACHABLE) &&
              Same(TCPSCOPE_FAILURE_OTHER, v1::HANDSHAKE_FAILURE_OTHER));

uint64_t Microseconds(uint64_t ns) { return ns / 1000; }

// Unsigned, so a garbage time wraps (and the service refuses it) instead of overflowing.
uint64_t UnixNanos(uint64_t monotonic_ns, int64_t monotonic_to_unix_ns) {
  return monotonic_ns + static_cast<uint64_t>(monotonic_to_unix_ns);
}

// Fills `event` from an event record; false for a kind that is no event.
bool DecodeEvent(const tcpscope_event& raw, int64_t monotonic_to_unix_ns, v1::Event& event) {
  event.set_time_unix_ns(UnixNanos(raw.time_ns, monotonic_to_unix_ns));
  event.set_connection_id(raw.cookie);
  v1::Origin* origin = event.mutable_origin();
  origin->set_netns_inode(raw.netns_ino);
  origin->set_cgroup_id(raw.cgroup_id);
  origin->set_pid(raw.pid);
  if (raw.pid != 0) origin->set_command(CommandOf(raw.comm));
  // A dual-stack IPv6 socket talking to an IPv4 peer reports ::ffff:a.b.c.d: reported as IPv4,
  // as the snapshots do, so both ends of a connection look alike.
  static constexpr uint8_t kV4Mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  const uint8_t* local = raw.saddr;
  const uint8_t* remote = raw.daddr;
  size_t length = raw.family == AF_INET ? 4 : 16;
  if (length == 16 && std::memcmp(local, kV4Mapped, 12) == 0 &&
      std::memcmp(remote, kV4Mapped, 12) == 0) {
    local += 12;
    remote += 12;
    length = 4;
  }
  v1::Endpoints* endpoints = event.mutable_endpoints();
  endpoints->set_local_address(reinterpret_cast<const char*>(local), length);
  endpoints->set_local_port(raw.sport);
  endpoints->set_remote_address(reinterpret_cast<const char*>(remote), length);
  endpoints->set_remote_port(raw.dport);
  if (v1::Role_IsValid(raw.role)) event.set_role(static_cast<v1::Role>(raw.role));
  const bool duration_known = raw.flags & TCPSCOPE_FLAG_DURATION_KNOWN;

  // Every kind of tcpscope_event.h has its case: a missing one does not compile (-Wswitch is an
  // error in this file).
  switch (static_cast<tcpscope_event_kind>(raw.kind)) {
    case TCPSCOPE_EVENT_HANDSHAKE: {
      v1::Handshake* handshake = event.mutable_handshake();
      if (duration_known) handshake->set_duration_us(Microseconds(raw.duration_ns));
      return true;
    }
    case TCPSCOPE_EVENT_HANDSHAKE_FAILED: {
      v1::HandshakeFailed* failed = event.mutable_handshake_failed();
      failed->set_reason(v1::HandshakeFailureReason_IsValid(raw.reason) && raw.reason != 0
                             ? static_cast<v1::HandshakeFailureReason>(raw.reason)
                             : v1::HANDSHAKE_FAILURE_OTHER);
      failed->set_syn_retransmits(raw.probes);
      failed->set_error(raw.error);
      if (duration_known) failed->set_duration_us(Microseconds(raw.duration_ns));
      return true;
    }
    case TCPSCOPE_EVENT_CLOSE: {
      v1::Close* close = event.mutable_close();
      close->set_initiator(v1::CloseInitiator_IsValid(raw.initiator) && raw.initiator != 0
                               ? static_cast<v1::CloseInitiator>(raw.initiator)
                               : v1::CLOSE_INITIATOR_UNKNOWN);
      close->set_reason(v1::CloseReason_IsValid(raw.reason) && raw.reason != 0
                            ? static_cast<v1::CloseReason>(raw.reason)
                            : v1::CLOSE_REASON_OTHER);
      if (duration_known) close->set_lifetime_us(Microseconds(raw.duration_ns));
      close->set_bytes_sent(raw.bytes_acked);
      close->set_bytes_received(raw.bytes_received);
      close->set_segments_sent(raw.segs_out);
      close->set_segments_received(raw.segs_in);
      close->set_retransmits(raw.total_retrans);
      close->set_srtt_us(raw.srtt_us);
      if (v1::TcpState_IsValid(raw.last_state)) {
        close->set_last_state(static_cast<v1::TcpState>(raw.last_state));
      }
      close->set_error(raw.error);
      return true;
    }
    case TCPSCOPE_EVENT_KEEPALIVE_PROBE: {
      v1::KeepaliveProbe* probe = event.mutable_keepalive_probe();
      probe->set_probe_number(raw.probes);
      probe->set_idle_ms(raw.idle_ms);
      return true;
    }
    case TCPSCOPE_EVENT_KEEPALIVE_TIMEOUT: {
      v1::KeepaliveTimeout* timeout = event.mutable_keepalive_timeout();
      timeout->set_probes_sent(raw.probes);
      timeout->set_idle_s(raw.keepalive_idle_s);
      timeout->set_interval_s(raw.keepalive_intvl_s);
      timeout->set_count(raw.keepalive_count);
      timeout->set_error(raw.error);
      return true;
    }
    case TCPSCOPE_EVENT_KEEPALIVE_ANSWERED:
      event.mutable_keepalive_answered()->set_probes_outstanding(raw.probes);
      return true;
    case TCPSCOPE_EVENT_FIN_SENT:  // not events: decoded by DecodeBpfRecord
    case TCPSCOPE_EVENT_RESET_ANSWERED:
      break;
  }
  return false;
}

}  // namespace

std::string CommandOf(const char (&comm)[16]) {
  size_t length = strnlen(comm, sizeof(comm));
  std::string text(comm, length);
  for (char& c : text) {
    if (c < 0x20 || c > 0x7e) c = '?';  // the service accepts printable ASCII only
  }
  return text;
}

absl::StatusOr<BpfRecord> DecodeBpfRecord(const void* data, size_t size,
                                          int64_t monotonic_to_unix_ns, v1::Event* event) {
  if (size < sizeof(tcpscope_event)) {
    return absl::InvalidArgumentError(
        absl::StrCat("eBPF record of ", size, " bytes; expected ", sizeof(tcpscope_event)));
  }
  tcpscope_event raw;
  std::memcpy(&raw, data, sizeof(raw));
  switch (static_cast<tcpscope_event_kind>(raw.kind)) {
    case TCPSCOPE_EVENT_FIN_SENT:
      return FinSent{
          .connection_id = raw.cookie,
          .time = absl::FromUnixNanos(
              static_cast<int64_t>(UnixNanos(raw.time_ns, monotonic_to_unix_ns))),
          .pid = raw.pid,
          .cgroup_id = raw.cgroup_id,
          .command = raw.pid != 0 ? CommandOf(raw.comm) : std::string(),
      };
    case TCPSCOPE_EVENT_RESET_ANSWERED:
      return ResetAnswered{.connection_id = raw.cookie};
    default:
      break;
  }
  if (raw.family != AF_INET && raw.family != AF_INET6) {
    return absl::InvalidArgumentError(absl::StrCat("eBPF record with address family ", raw.family));
  }
  KernelEvent decoded{.monotonic_ns = raw.time_ns,
                      .reset_maybe_sent = (raw.flags & TCPSCOPE_FLAG_RESET_MAYBE_SENT) != 0};
  if (!DecodeEvent(raw, monotonic_to_unix_ns, *event)) {
    return absl::InvalidArgumentError(absl::StrCat("eBPF record of unknown kind ", raw.kind));
  }
  return decoded;
}

std::vector<std::string> KernelEventKindNames() {
  std::vector<std::string> names;
#define TCPSCOPE_KIND_NAME(name, number) \
  names.emplace_back(EventKindName(static_cast<v1::EventKind>(TCPSCOPE_EVENT_##name)));
  TCPSCOPE_EVENT_KINDS(TCPSCOPE_KIND_NAME)
#undef TCPSCOPE_KIND_NAME
  return names;
}

}  // namespace tcpscope::agent
