// NETLINK_SOCK_DIAG socket handling: opens the socket inside a chosen network namespace, runs
// one inet_diag dump per address family and receives destroy notifications, leaving the byte
// decoding to sock_diag_parser.
#include "agent/sock_diag_netlink.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace tcpscope::agent {
namespace {

// Large enough for any dump skb: the kernel caps dump chunks at 32 KiB.
constexpr size_t kReceiveBufferSize = 64 * 1024;
// Socket buffer: lets the kernel queue a few chunks ahead while we parse.
constexpr int kSocketReceiveBuffer = 1 << 20;
// Destroy notifications are not paced to the reader: a burst of closes while the agent is busy
// with a dump must fit (each message costs about 1 KiB of buffer).
constexpr int kDestroyReceiveBuffer = 4 << 20;
// Bounds one ReadAvailable() so a close storm cannot keep the sock_diag source from its dumps;
// whatever is left keeps the descriptor readable.
constexpr int kMaxDestroyDatagramsPerRead = 8192;
// A dump normally answers in milliseconds; this only bounds a stuck kernel.
constexpr int kReceiveTimeoutSeconds = 5;
// Bounds on reading replies that belong to an abandoned dump, so neither loop can spin forever.
constexpr int kMaxStaleBuffers = 4096;
constexpr int kMaxDrainBuffers = 4096;

absl::Status ErrnoError(int error, absl::string_view what) {
  return absl::ErrnoToStatus(error, what);
}

class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() {
    if (fd_ >= 0) close(fd_);
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&&) = delete;

  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

int OpenSockDiagSocket(int type_flags) {
  return socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | type_flags, NETLINK_SOCK_DIAG);
}

// setns() moves only the calling thread, and a socket stays in the namespace it was created in,
// so a throwaway thread can create the socket without disturbing the rest of the process.
absl::StatusOr<int> OpenSockDiagSocketInNamespace(int netns_fd, const std::string& netns_path,
                                                  int type_flags) {
  int socket_fd = -1;
  int error = 0;
  const char* failed_call = nullptr;
  try {
    std::thread([&] {
      if (setns(netns_fd, CLONE_NEWNET) != 0) {
        error = errno;
        failed_call = "setns";
        return;
      }
      socket_fd = OpenSockDiagSocket(type_flags);
      if (socket_fd < 0) {
        error = errno;
        failed_call = "socket(NETLINK_SOCK_DIAG)";
      }
    }).join();
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot start thread to enter network namespace ", netns_path, ": ", e.what()));
  }
  if (failed_call != nullptr) {
    return ErrnoError(error, absl::StrCat(failed_call, " in network namespace ", netns_path));
  }
  return socket_fd;
}

struct NamespaceSocket {
  UniqueFd fd;
  uint64_t netns_inode = 0;
};

// A NETLINK_SOCK_DIAG socket that belongs to the namespace at `netns_path` (empty: ours).
absl::StatusOr<NamespaceSocket> OpenSockDiagSocketFor(const std::string& netns_path,
                                                      int type_flags) {
  if (netns_path.empty()) {
    struct stat st;
    if (stat("/proc/self/ns/net", &st) != 0) return ErrnoError(errno, "stat /proc/self/ns/net");
    UniqueFd fd(OpenSockDiagSocket(type_flags));
    if (fd.get() < 0) return ErrnoError(errno, "socket(NETLINK_SOCK_DIAG)");
    return NamespaceSocket{std::move(fd), st.st_ino};
  }
  const UniqueFd netns_fd(open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (netns_fd.get() < 0) {
    return ErrnoError(errno, absl::StrCat("open network namespace ", netns_path));
  }
  struct stat st;
  if (fstat(netns_fd.get(), &st) != 0) {
    return ErrnoError(errno, absl::StrCat("fstat network namespace ", netns_path));
  }
  absl::StatusOr<int> fd = OpenSockDiagSocketInNamespace(netns_fd.get(), netns_path, type_flags);
  if (!fd.ok()) return fd.status();
  return NamespaceSocket{UniqueFd(*fd), st.st_ino};
}

// SO_RCVBUFFORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN; the plain option is capped
// by rmem_max, which callers must be able to live with.
void SetReceiveBuffer(int fd, int size) {
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0 &&
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) != 0) {
    TS_LOG(WARNING) << "sock_diag: cannot set SO_RCVBUF: " << strerror(errno);
  }
}

absl::Status ConfigureSocket(int fd) {
  // A capped buffer is still enough here because the kernel paces dumps to the reader.
  SetReceiveBuffer(fd, kSocketReceiveBuffer);
  const timeval timeout{.tv_sec = kReceiveTimeoutSeconds, .tv_usec = 0};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0) {
    return ErrnoError(errno, "setsockopt(SO_RCVTIMEO) on sock_diag socket");
  }
  return absl::OkStatus();
}

absl::Status SendRequest(int fd, const inet_diag_req_v2& request, uint16_t flags, uint32_t seq) {
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message;
  std::memset(&message, 0, sizeof(message));
  message.header.nlmsg_len = sizeof(message);
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = flags;
  message.header.nlmsg_seq = seq;
  message.request = request;

  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do {
    sent = sendto(fd, &message, sizeof(message), 0, reinterpret_cast<const sockaddr*>(&kernel),
                  sizeof(kernel));
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return ErrnoError(errno, "sending sock_diag request");
  if (static_cast<size_t>(sent) != sizeof(message)) {
    return absl::InternalError(
        absl::StrCat("sock_diag request: sent ", sent, " of ", sizeof(message), " bytes"));
  }
  return absl::OkStatus();
}

inet_diag_req_v2 TcpRequest(uint8_t family) {
  inet_diag_req_v2 request;
  std::memset(&request, 0, sizeof(request));
  request.sdiag_family = family;
  request.sdiag_protocol = IPPROTO_TCP;
  request.idiag_states = ~0u;
  request.idiag_ext = 1 << (INET_DIAG_INFO - 1);
  return request;
}

absl::Status SendDumpRequest(int fd, uint8_t family, uint32_t seq) {
  return SendRequest(fd, TcpRequest(family), NLM_F_REQUEST | NLM_F_DUMP, seq);
}

// One datagram from a netlink socket into `buffer`: its length (or -1 with errno), the sender's
// port and whether it was truncated.
struct Datagram {
  ssize_t length;
  uint32_t sender_port;
  bool truncated;
};

Datagram ReceiveDatagram(int fd, std::vector<uint8_t>& buffer, int flags) {
  sockaddr_nl sender{};
  iovec iov{.iov_base = buffer.data(), .iov_len = buffer.size()};
  msghdr msg{};
  msg.msg_name = &sender;
  msg.msg_namelen = sizeof(sender);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  const ssize_t length = recvmsg(fd, &msg, flags);
  return {length, sender.nl_pid, (msg.msg_flags & MSG_TRUNC) != 0};
}

// Receives one datagram from the kernel into `buffer`; returns its length.
absl::StatusOr<size_t> ReceiveFromKernel(int fd, std::vector<uint8_t>& buffer) {
  while (true) {
    const Datagram datagram = ReceiveDatagram(fd, buffer, 0);
    const ssize_t received = datagram.length;
    if (received < 0) {
      const int error = errno;
      if (error == EINTR) continue;
      if (error == EAGAIN || error == EWOULDBLOCK) {
        return absl::DeadlineExceededError(absl::StrCat(
            "no sock_diag reply from the kernel within ", kReceiveTimeoutSeconds, " s"));
      }
      if (error == ENOBUFS) {
        return absl::ResourceExhaustedError(
            "sock_diag socket receive buffer overflowed (ENOBUFS): dump replies were lost");
      }
      return ErrnoError(error, "receiving sock_diag reply");
    }
    if (received == 0) return absl::UnavailableError("sock_diag socket returned end of file");
    if (datagram.truncated) {
      return absl::InternalError(absl::StrCat("sock_diag reply larger than the ", buffer.size(),
                                              "-byte receive buffer (MSG_TRUNC)"));
    }
    // Only the kernel (port 0) answers dumps; anything else is not ours to parse.
    if (datagram.sender_port != 0) {
      TS_LOG(WARNING) << "sock_diag: ignoring datagram from netlink port " << datagram.sender_port;
      continue;
    }
    return static_cast<size_t>(received);
  }
}

struct BufferSummary {
  bool has_header = false;
  uint32_t seq = 0;       // of the first message; a dump chunk carries a single sequence
  bool terminal = false;  // NLMSG_DONE or NLMSG_ERROR: the kernel has finished this request
};

// A cheap header walk that tolerates garbage, used only to decide whether a buffer belongs to
// the current request and whether the kernel still has more to send.
BufferSummary Summarize(absl::Span<const uint8_t> buffer) {
  BufferSummary summary;
  size_t offset = 0;
  while (buffer.size() - offset >= sizeof(nlmsghdr)) {
    nlmsghdr header;
    std::memcpy(&header, buffer.data() + offset, sizeof(header));
    if (!summary.has_header) {
      summary.has_header = true;
      summary.seq = header.nlmsg_seq;
    }
    if (header.nlmsg_type == NLMSG_DONE || header.nlmsg_type == NLMSG_ERROR) {
      summary.terminal = true;
    }
    if (header.nlmsg_len < sizeof(nlmsghdr)) break;
    const size_t step = NLMSG_ALIGN(header.nlmsg_len);
    if (step > buffer.size() - offset) break;
    offset += step;
  }
  return summary;
}

// After giving up on a dump the kernel keeps it open and would answer the next request with
// EBUSY; reading it to its end releases it.
void DrainDump(int fd, uint32_t seq, std::vector<uint8_t>& buffer) {
  for (int i = 0; i < kMaxDrainBuffers; ++i) {
    auto received = ReceiveFromKernel(fd, buffer);
    if (!received.ok()) {
      TS_LOG(WARNING) << "sock_diag: stopped draining abandoned dump " << seq << ": "
                      << received.status();
      return;
    }
    const BufferSummary summary = Summarize(absl::MakeConstSpan(buffer.data(), *received));
    if (summary.terminal && summary.seq == seq) return;
  }
  TS_LOG(WARNING) << "sock_diag: abandoned dump " << seq << " did not end after "
                  << kMaxDrainBuffers << " buffers";
}

}  // namespace

absl::StatusOr<std::unique_ptr<SockDiagDumper>> SockDiagDumper::Open(
    const std::string& netns_path) {
  absl::StatusOr<NamespaceSocket> opened = OpenSockDiagSocketFor(netns_path, 0);
  if (!opened.ok()) return opened.status();
  if (absl::Status status = ConfigureSocket(opened->fd.get()); !status.ok()) return status;
  // Any socket reports the cookie of the namespace it was created in (Linux 5.14 and later).
  uint64_t cookie = 0;
  socklen_t length = sizeof(cookie);
  if (getsockopt(opened->fd.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &length) != 0) {
    return ErrnoError(errno, "getsockopt(SO_NETNS_COOKIE) on sock_diag socket");
  }
  return std::unique_ptr<SockDiagDumper>(
      new SockDiagDumper(opened->fd.release(), opened->netns_inode, cookie));
}

SockDiagDumper::~SockDiagDumper() {
  if (fd_ >= 0) close(fd_);
}

absl::StatusOr<std::vector<SocketRecord>> SockDiagDumper::Dump() {
  std::vector<SocketRecord> records;
  for (const uint8_t family : {AF_INET, AF_INET6}) {
    if (absl::Status status = DumpFamily(family, &records); !status.ok()) {
      return absl::Status(status.code(), absl::StrCat(family == AF_INET ? "IPv4" : "IPv6",
                                                      " TCP socket dump: ", status.message()));
    }
  }
  return records;
}

absl::Status SockDiagDumper::DumpFamily(uint8_t family, std::vector<SocketRecord>* out) {
  const uint32_t seq = next_seq_++;
  if (next_seq_ == 0) next_seq_ = 1;  // 0 would match replies that carry no sequence
  if (absl::Status status = SendDumpRequest(fd_, family, seq); !status.ok()) return status;

  std::vector<uint8_t> buffer(kReceiveBufferSize);
  int stale_buffers = 0;
  while (true) {
    auto received = ReceiveFromKernel(fd_, buffer);
    if (!received.ok()) {
      // After a timeout the kernel is not sending; otherwise the dump may still be open.
      if (!absl::IsDeadlineExceeded(received.status())) DrainDump(fd_, seq, buffer);
      return received.status();
    }
    const auto bytes = absl::MakeConstSpan(buffer.data(), *received);
    const BufferSummary summary = Summarize(bytes);
    if (summary.has_header && summary.seq != seq) {
      // Left over from a dump abandoned before it could be drained.
      if (++stale_buffers > kMaxStaleBuffers) {
        return absl::InternalError(
            absl::StrCat("sock_diag: more than ", kMaxStaleBuffers, " buffers of stale replies"));
      }
      continue;
    }
    auto progress = ParseDumpBuffer(bytes, out);
    if (!progress.ok()) {
      if (!summary.terminal) DrainDump(fd_, seq, buffer);
      return progress.status();
    }
    if (progress->done) return absl::OkStatus();
  }
}

absl::StatusOr<std::optional<SocketRecord>> SockDiagDumper::Lookup(const SocketRecord& key) {
  inet_diag_req_v2 request = TcpRequest(key.family);
  request.id.idiag_sport = htons(key.local_port);
  request.id.idiag_dport = htons(key.remote_port);
  std::memcpy(request.id.idiag_src, key.local_address.data(), key.address_length());
  std::memcpy(request.id.idiag_dst, key.remote_address.data(), key.address_length());
  request.id.idiag_cookie[0] = static_cast<uint32_t>(key.cookie);
  request.id.idiag_cookie[1] = static_cast<uint32_t>(key.cookie >> 32);
  const uint32_t seq = next_seq_++;
  if (next_seq_ == 0) next_seq_ = 1;
  if (absl::Status status = SendRequest(fd_, request, NLM_F_REQUEST, seq); !status.ok()) {
    return status;
  }
  std::vector<uint8_t> buffer(kReceiveBufferSize);
  for (int stale = 0; stale <= kMaxStaleBuffers; ++stale) {
    auto received = ReceiveFromKernel(fd_, buffer);
    if (!received.ok()) return received.status();
    const auto bytes = absl::MakeConstSpan(buffer.data(), *received);
    const BufferSummary summary = Summarize(bytes);
    if (summary.has_header && summary.seq != seq) continue;
    std::vector<SocketRecord> records;
    auto parsed = ParseDumpBuffer(bytes, &records);
    // ENOENT: no such socket; ESTALE: the 4-tuple is reused by another socket.
    if (!parsed.ok() && (absl::IsNotFound(parsed.status()) ||
                         parsed.status().message().find("Stale") != absl::string_view::npos)) {
      return std::nullopt;
    }
    if (!parsed.ok()) return parsed.status();
    if (records.empty()) return std::nullopt;
    return records.front();
  }
  return absl::InternalError("sock_diag lookup: no reply");
}

absl::StatusOr<std::unique_ptr<SockDiagDestroyListener>> SockDiagDestroyListener::Open(
    const std::string& netns_path) {
  absl::StatusOr<NamespaceSocket> opened = OpenSockDiagSocketFor(netns_path, SOCK_NONBLOCK);
  if (!opened.ok()) return opened.status();
  const int fd = opened->fd.get();
  // Multicast delivery skips the sender's port, and both the kernel and an unbound socket have
  // port 0: without this bind the memberships below succeed but nothing ever arrives.
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof(local)) != 0) {
    return ErrnoError(errno, "bind(NETLINK_SOCK_DIAG)");
  }
  struct Group {
    int number;
    const char* name;
  };
  for (const Group group : {Group{SKNLGRP_INET_TCP_DESTROY, "SKNLGRP_INET_TCP_DESTROY"},
                            Group{SKNLGRP_INET6_TCP_DESTROY, "SKNLGRP_INET6_TCP_DESTROY"}}) {
    if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group.number, sizeof(group.number)) !=
        0) {
      return ErrnoError(errno, absl::StrCat("joining sock_diag group ", group.name));
    }
  }
  SetReceiveBuffer(fd, kDestroyReceiveBuffer);
  return std::unique_ptr<SockDiagDestroyListener>(
      new SockDiagDestroyListener(opened->fd.release(), opened->netns_inode));
}

SockDiagDestroyListener::SockDiagDestroyListener(int fd, uint64_t netns_inode)
    : fd_(fd), netns_inode_(netns_inode), buffer_(kReceiveBufferSize) {}

SockDiagDestroyListener::~SockDiagDestroyListener() {
  if (fd_ >= 0) close(fd_);
}

absl::StatusOr<std::vector<SocketRecord>> SockDiagDestroyListener::ReadAvailable() {
  std::vector<SocketRecord> records;
  for (int i = 0; i < kMaxDestroyDatagramsPerRead; ++i) {
    const Datagram datagram = ReceiveDatagram(fd_, buffer_, MSG_DONTWAIT);
    const ssize_t received = datagram.length;
    if (received < 0) {
      const int error = errno;
      if (error == EINTR) continue;
      if (error == EAGAIN || error == EWOULDBLOCK) break;
      if (error == ENOBUFS) {
        // Reported once per overflow, after which the socket works normally again.
        ++overruns_;
        continue;
      }
      // Hand over what was read; a lasting fault shows up again on the next call.
      if (!records.empty()) break;
      return ErrnoError(error, "receiving sock_diag destroy notification");
    }
    if (datagram.sender_port != 0) continue;  // only the kernel speaks for the destroy groups
    absl::Status parsed;
    if (datagram.truncated) {
      parsed = absl::InternalError(absl::StrCat("notification larger than the ", buffer_.size(),
                                                "-byte receive buffer (MSG_TRUNC)"));
    } else {
      // Records parsed before a fault stay: one bad message must not stop the stream.
      parsed = ParseDumpBuffer(absl::MakeConstSpan(buffer_.data(), received), &records).status();
    }
    if (!parsed.ok() && malformed_++ % 1000 == 0) {
      TS_LOG(WARNING) << "sock_diag: skipping malformed destroy notification (" << malformed_
                      << " so far): " << parsed;
    }
  }
  return records;
}

}  // namespace tcpscope::agent
