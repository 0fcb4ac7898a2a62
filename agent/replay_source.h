// The replay source: plays a ring capture (--record_ring, agent/ring_capture.h) through the same
// record handling as the eBPF source (agent/ring_records.h), on a clock that follows the
// records' own times, so agent logic is exercised without a kernel, root or eBPF. Events keep
// their recorded times; there are no snapshots. After the last record it publishes what is
// left and waits for Stop(), like a live source.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/agent_metrics.h"
#include "agent/event_source.h"
#include "agent/ring_capture.h"

namespace tcpscope::agent {

class ReplaySource : public EventSource {
 public:
  static absl::StatusOr<std::unique_ptr<ReplaySource>> Open(const std::string& path,
                                                            AgentMetrics* metrics);

  v1::SourceKind kind() const override { return v1::SOURCE_KIND_REPLAY; }
  std::vector<std::string> capabilities() const override;
  // An error for a corrupt or truncated capture (what came before it is published).
  absl::Status Run(EventSink* sink) override;
  void Stop() override;

 private:
  ReplaySource(std::unique_ptr<RingCaptureReader> reader, std::string path, AgentMetrics* metrics)
      : reader_(std::move(reader)), path_(std::move(path)), metrics_(metrics) {}

  std::unique_ptr<RingCaptureReader> reader_;
  const std::string path_;
  AgentMetrics* const metrics_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tcpscope::agent
