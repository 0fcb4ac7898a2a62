// Bounds-checked decoding of inet_diag dump replies. Every read goes through memcpy from a
// checked offset, so a hostile or truncated buffer yields an error, never an out-of-bounds read.
#include "agent/sock_diag_parser.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tcpscope::agent {
namespace {

// Copies a T out of `bytes` at `offset`; the caller has checked the bounds. memcpy because
// netlink buffers promise only 4-byte alignment and the bytes may come from anywhere.
template <typename T>
T Load(absl::Span<const uint8_t> bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

// The kernel's errnos are 1..MAX_ERRNO (include/linux/err.h); anything else in an error field
// is garbage, and negating INT_MIN would overflow.
constexpr int kMaxErrno = 4095;

// Netlink errors are negative errnos (-kMaxErrno..-1); the text is what an operator greps for.
std::string ErrnoText(int negative_errno) {
  const int e = -negative_errno;
  return absl::StrCat(strerrordesc_np(e) != nullptr ? strerrordesc_np(e) : "unknown error",
                      " (errno ", e, ")");
}

TcpInfo ConvertTcpInfo(const struct tcp_info& info) {
  TcpInfo out;
  out.state = info.tcpi_state;
  out.probes = info.tcpi_probes;
  out.backoff = info.tcpi_backoff;
  out.rtt_us = info.tcpi_rtt;
  out.rttvar_us = info.tcpi_rttvar;
  out.last_data_sent_ms = info.tcpi_last_data_sent;
  out.last_data_recv_ms = info.tcpi_last_data_recv;
  out.last_ack_recv_ms = info.tcpi_last_ack_recv;
  out.total_retrans = info.tcpi_total_retrans;
  out.segs_out = info.tcpi_segs_out;
  out.segs_in = info.tcpi_segs_in;
  out.bytes_acked = info.tcpi_bytes_acked;
  out.bytes_received = info.tcpi_bytes_received;
  return out;
}

// `payload` is everything after the nlmsghdr of one SOCK_DIAG_BY_FAMILY message.
absl::StatusOr<SocketRecord> ParseSocketMessage(absl::Span<const uint8_t> payload) {
  if (payload.size() < sizeof(inet_diag_msg)) {
    return absl::InvalidArgumentError(
        absl::StrCat("inet_diag message truncated: payload is ", payload.size(),
                     " bytes, struct inet_diag_msg needs ", sizeof(inet_diag_msg)));
  }
  const auto msg = Load<inet_diag_msg>(payload, 0);
  if (msg.idiag_family != AF_INET && msg.idiag_family != AF_INET6) {
    return absl::InvalidArgumentError(
        absl::StrCat("inet_diag message has unexpected family ", msg.idiag_family));
  }

  SocketRecord record;
  record.family = msg.idiag_family;
  record.state = msg.idiag_state;
  record.timer = static_cast<DiagTimer>(msg.idiag_timer);
  record.timer_retrans = msg.idiag_retrans;
  record.timer_expires_ms = msg.idiag_expires;
  // For AF_INET only the first word is an address; copy just that so records compare equal
  // no matter what the kernel left in the rest.
  const size_t address_bytes = record.address_length();
  std::memcpy(record.local_address.data(), msg.id.idiag_src, address_bytes);
  std::memcpy(record.remote_address.data(), msg.id.idiag_dst, address_bytes);
  record.local_port = ntohs(msg.id.idiag_sport);
  record.remote_port = ntohs(msg.id.idiag_dport);
  record.cookie = msg.id.idiag_cookie[0] | static_cast<uint64_t>(msg.id.idiag_cookie[1]) << 32;
  record.recv_queue = msg.idiag_rqueue;
  record.send_queue = msg.idiag_wqueue;
  record.uid = msg.idiag_uid;
  record.inode = msg.idiag_inode;

  size_t offset = NLMSG_ALIGN(sizeof(inet_diag_msg));
  while (offset < payload.size()) {
    const size_t remaining = payload.size() - offset;
    if (remaining < sizeof(nlattr)) {
      return absl::InvalidArgumentError(
          absl::StrCat("inet_diag attribute header truncated: ", remaining, " bytes left, need ",
                       sizeof(nlattr)));
    }
    const auto attr = Load<nlattr>(payload, offset);
    if (attr.nla_len < sizeof(nlattr) || attr.nla_len > remaining) {
      return absl::InvalidArgumentError(absl::StrCat("inet_diag attribute type ", attr.nla_type,
                                                     " has bad length ", attr.nla_len, " (",
                                                     remaining, " bytes left)"));
    }
    const size_t data_len = attr.nla_len - NLA_HDRLEN;
    if ((attr.nla_type & NLA_TYPE_MASK) == INET_DIAG_INFO) {
      // Older kernels send a shorter tcp_info, newer ones a longer one: take what both know
      // and leave the rest zero.
      struct tcp_info info;
      std::memset(&info, 0, sizeof(info));
      std::memcpy(&info, payload.data() + offset + NLA_HDRLEN, std::min(data_len, sizeof(info)));
      record.tcp_info = ConvertTcpInfo(info);
    }
    // The last attribute may omit its padding; never step past the end.
    offset += std::min<size_t>(NLA_ALIGN(attr.nla_len), remaining);
  }
  return record;
}

}  // namespace

absl::StatusOr<ParseProgress> ParseDumpBuffer(absl::Span<const uint8_t> buffer,
                                              std::vector<SocketRecord>* out) {
  ParseProgress progress;
  size_t offset = 0;
  while (offset < buffer.size()) {
    const size_t remaining = buffer.size() - offset;
    if (remaining < sizeof(nlmsghdr)) {
      return absl::InvalidArgumentError(absl::StrCat("netlink header truncated: ", remaining,
                                                     " bytes left at offset ", offset, ", need ",
                                                     sizeof(nlmsghdr)));
    }
    const auto header = Load<nlmsghdr>(buffer, offset);
    if (header.nlmsg_len < NLMSG_HDRLEN) {
      return absl::InvalidArgumentError(absl::StrCat("netlink message at offset ", offset,
                                                     " has nlmsg_len ", header.nlmsg_len,
                                                     ", smaller than its header"));
    }
    if (header.nlmsg_len > remaining) {
      return absl::InvalidArgumentError(absl::StrCat("inet_diag message truncated: nlmsg_len ",
                                                     header.nlmsg_len, " exceeds remaining ",
                                                     remaining, " bytes at offset ", offset));
    }
    // Padding may be missing after the last message only; anything else means the lengths do
    // not describe this buffer.
    const size_t step = NLMSG_ALIGN(header.nlmsg_len);
    if (step > remaining && header.nlmsg_len != remaining) {
      return absl::InvalidArgumentError(absl::StrCat(
          "misaligned netlink message at offset ", offset, ": nlmsg_len ", header.nlmsg_len,
          " leaves ", remaining - header.nlmsg_len, " stray bytes, fewer than its padding"));
    }
    const auto payload = buffer.subspan(offset + NLMSG_HDRLEN, header.nlmsg_len - NLMSG_HDRLEN);

    switch (header.nlmsg_type) {
      case SOCK_DIAG_BY_FAMILY: {
        auto record = ParseSocketMessage(payload);
        if (!record.ok()) return record.status();
        out->push_back(*std::move(record));
        break;
      }
      case NLMSG_DONE: {
        // Dumps append the callback's final return value; a negative one means the dump was
        // cut short and what came before is incomplete.
        if (payload.size() >= sizeof(int)) {
          const int error = Load<int>(payload, 0);
          if (error < -kMaxErrno) {
            return absl::InvalidArgumentError(
                absl::StrCat("NLMSG_DONE with error code ", error, ", not a negative errno"));
          }
          if (error < 0) {
            return absl::Status(
                absl::ErrnoToStatusCode(-error),
                absl::StrCat("sock_diag dump ended with error: ", ErrnoText(error)));
          }
        }
        progress.done = true;
        return progress;  // Nothing after NLMSG_DONE belongs to this dump.
      }
      case NLMSG_ERROR: {
        if (payload.size() < sizeof(int)) {
          return absl::InvalidArgumentError(
              absl::StrCat("NLMSG_ERROR message truncated: payload ", payload.size(), " bytes"));
        }
        const int error = Load<int>(payload, 0);
        if (error == 0) break;  // An ack, not an error.
        if (error > 0 || error < -kMaxErrno) {
          return absl::InvalidArgumentError(
              absl::StrCat("NLMSG_ERROR with error code ", error, ", not a negative errno"));
        }
        return absl::Status(absl::ErrnoToStatusCode(-error),
                            absl::StrCat("sock_diag request failed: ", ErrnoText(error)));
      }
      case NLMSG_NOOP:
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat("unexpected netlink message type ",
                                                       header.nlmsg_type, " at offset ", offset));
    }
    offset += std::min(step, remaining);
  }
  return progress;
}

}  // namespace tcpscope::agent
