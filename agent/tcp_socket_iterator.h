// Dumps of every TCP socket of a network namespace by the iter/tcp BPF iterator
// (bpf/tcp_sockets.bpf.c): the records a sock_diag dump with tcp_info gives, computed in the
// kernel from the same fields, without a netlink message per socket. An iterator walks the
// namespace of the thread that creates it, so a dump of another namespace creates its iterator
// on a short-lived thread that entered that namespace (setns, CAP_SYS_ADMIN, as for sock_diag).
//
// What it sees differs from the sock_diag dump in one way: sockets that are only bound
// (bind() without listen() or connect(), state CLOSE) are in no TCP hash table the iterator
// walks, while sock_diag (6.5+) lists them from the bind hash. Snapshots ignore such sockets
// (a CLOSE socket only matters as the end of a connection already tracked, which is never in
// that state while it is still in the hash tables).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "agent/socket_dumper.h"

struct tcp_sockets_bpf;
struct bpf_link;

namespace tcpscope::agent {

// The loaded iterator program, shared by the dumpers of every namespace.
class TcpSocketIterator {
 public:
  // Loads the program and dumps this namespace once (a kernel may load an iterator and still
  // refuse to run it). An error says why: no BTF, kernel older than 5.14, not permitted,
  // no CONFIG_HZ in the kernel config libbpf can read.
  static absl::StatusOr<std::shared_ptr<TcpSocketIterator>> Load();
  ~TcpSocketIterator();

  TcpSocketIterator(const TcpSocketIterator&) = delete;
  TcpSocketIterator& operator=(const TcpSocketIterator&) = delete;

  // Every TCP socket of the namespace open at `netns_fd`; -1: the calling thread's. `expected`:
  // about how many there will be (the last dump's count), so the records are not moved as they
  // grow.
  absl::StatusOr<std::vector<SocketRecord>> Dump(int netns_fd, size_t expected = 0);

 private:
  TcpSocketIterator(tcp_sockets_bpf* skeleton, bpf_link* link) : skeleton_(skeleton), link_(link) {}

  tcp_sockets_bpf* skeleton_;
  bpf_link* link_;
};

// A SocketDumper over the iterator for one namespace.
class IterSocketDumper : public SocketDumper {
 public:
  // `netns_path`: a namespace file (/proc/PID/ns/net, /run/netns/NAME); empty: ours.
  static absl::StatusOr<std::unique_ptr<SocketDumper>> Open(
      std::shared_ptr<TcpSocketIterator> iterator, const std::string& netns_path);
  ~IterSocketDumper() override;

  absl::StatusOr<std::vector<SocketRecord>> Dump() override;
  uint64_t netns_inode() const override { return netns_inode_; }

 private:
  IterSocketDumper(std::shared_ptr<TcpSocketIterator> iterator, int netns_fd, uint64_t inode)
      : iterator_(std::move(iterator)), netns_fd_(netns_fd), netns_inode_(inode) {}

  std::shared_ptr<TcpSocketIterator> iterator_;
  int netns_fd_;  // -1: the agent's own namespace, no setns needed
  uint64_t netns_inode_;
  size_t last_count_ = 0;  // sockets in the last dump
};

// Appends the sockets of iterator output `bytes` (whole tcpscope_tcp_socket records) to `out`.
absl::Status DecodeTcpSocketRecords(absl::Span<const uint8_t> bytes,
                                    std::vector<SocketRecord>* out);

}  // namespace tcpscope::agent
