// A complete dump of every TCP socket of one network namespace, as sock_diag records: what a
// snapshot is made of. Two implementations: the netlink sock_diag dump (SockDiagDumper, any
// kernel) and the iter/tcp BPF iterator (IterSocketDumper, the same records at a fraction of
// the cost).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/sock_diag_parser.h"

namespace tcpscope::agent {

class SocketDumper {
 public:
  virtual ~SocketDumper() = default;
  // Every TCP socket of the namespace.
  virtual absl::StatusOr<std::vector<SocketRecord>> Dump() = 0;
  // Inode of the dumped namespace (what `ls -L -i /proc/self/ns/net` shows).
  virtual uint64_t netns_inode() const = 0;
};

// Opens a dumper for the namespace file at `netns_path` (empty: the caller's namespace).
using SocketDumperOpener =
    std::function<absl::StatusOr<std::unique_ptr<SocketDumper>>(const std::string& netns_path)>;

}  // namespace tcpscope::agent
