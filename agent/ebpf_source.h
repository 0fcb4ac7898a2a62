// The eBPF event source: loads tcpscope.bpf.c (BTF tracepoints, CO-RE), consumes its ring
// buffer on one thread, and takes sock_diag snapshots on another. Events are exact; the
// snapshots give TCP and keepalive state of every current connection.
//
// Never silent: a ring that cannot be opened or read makes the source unhealthy (logged once,
// tcpscope_agent_source_healthy 0, told to the service in every batch) while the consumer
// re-opens it with backoff; after several failures in a row Run() returns the error and the
// agent exits non-zero, for its supervisor to restart it (and --source=auto to choose again).
#pragma once

#include <array>
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
#include "agent/bpf/tcpscope_event.h"
#include "agent/clock.h"
#include "agent/event_source.h"
#include "agent/fin_times.h"
#include "agent/known_roles.h"
#include "agent/ring_capture.h"
#include "agent/ring_records.h"
#include "agent/snapshot_collector.h"
#include "agent/socket_owner_index.h"
#include "common/allocator.h"

struct tcpscope_bpf;
struct ring_buffer;

namespace tcpscope::agent {

struct EbpfOptions {
  // Network namespace inode to watch; 0: every namespace of the kernel.
  uint32_t netns_inode = 0;
  absl::Duration snapshot_interval = absl::Seconds(10);
  uint32_t ring_buffer_bytes = 2 << 20;
  uint32_t max_tracked_sockets = 262144;
  // Test only (TCPSCOPE_TEST_RING_FAILURES): this many ring attempts in a row fail as a poll
  // error would, right after the ring is opened.
  int forced_ring_failures = 0;
  // Non-empty: every raw ring record is also written to this file (agent/ring_capture.h).
  std::string ring_capture_path;
  const Clock* clock = RealClock::Get();
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
             Attribution attribution, std::unique_ptr<RingCaptureWriter> capture);
  static int OnRecord(void* self, void* data, size_t size);
  // Reads the ring, re-opening it after a failure; ends the source when it keeps failing.
  void ConsumeRing(EventSink* sink);
  // One attempt: opens the ring and reads it until Stop() (OK) or a failure. Once the ring is
  // open, sets `opened` and, if not `healthy`, reports the recovery and sets it.
  absl::Status ReadRing(EventSink* sink, bool* healthy, absl::Time* opened);
  void Flush(EventSink* sink);
  uint64_t KernelDrops(int index) const;
  // What the program noted of sockets coming into being, for the snapshot about to be taken.
  SocketBirths Births() const;
  // Adds what the kernel side dropped since the last call to the losses.
  void ReportKernelDrops(EventSink* sink);
  void SetHealth(EventSink* sink, bool healthy, const std::string& problem);
  // The role the latest dump knows for an end the program did not see open.
  v1::Role SnapshotRole(uint64_t connection_id);

  const EbpfOptions options_;
  const Clock* const clock_;
  tcpscope_bpf* skeleton_;
  std::unique_ptr<SnapshotCollector> snapshots_;
  AgentMetrics* metrics_;
  const Attribution attribution_;
  std::atomic<int64_t> monotonic_to_unix_ns_;
  FinTimes fin_times_;              // noted by the consumer thread, applied to each snapshot
  KnownRoles known_roles_;          // likewise
  SnapshotMemory snapshot_memory_;  // the snapshot thread's

  // The consumer thread's batches and the snapshots both report the kernel's drops.
  absl::Mutex drops_mu_;
  std::array<uint64_t, TCPSCOPE_DROP_COUNT> reported_drops_ ABSL_GUARDED_BY(drops_mu_){};

  // Consumer thread only: events decoded straight into the next batch.
  RingRecords records_;
  EventSink* reading_for_ = nullptr;  // where OnRecord flushes a full batch
  int forced_failures_left_;
  const uint64_t attached_ns_;  // monotonic
  const int stop_fd_;           // an eventfd: Stop() wakes the consumer blocked on the ring

  absl::Mutex roles_mu_;
  // Known roles of connections that existed before the program attached, from the latest dump.
  absl::flat_hash_map<uint64_t, v1::Role> roles_ ABSL_GUARDED_BY(roles_mu_);
  // Owners of the latest snapshot's ends (sticky per cookie), for events without a process.
  std::shared_ptr<const OwnersByCookie> owners_ ABSL_GUARDED_BY(roles_mu_);

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);  // the consumer gave up: Run() returns it
};

}  // namespace tcpscope::agent
