// Which process holds each TCP socket: what `ss -p` shows, for every socket of the host at once.
// sock_diag records carry the socket's inode (idiag_inode) but not its process; a scan maps
// inodes to processes. Two ways: a BPF iterator over every process's open files (one pass in the
// kernel, no system call per file) and, where BPF iterators cannot load, a walk of /proc/*/fd.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tcpscope::agent {

// The process that holds a socket's file.
struct SocketOwner {
  uint32_t pid = 0;        // thread-group id, as the agent's pid namespace numbers it
  uint64_t cgroup_id = 0;  // cgroup v2 id (0: not known)
  std::string command;     // /proc/PID/comm, printable ASCII

  bool operator==(const SocketOwner&) const = default;
};
using OwnerRef = std::shared_ptr<const SocketOwner>;

// A listening socket's address within the host: its network namespace and local port.
struct ListenerKey {
  uint64_t netns_inode = 0;
  uint16_t port = 0;

  bool operator==(const ListenerKey&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const ListenerKey& key) {
    return H::combine(std::move(h), key.netns_inode, key.port);
  }
};

// One scan's result. Owners are shared: every socket of one process points at one SocketOwner.
struct OwnerTable {
  absl::flat_hash_map<uint64_t, OwnerRef> sockets;  // by socket inode (idiag_inode)
  // Listening sockets by (netns, port); only the BPF scan knows them (the /proc walk sees inodes
  // only: SocketOwnerIndex adds listeners from the sock_diag dumps instead).
  absl::flat_hash_map<ListenerKey, OwnerRef> listeners;
  size_t processes = 0;  // processes that hold at least one socket
};

// When several processes hold one socket (a forked child, SCM_RIGHTS), the owner is the one
// `ss -p` lists first. ss (iproute2 6.1, user_ent_add) pushes every (inode, process) it finds to
// the head of a hash chain while walking /proc in ascending pid order, then prints the chain from
// its head: the LAST process found, the highest pid, comes first. Checked against `ss -tanp` with
// a forked parent (pid 14350) and two children (14395, 14396) sharing a listener and a connection:
// users:(("python3",pid=14396,...),("python3",pid=14395,...),("python3",pid=14350,...)). So: the
// highest pid wins, whatever order a scan visits processes in.
inline bool PreferOwner(const SocketOwner& candidate, const SocketOwner& current) {
  return candidate.pid > current.pid;
}

class SocketOwners {
 public:
  virtual ~SocketOwners() = default;
  // "bpf" or "proc".
  virtual const char* mode() const = 0;
  // Every TCP socket held by a process, now. Sockets no process holds (TIME_WAIT, orphans, ends
  // not yet accepted) are absent.
  virtual absl::StatusOr<OwnerTable> Scan() = 0;
};

// The BPF iterator (agent/bpf/socket_owners.bpf.c; kernel 5.8+ with BTF, CAP_BPF + CAP_PERFMON
// or CAP_SYS_ADMIN): its direct-read variant where the kernel takes it (5.11+), else the
// probe-read one; `compat` forces the latter (tests, benchmark). An error says why neither loads.
absl::StatusOr<std::unique_ptr<SocketOwners>> OpenBpfSocketOwners(bool compat = false);

// The /proc walk: readlink of every /proc/PID/fd/N ("socket:[INODE]"), /proc/PID/comm, and the
// cgroup id as the inode of the process's cgroup v2 directory under the cgroup2 mount (found in
// /proc/self/mountinfo; `cgroup2_mount` overrides, empty: find it). Other users' processes need
// CAP_SYS_PTRACE. Every socket inode is reported, TCP or not (the caller matches TCP inodes).
std::unique_ptr<SocketOwners> NewProcSocketOwners(std::string proc = "/proc",
                                                  std::string cgroup2_mount = "");

enum class OwnersMode { kOff, kAuto, kBpf, kProc };
// "auto", "bpf", "proc" or "off".
absl::StatusOr<OwnersMode> ParseOwnersMode(const std::string& text);

// The scanner `mode` asks for: auto is the BPF iterator, else the /proc walk (`*fallback_reason`
// says why BPF was not used); null for off. An error only when bpf was asked for and cannot load.
absl::StatusOr<std::unique_ptr<SocketOwners>> OpenSocketOwners(OwnersMode mode,
                                                               std::string* fallback_reason);

// Decodes the iterator's output (an array of struct tcpscope_socket_owner) into `table`: owners
// by inode (PreferOwner when several processes hold one), listeners by (netns, port). A trailing
// partial record is an error; records already decoded stay.
absl::Status DecodeOwnerRecords(absl::Span<const uint8_t> bytes, OwnerTable* table);

// The cgroup v2 path of a /proc/PID/cgroup file's "0::" line ("0::/a/b" -> "/a/b"), or empty.
std::string CgroupV2Path(absl::string_view proc_pid_cgroup);

// The mount point of the cgroup v2 hierarchy in a /proc/self/mountinfo text, or empty.
std::string Cgroup2MountPoint(absl::string_view mountinfo);

}  // namespace tcpscope::agent
