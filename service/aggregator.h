// Per-host state of the service: which agent is connected, what it has applied (for exactly-once
// counting across resends), its latest snapshot, and its metric series.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/event_hub.h"
#include "service/service_metrics.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::service {

class HostState;

class Aggregator {
 public:
  Aggregator(ServiceMetrics* metrics, EventHub* hub) : metrics_(metrics), hub_(hub) {}
  ~Aggregator();

  // Registers an agent stream for hello.host_name(). Fails with ALREADY_EXISTS while another
  // stream holds the host. `last_applied_seq` is what the agent need not resend.
  absl::StatusOr<std::shared_ptr<HostState>> Connect(const v1::Hello& hello, absl::Time now,
                                                     uint64_t* last_applied_seq);
  // Applies a validated batch once: returns false (and changes nothing) for a batch at or below
  // the applied sequence number, i.e. a resend.
  bool Apply(HostState& host, const v1::Batch& batch, absl::Time now);
  // The stream ended: the host is down, its snapshot gauges go.
  void Disconnect(HostState& host, absl::Time now);

  std::vector<v1::Agent> Agents() const;
  std::vector<v1::HostConnection> Connections(const v1::ListConnectionsRequest& request) const;

 private:
  ServiceMetrics* const metrics_;
  EventHub* const hub_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<HostState>> hosts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tcpscope::service
