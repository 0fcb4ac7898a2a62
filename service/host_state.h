// What the service holds of one host: its agent's stream state (hello, applied sequence number
// for exactly-once counting, losses), its series (with the event totals), its latest view (compact
// snapshot) and its record in the pair index. Written by the host's own stream (Aggregator) and,
// for half-open series, by the reporter; read by the queries (FleetQueries).
//
// Locks: `report_mu` (the reporter's, taken first), then `mu`; the pair index's shard locks are
// never taken under `mu`. A host homed on another replica is a RemoteHost here.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/host_summary.h"
#include "service/host_view.h"
#include "service/pair_index.h"
#include "service/service_metrics.h"
#include "service/workload_metrics.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/replica.pb.h"

namespace tcpscope::service {

struct HostState {
  HostState(ServiceMetrics* metrics, std::shared_ptr<PairHost> pair_host, WorkloadLimits limits)
      : pair(std::move(pair_host)),
        name(std::make_shared<const std::string>(pair->name)),
        workloads(std::make_shared<WorkloadMetrics>(metrics, pair->name, limits)),
        metrics(std::make_unique<HostMetrics>(metrics, pair->name)) {}

  const std::string& host() const { return *name; }

  const std::shared_ptr<PairHost> pair;
  const std::shared_ptr<const std::string> name;     // shared with published batches
  const std::shared_ptr<WorkloadMetrics> workloads;  // its own lock, a leaf

  mutable absl::Mutex mu;
  bool connected ABSL_GUARDED_BY(mu) = false;
  v1::Hello hello ABSL_GUARDED_BY(mu);
  absl::Time connected_since ABSL_GUARDED_BY(mu);
  absl::Time last_seen ABSL_GUARDED_BY(mu);
  uint64_t last_applied_seq ABSL_GUARDED_BY(mu) = 0;
  v1::LossCounters losses ABSL_GUARDED_BY(mu);
  v1::SourceHealth source_health ABSL_GUARDED_BY(mu);  // as the latest batch reported it
  // The latest view: kept across a disconnect (the pair index judges the next one against
  // it), listed only once a snapshot came on the current stream (`view_current`).
  std::shared_ptr<const HostView> view ABSL_GUARDED_BY(mu);
  bool view_current ABSL_GUARDED_BY(mu) = false;
  SnapshotCounts snapshot_counts ABSL_GUARDED_BY(mu);
  // Its series and event totals; null once the host expired (a query may still hold it).
  std::unique_ptr<HostMetrics> metrics ABSL_GUARDED_BY(mu);
  // The stream's own: the origins its views share.
  OriginTable origins;

  // The reporter's: the workload series each half-open end of the host is counted in.
  absl::Mutex report_mu ABSL_ACQUIRED_BEFORE(mu);
  std::vector<std::pair<std::string, v1::HalfOpenReason>> half_open_series
      ABSL_GUARDED_BY(report_mu);
  // With replicas: the host's half-open ends in tuples other replicas own, as each owner last
  // reported them, and their counts by reason (read by queries without the lock).
  absl::flat_hash_map<std::string, std::vector<v1::HalfOpenEnd>> remote_half_open
      ABSL_GUARDED_BY(report_mu);
  std::array<std::atomic<uint32_t>, v1::HalfOpenReason_ARRAYSIZE> remote_half_open_counts{};

  // The host's half-open ends by reason: in this replica's tuples and in the others'.
  std::array<uint32_t, v1::HalfOpenReason_ARRAYSIZE> HalfOpenCounts() const {
    std::array<uint32_t, v1::HalfOpenReason_ARRAYSIZE> counts = pair->HalfOpenCounts();
    for (size_t i = 1; i < counts.size(); ++i) counts[i] += remote_half_open_counts[i].load();
    return counts;
  }
};

// With replicas: a host homed on another replica, as this one holds it: the ends of its
// snapshots in the tuples this replica owns, for pairing and listings. Written by the Exchange
// stream of its home, one message at a time (`apply_mu` keeps a host's calls to the pair index
// in order should two replicas claim it at once, while an agent moves).
struct RemoteHost {
  RemoteHost(std::shared_ptr<PairHost> pair_host, std::string home_replica)
      : pair(std::move(pair_host)), home(std::move(home_replica)) {}

  const std::shared_ptr<PairHost> pair;
  absl::Mutex apply_mu ABSL_ACQUIRED_BEFORE(mu);
  OriginTable origins ABSL_GUARDED_BY(apply_mu);
  mutable absl::Mutex mu;
  std::string home ABSL_GUARDED_BY(mu);  // the replica its fragments come from
  std::shared_ptr<const HostView> view ABSL_GUARDED_BY(mu);
  uint64_t round ABSL_GUARDED_BY(mu) = 0;
};

}  // namespace tcpscope::service
