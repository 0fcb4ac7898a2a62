// Takes a complete dump of every TCP socket (IPv4 and IPv6, all states) of one network
// namespace over NETLINK_SOCK_DIAG, with tcp_info and timer information.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/sock_diag_parser.h"

namespace tcpscope::agent {

class SockDiagDumper {
 public:
  // Opens the netlink socket inside the network namespace at `netns_path` (e.g.
  // /run/netns/NAME or /proc/PID/ns/net); empty means this process's namespace. The socket stays
  // bound to that namespace for its whole life.
  static absl::StatusOr<std::unique_ptr<SockDiagDumper>> Open(const std::string& netns_path);
  ~SockDiagDumper();

  SockDiagDumper(const SockDiagDumper&) = delete;
  SockDiagDumper& operator=(const SockDiagDumper&) = delete;

  // Every TCP socket of the namespace, IPv4 then IPv6.
  absl::StatusOr<std::vector<SocketRecord>> Dump();

  // Inode of the watched namespace (what `ls -L -i /proc/self/ns/net` shows).
  uint64_t netns_inode() const { return netns_inode_; }

 private:
  SockDiagDumper(int fd, uint64_t netns_inode) : fd_(fd), netns_inode_(netns_inode) {}
  absl::Status DumpFamily(uint8_t family, std::vector<SocketRecord>* out);

  int fd_;
  uint64_t netns_inode_;
  uint32_t next_seq_ = 1;
};

}  // namespace tcpscope::agent
