// The sock_diag event source: dumps the namespace every interval and diffs the dumps with a
// ConnectionTracker; with a destroy listener, closes are reported as they happen in between.
// Used when eBPF is unavailable, and for snapshots.
#pragma once

#include <atomic>
#include <memory>

#include "absl/time/time.h"
#include "agent/agent_metrics.h"
#include "agent/clock.h"
#include "agent/connection_tracker.h"
#include "agent/event_source.h"
#include "agent/sock_diag_netlink.h"
#include "agent/socket_owner_index.h"
#include "common/allocator.h"

namespace tcpscope::agent {

class SockDiagSource : public EventSource {
 public:
  // `destroy_listener` may be null: closes then wait for the next dump. `attribution` names
  // the process and workload of every end and event (by the tracker's sticky owners). `clock`
  // dates dumps and events and paces the dumps.
  SockDiagSource(std::unique_ptr<SockDiagDumper> dumper, absl::Duration interval,
                 AgentMetrics* metrics,
                 std::unique_ptr<SockDiagDestroyListener> destroy_listener = nullptr,
                 Attribution attribution = {}, const Clock* clock = RealClock::Get());
  ~SockDiagSource() override;

  v1::SourceKind kind() const override { return v1::SOURCE_KIND_SOCK_DIAG; }
  std::vector<std::string> capabilities() const override;
  absl::Status Run(EventSink* sink) override;
  void Stop() override;

 private:
  // Handles destroy notifications until `deadline`; returns false when Stop() was called.
  bool WaitUntil(absl::Time deadline, EventSink* sink);
  void PublishDestroyed(EventSink* sink);

  std::unique_ptr<SockDiagDumper> dumper_;
  std::unique_ptr<SockDiagDestroyListener> destroy_listener_;  // reset if it breaks
  const bool close_realtime_;
  Attribution attribution_;
  ConnectionTracker tracker_;
  absl::Duration interval_;
  AgentMetrics* metrics_;
  const Clock* const clock_;
  std::atomic<bool> stopping_{false};
  int wake_fd_;  // eventfd that Stop() signals; -1 if none could be made (then poll in slices)
  uint64_t reported_overruns_ = 0;
  SnapshotMemory snapshot_memory_;
};

}  // namespace tcpscope::agent
