// Takes a complete dump of every TCP socket (IPv4 and IPv6, all states) of one network
// namespace over NETLINK_SOCK_DIAG, with tcp_info and timer information, and listens for the
// kernel's socket-destroy notifications of that namespace (what `ss -E` shows).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/sock_diag_parser.h"
#include "agent/socket_dumper.h"

namespace tcpscope::agent {

class SockDiagDumper : public SocketDumper {
 public:
  // Opens the netlink socket inside the network namespace at `netns_path` (e.g.
  // /run/netns/NAME or /proc/PID/ns/net); empty means this process's namespace. The socket stays
  // bound to that namespace for its whole life.
  static absl::StatusOr<std::unique_ptr<SockDiagDumper>> Open(const std::string& netns_path);
  ~SockDiagDumper() override;

  SockDiagDumper(const SockDiagDumper&) = delete;
  SockDiagDumper& operator=(const SockDiagDumper&) = delete;

  // Every TCP socket of the namespace, IPv4 then IPv6.
  absl::StatusOr<std::vector<SocketRecord>> Dump() override;

  // The socket with `key`'s family, addresses, ports and cookie, if it exists: e.g. the
  // TIME_WAIT (or orphaned FIN_WAIT2) socket that succeeds a destroyed one under its cookie.
  absl::StatusOr<std::optional<SocketRecord>> Lookup(const SocketRecord& key);

  // Inode of the watched namespace (what `ls -L -i /proc/self/ns/net` shows).
  uint64_t netns_inode() const override { return netns_inode_; }
  // The watched namespace's SO_NETNS_COOKIE: unlike the inode, never reused while the kernel
  // runs, so a namespace deleted and created again under the same name gets a new one.
  uint64_t netns_cookie() const { return netns_cookie_; }

 private:
  SockDiagDumper(int fd, uint64_t netns_inode, uint64_t netns_cookie)
      : fd_(fd), netns_inode_(netns_inode), netns_cookie_(netns_cookie) {}
  absl::Status DumpFamily(uint8_t family, std::vector<SocketRecord>* out);

  int fd_;
  uint64_t netns_inode_;
  uint64_t netns_cookie_;
  uint32_t next_seq_ = 1;
};

// The kernel multicasts one SOCK_DIAG_BY_FAMILY message (inet_diag_msg with tcp_info) for every
// full TCP socket it frees, in the namespace of the subscribed netlink socket. This sees a
// close when it happens instead of at the next dump. What the messages carry (kernel 6.18):
// idiag_state is always TCP_CLOSE (the TIME_WAIT or LAST_ACK history is gone), idiag_inode is
// 0, and after an abort (SO_LINGER 0) the remote port reads 0; the cookie is what identifies
// the socket. TIME_WAIT and request sockets are not full sockets and are never reported.
class SockDiagDestroyListener {
 public:
  // Subscribes to the IPv4 and IPv6 TCP destroy groups inside the namespace at `netns_path`
  // (empty: this process's). Subscribing needs no capability (the kernel's sock_diag netlink
  // is NL_CFG_F_NONROOT_RECV); entering another namespace needs CAP_SYS_ADMIN, as for dumps.
  static absl::StatusOr<std::unique_ptr<SockDiagDestroyListener>> Open(
      const std::string& netns_path);
  ~SockDiagDestroyListener();

  SockDiagDestroyListener(const SockDiagDestroyListener&) = delete;
  SockDiagDestroyListener& operator=(const SockDiagDestroyListener&) = delete;

  // Non-blocking; readable (POLLIN) when notifications are queued, POLLERR after an overrun.
  int fd() const { return fd_; }

  // The sockets destroyed since the last call, oldest first. Never blocks. Overruns and
  // malformed messages are counted and skipped; an error means the socket itself failed.
  absl::StatusOr<std::vector<SocketRecord>> ReadAvailable();

  // Times the kernel found the receive buffer full and dropped notifications (ENOBUFS). The
  // number of notifications lost each time is not known.
  uint64_t overruns() const { return overruns_; }
  // Messages that could not be parsed and were skipped.
  uint64_t malformed() const { return malformed_; }
  uint64_t netns_inode() const { return netns_inode_; }

 private:
  SockDiagDestroyListener(int fd, uint64_t netns_inode);

  int fd_;
  uint64_t netns_inode_;
  uint64_t overruns_ = 0;
  uint64_t malformed_ = 0;
  std::vector<uint8_t> buffer_;
};

}  // namespace tcpscope::agent
