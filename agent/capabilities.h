// The Linux capabilities the agent needs, checked at start and kept alone: every other
// capability is dropped from the effective, permitted, inheritable and bounding sets before any
// thread starts, so no thread of the agent ever holds more.
//
//   CAP_BPF, CAP_PERFMON  load and attach the eBPF program, create its maps (eBPF source); load
//                         and run the socket-owner iterator (--socket_owners=bpf or auto)
//   CAP_SYSLOG            read tcp_keepalive_timer's address in /proc/kallsyms; without it the
//                         eBPF source cannot tell keepalive probes and timeouts
//   CAP_SYS_ADMIN         setns() into other network namespaces for their snapshots
//   CAP_SYS_PTRACE        open /proc/PID/ns/net of other users' processes; read their
//                         /proc/PID/fd for the socket-owner /proc walk (--socket_owners=proc,
//                         or auto where the iterator cannot load): without it, the sockets of
//                         other users' processes have no owner
//   CAP_NET_ADMIN         join sock_diag's socket-destroy groups; enlarge netlink buffers
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace tcpscope::agent {

struct Capability {
  int number;        // CAP_*
  const char* name;  // "CAP_BPF"
  const char* why;
};

// What the agent may use; everything else is dropped.
const std::vector<Capability>& NeededCapabilities();

// Bit set of the calling thread's effective capabilities (/proc/self/status, CapEff).
uint64_t EffectiveCapabilities();

// Whether `effective` allows loading eBPF programs: CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN.
bool CanLoadBpf(uint64_t effective);

// The needed capabilities this process lacks, as "CAP_X (why)" lines. CAP_BPF and CAP_PERFMON
// are not missing where CAP_SYS_ADMIN is effective.
std::vector<std::string> MissingCapabilities(uint64_t effective);

// Drops every capability but the needed ones from all sets of the calling thread (and, through
// the bounding set, of anything it execs). Call before starting threads: capabilities are per
// thread. A process without CAP_SETPCAP keeps its bounding set; that is not an error.
absl::Status DropUnneededCapabilities();

}  // namespace tcpscope::agent
