// NETLINK_SOCK_DIAG socket handling: opens the socket inside a chosen network namespace and runs
// one inet_diag dump per address family, leaving the byte decoding to sock_diag_parser.
#include "agent/sock_diag_source.h"

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

  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

int OpenSockDiagSocket() { return socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG); }

// setns() moves only the calling thread, and a socket stays in the namespace it was created in,
// so a throwaway thread can create the socket without disturbing the rest of the process.
absl::StatusOr<int> OpenSockDiagSocketInNamespace(int netns_fd, const std::string& netns_path) {
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
      socket_fd = OpenSockDiagSocket();
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

absl::Status ConfigureSocket(int fd) {
  // SO_RCVBUFFORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN; the plain option is
  // capped, which is still enough because the kernel paces dumps to the reader.
  const int size = kSocketReceiveBuffer;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0 &&
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) != 0) {
    TS_LOG(WARNING) << "sock_diag: cannot set SO_RCVBUF: " << strerror(errno);
  }
  const timeval timeout{.tv_sec = kReceiveTimeoutSeconds, .tv_usec = 0};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0) {
    return ErrnoError(errno, "setsockopt(SO_RCVTIMEO) on sock_diag socket");
  }
  return absl::OkStatus();
}

absl::Status SendDumpRequest(int fd, uint8_t family, uint32_t seq) {
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message;
  std::memset(&message, 0, sizeof(message));
  message.header.nlmsg_len = sizeof(message);
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  message.header.nlmsg_seq = seq;
  message.request.sdiag_family = family;
  message.request.sdiag_protocol = IPPROTO_TCP;
  message.request.idiag_states = ~0u;
  message.request.idiag_ext = 1 << (INET_DIAG_INFO - 1);

  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do {
    sent = sendto(fd, &message, sizeof(message), 0, reinterpret_cast<const sockaddr*>(&kernel),
                  sizeof(kernel));
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return ErrnoError(errno, "sending sock_diag dump request");
  if (static_cast<size_t>(sent) != sizeof(message)) {
    return absl::InternalError(
        absl::StrCat("sock_diag dump request: sent ", sent, " of ", sizeof(message), " bytes"));
  }
  return absl::OkStatus();
}

// Receives one datagram from the kernel into `buffer`; returns its length.
absl::StatusOr<size_t> ReceiveFromKernel(int fd, std::vector<uint8_t>& buffer) {
  while (true) {
    sockaddr_nl sender{};
    iovec iov{.iov_base = buffer.data(), .iov_len = buffer.size()};
    msghdr msg{};
    msg.msg_name = &sender;
    msg.msg_namelen = sizeof(sender);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    const ssize_t received = recvmsg(fd, &msg, 0);
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
    if (msg.msg_flags & MSG_TRUNC) {
      return absl::InternalError(absl::StrCat("sock_diag reply larger than the ", buffer.size(),
                                              "-byte receive buffer (MSG_TRUNC)"));
    }
    // Only the kernel (port 0) answers dumps; anything else is not ours to parse.
    if (sender.nl_pid != 0) {
      TS_LOG(WARNING) << "sock_diag: ignoring datagram from netlink port " << sender.nl_pid;
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
  uint64_t inode = 0;
  absl::StatusOr<int> fd;
  if (netns_path.empty()) {
    struct stat st;
    if (stat("/proc/self/ns/net", &st) != 0) return ErrnoError(errno, "stat /proc/self/ns/net");
    inode = st.st_ino;
    fd = OpenSockDiagSocket();
    if (*fd < 0) return ErrnoError(errno, "socket(NETLINK_SOCK_DIAG)");
  } else {
    const UniqueFd netns_fd(open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (netns_fd.get() < 0) {
      return ErrnoError(errno, absl::StrCat("open network namespace ", netns_path));
    }
    struct stat st;
    if (fstat(netns_fd.get(), &st) != 0) {
      return ErrnoError(errno, absl::StrCat("fstat network namespace ", netns_path));
    }
    inode = st.st_ino;
    fd = OpenSockDiagSocketInNamespace(netns_fd.get(), netns_path);
    if (!fd.ok()) return fd.status();
  }
  UniqueFd socket_fd(*fd);
  if (absl::Status status = ConfigureSocket(socket_fd.get()); !status.ok()) return status;
  return std::unique_ptr<SockDiagDumper>(new SockDiagDumper(socket_fd.release(), inode));
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

}  // namespace tcpscope::agent
