// The sock_diag event source: dumps the namespace every interval and diffs the dumps with a
// ConnectionTracker. Used when eBPF is unavailable, and for snapshots.
#pragma once

#include <memory>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/agent_metrics.h"
#include "agent/connection_tracker.h"
#include "agent/event_source.h"
#include "agent/sock_diag_source.h"

namespace tcpscope::agent {

class SockDiagPoller : public EventSource {
 public:
  SockDiagPoller(std::unique_ptr<SockDiagDumper> dumper, absl::Duration interval,
                 AgentMetrics* metrics);

  v1::SourceKind kind() const override { return v1::SOURCE_KIND_SOCK_DIAG; }
  std::vector<std::string> capabilities() const override;
  absl::Status Run(EventSink* sink) override;
  void Stop() override;

 private:
  std::unique_ptr<SockDiagDumper> dumper_;
  ConnectionTracker tracker_;
  absl::Duration interval_;
  AgentMetrics* metrics_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tcpscope::agent
