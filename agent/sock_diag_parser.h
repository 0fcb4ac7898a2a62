// Parses NETLINK_SOCK_DIAG / inet_diag dump replies (what `ss -tieo` reads) into plain records.
// Pure functions over bytes: no sockets, so every malformed input can be tested.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tcpscope::agent {

// The part of struct tcp_info (INET_DIAG_INFO) that tcpscope uses. Fields missing from an
// older kernel's shorter tcp_info are left zero.
struct TcpInfo {
  uint8_t state = 0;
  uint8_t probes = 0;  // tcpi_probes: keepalive / zero-window probes outstanding
  uint8_t backoff = 0;
  uint32_t rtt_us = 0;
  uint32_t rttvar_us = 0;
  uint32_t last_data_sent_ms = 0;
  uint32_t last_data_recv_ms = 0;
  uint32_t last_ack_recv_ms = 0;
  uint32_t total_retrans = 0;
  uint32_t segs_out = 0;
  uint32_t segs_in = 0;
  uint64_t bytes_acked = 0;
  uint64_t bytes_received = 0;
};

// idiag_timer values.
enum class DiagTimer : uint8_t {
  kNone = 0,
  kRetransmit = 1,
  kKeepalive = 2,  // sk_timer: the keepalive timer for an established socket
  kTimeWait = 3,
  kZeroWindowProbe = 4,
};

// One socket of a dump (struct inet_diag_msg plus the attributes tcpscope asks for).
struct SocketRecord {
  uint8_t family = 0;  // AF_INET or AF_INET6
  uint8_t state = 0;   // TCP state number (TCP_ESTABLISHED = 1, ...)
  DiagTimer timer = DiagTimer::kNone;
  uint8_t timer_retrans = 0;  // idiag_retrans: probes out for the keepalive timer
  uint32_t timer_expires_ms = 0;
  std::array<uint8_t, 16> local_address{};  // first 4 bytes for IPv4
  std::array<uint8_t, 16> remote_address{};
  uint16_t local_port = 0;  // host byte order
  uint16_t remote_port = 0;
  uint64_t cookie = 0;  // idiag_cookie[0] | idiag_cookie[1] << 32
  uint32_t recv_queue = 0;
  uint32_t send_queue = 0;
  uint32_t uid = 0;
  uint32_t inode = 0;
  std::optional<TcpInfo> tcp_info;

  size_t address_length() const { return family == 10 /* AF_INET6 */ ? 16 : 4; }
};

struct ParseProgress {
  bool done = false;  // NLMSG_DONE seen: the dump is complete
};

// Parses one buffer returned by recv() on a sock_diag socket: zero or more netlink messages
// (SOCK_DIAG_BY_FAMILY, NLMSG_DONE, NLMSG_ERROR). Appends each socket to `out`. Returns an error
// for NLMSG_ERROR replies and for any truncated or malformed message; records already appended
// from the buffer stay valid.
absl::StatusOr<ParseProgress> ParseDumpBuffer(absl::Span<const uint8_t> buffer,
                                              std::vector<SocketRecord>* out);

}  // namespace tcpscope::agent
