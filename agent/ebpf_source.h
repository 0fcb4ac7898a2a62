// The eBPF event source: loads tcpscope.bpf.c (BTF tracepoints, CO-RE), consumes its ring
// buffer on one thread, and takes sock_diag snapshots on another. Events are exact; the
// snapshots give TCP and keepalive state of every current connection.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/agent_metrics.h"
#include "agent/event_source.h"
#include "agent/fin_times.h"
#include "agent/snapshot_collector.h"
#include "agent/socket_owner_index.h"

struct tcpscope_bpf;
struct ring_buffer;

namespace tcpscope::agent {

struct EbpfOptions {
  // Network namespace inode to watch; 0: every namespace of the kernel.
  uint32_t netns_inode = 0;
  absl::Duration snapshot_interval = absl::Seconds(10);
  uint32_t ring_buffer_bytes = 8 << 20;
  uint32_t max_tracked_sockets = 262144;
};

class EbpfSource : public EventSource {
 public:
  // Checks support, loads and attaches the program. An error says why eBPF cannot be used here
  // (no BTF, no ring buffer, not permitted, verifier), for the fallback to report.
  // `attribution` names the process (for events whose kernel context has none) and the
  // workload of every event; the snapshots' collector names its ends itself.
  static absl::StatusOr<std::unique_ptr<EbpfSource>> Open(
      const EbpfOptions& options, std::unique_ptr<SnapshotCollector> snapshots,
      AgentMetrics* metrics, Attribution attribution = {});
  ~EbpfSource() override;

  v1::SourceKind kind() const override { return v1::SOURCE_KIND_EBPF; }
  std::vector<std::string> capabilities() const override;
  absl::Status Run(EventSink* sink) override;
  void Stop() override;

 private:
  EbpfSource(const EbpfOptions& options, tcpscope_bpf* skeleton,
             std::unique_ptr<SnapshotCollector> snapshots, AgentMetrics* metrics,
             Attribution attribution);
  static int OnRecord(void* self, void* data, size_t size);
  void ConsumeRing(EventSink* sink);
  // Starts the next batch on a new arena.
  void StartBatch();
  void Flush(EventSink* sink);
  uint64_t KernelDrops(int index) const;
  v1::Role GuessRole(const v1::Event& event);

  const EbpfOptions options_;
  tcpscope_bpf* skeleton_;
  std::unique_ptr<SnapshotCollector> snapshots_;
  AgentMetrics* metrics_;
  const Attribution attribution_;
  std::atomic<int64_t> monotonic_to_unix_ns_;
  FinTimes fin_times_;  // noted by the consumer thread, applied to each snapshot

  // Consumer thread only: events decoded straight into the next batch, on its own arena.
  ArenaBatch pending_;
  v1::Batch* pending_batch_ = nullptr;  // pending_.message's
  uint64_t decode_errors_ = 0;

  absl::Mutex roles_mu_;
  // Roles of connections that existed before the program attached, from the latest dump.
  absl::flat_hash_map<uint64_t, v1::Role> roles_ ABSL_GUARDED_BY(roles_mu_);
  // Owners of the latest snapshot's ends (sticky per cookie), for events without a process.
  std::shared_ptr<const OwnersByCookie> owners_ ABSL_GUARDED_BY(roles_mu_);

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tcpscope::agent
