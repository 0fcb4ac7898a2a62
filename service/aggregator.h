// Per-host state of the service: which agent is connected, what it has applied (for exactly-once
// counting across resends), its latest snapshot with at-risk classification, its metric series
// and summary totals; hosts disconnected longer than the expiry are forgotten. Snapshots and
// closes also feed the pairing of connection ends across hosts (ConnectionPairs).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/at_risk.h"
#include "service/connection_pairs.h"
#include "service/event_log.h"
#include "service/service_metrics.h"
#include "service/workload_metrics.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::service {

class HostState;

struct AggregatorOptions {
  AtRiskPolicy at_risk;
  // A disconnected host's series, totals and dedupe state are removed this long after its
  // last message. Longer than any agent reconnect backoff, or a resend could count twice.
  absl::Duration host_expiry = absl::Minutes(10);
  HalfOpenPolicy half_open;
  // Per host, the pods (a container outside Kubernetes counts as one) and server ports with
  // series of their own; the rest are summed into pod="other" and port="other". A pod or port
  // without ends and events for host_expiry frees its slot.
  int max_pods_per_host = 100;
  int max_ports_per_host = 50;
};

class Aggregator {
 public:
  Aggregator(ServiceMetrics* metrics, EventLog* log, AggregatorOptions options = {})
      : metrics_(metrics), log_(log), options_(options), pairs_(metrics, log, options.half_open) {}
  ~Aggregator();

  // Registers an agent stream for hello.host_name(). Fails with ALREADY_EXISTS while another
  // stream holds the host. `last_applied_seq` is what the agent need not resend.
  absl::StatusOr<std::shared_ptr<HostState>> Connect(const v1::Hello& hello, absl::Time now,
                                                     uint64_t* last_applied_seq);
  // Applies a validated batch once and publishes its events: returns false (and changes
  // nothing) for a batch at or below the applied sequence number, i.e. a resend. The batch is
  // shared, not copied, with the host's snapshot and the event history.
  bool Apply(HostState& host, std::shared_ptr<v1::Batch> batch, absl::Time now);
  // The stream ended: the host is down, its snapshot gauges go.
  void Disconnect(HostState& host, absl::Time now);
  // Forgets hosts disconnected for longer than the expiry; returns their names.
  std::vector<std::string> ExpireHosts(absl::Time now);
  // Hosts silent for longer than the half-open policy's peer_down_after are down for their
  // peers' ends (called periodically, like ExpireHosts).
  void CheckSilentHosts(absl::Time now);
  ConnectionPairs::Stats PairIndexSize() const { return pairs_.stats(/*count_pairs=*/false); }

  std::vector<v1::Agent> Agents() const;
  // The request must have passed ConnectionMatcher::Create.
  v1::ListConnectionsResponse Connections(const v1::ListConnectionsRequest& request,
                                          absl::Time now) const;
  // Empty `host`: every host, and the fleet total.
  v1::SummaryResponse Summary(const std::string& host) const;

 private:
  std::vector<std::shared_ptr<HostState>> Hosts(const std::string& only) const;

  ServiceMetrics* const metrics_;
  EventLog* const log_;
  const AggregatorOptions options_;
  ConnectionPairs pairs_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<HostState>> hosts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tcpscope::service
