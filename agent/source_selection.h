// Chooses the agent's event source: eBPF where it loads, else sock_diag polling with
// socket-destroy notifications (the fallback is logged once, with the reason); or the replay of
// a ring capture.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/agent_metrics.h"
#include "agent/event_source.h"
#include "agent/socket_owner_index.h"

namespace tcpscope::agent {

enum class SourceChoice { kAuto, kEbpf, kSockDiag, kReplay };

struct SourceSpec {
  SourceChoice choice = SourceChoice::kAuto;
  std::string replay_path;  // kReplay: the capture to play
};

// "auto", "ebpf", "sockdiag" or "replay:FILE".
absl::StatusOr<SourceSpec> ParseSourceSpec(const std::string& text);

// How the eBPF source's snapshots dump the sockets: the iter/tcp BPF iterator (bpf), the
// sock_diag netlink dump (sockdiag), or auto (the iterator where it loads, else sock_diag).
enum class SnapshotDumpChoice { kAuto, kBpf, kSockDiag };

// "auto", "bpf" or "sockdiag".
absl::StatusOr<SnapshotDumpChoice> ParseSnapshotDumpChoice(const std::string& text);

struct SourceOptions {
  SourceChoice choice = SourceChoice::kAuto;
  std::string replay_path;
  // Non-empty: the eBPF source also writes every raw ring record here (agent/ring_capture.h).
  std::string ring_capture_path;
  // Namespace file to watch; empty: the eBPF source watches every namespace (snapshots are of
  // the agent's own), the sock_diag source the agent's own.
  std::string netns_path;
  absl::Duration snapshot_interval = absl::Seconds(10);
  SnapshotDumpChoice snapshot_dump = SnapshotDumpChoice::kAuto;
  // The eBPF source's sizes and test-only faults (EbpfOptions).
  uint32_t ring_buffer_bytes = 2 << 20;
  uint32_t max_tracked_sockets = 262144;
  int forced_ring_failures = 0;
  // Names the process and workload of ends and events (both may be null); must outlive the
  // source.
  Attribution attribution;
};

struct OpenedSource {
  std::unique_ptr<EventSource> source;
  // SO_NETNS_COOKIE of the namespace at netns_path (0 without one): the agent's boot id.
  uint64_t netns_cookie = 0;
};

absl::StatusOr<OpenedSource> OpenEventSource(const SourceOptions& options, AgentMetrics* metrics);

}  // namespace tcpscope::agent
