// The service's metrics: the SPEC families of each host, kept as plain values by the host
// (HostMetrics, WorkloadMetrics) and written at scrape time by FleetMetrics, and the service's
// own health series on prometheus-cpp (a few dozen, not per host).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "service/fleet_metrics.h"
#include "service/host_summary.h"
#include "tcpscope/v1/events.pb.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::service {

class ServiceMetrics;

// The host-level series of one host. Event counters appear once something happened; snapshot
// gauges exist from SetSnapshot to ClearSnapshot, half-open gauges from SetHalfOpen to
// ClearHalfOpen; every series of the host goes when it is destroyed.
//
// Every value is a relaxed atomic: the host's stream (events, snapshots) and the pairing index
// (half-open ends, from another thread) write without a lock, and a scrape reads without one.
// Each event is counted once, for the series and for the Summary call (totals()).
class HostMetrics {
 public:
  using AtRiskCounts = std::array<uint32_t, v1::AtRiskReason_ARRAYSIZE>;
  using HalfOpenCounts = std::array<uint32_t, v1::HalfOpenReason_ARRAYSIZE>;

  HostMetrics(ServiceMetrics* metrics, std::string host);
  ~HostMetrics();  // removes every series of the host

  HostMetrics(const HostMetrics&) = delete;
  HostMetrics& operator=(const HostMetrics&) = delete;

  // Counts one event into the matching series; the event must have passed validation.
  // Called by one thread at a time (the host's stream).
  void CountEvent(const v1::Event& event);
  void AddEvents(uint64_t count);
  // Raises the lost-events counters to the agent's cumulative values (the host's stream).
  void SetLosses(const v1::LossCounters& cumulative);
  void SetUp(bool up);
  // Sets the snapshot gauges (connections by state, keepalive, at-risk) to `counts`.
  void SetSnapshot(const SnapshotCounts& counts);
  // Sets tcpscope_connections_at_risk alone (index 0 unused); SetSnapshot sets it too.
  void SetAtRisk(const AtRiskCounts& counts);
  // Drops the snapshot and at-risk gauges (host gone).
  void ClearSnapshot();
  // Sets tcpscope_connections_half_open (index 0 unused); the pairing index owns the counts.
  void SetHalfOpen(const HalfOpenCounts& counts);
  // Drops the half-open gauges (the host's agent disconnected).
  void ClearHalfOpen();
  // One more half-open end found, for tcpscope_half_open_detected_total.
  void CountHalfOpenDetected(v1::HalfOpenReason reason);

  // What the Summary call reports of the host's events, from the same counts as the series.
  EventTotals totals() const;

  class Series;  // the values, shared with scrapes in progress

 private:
  FleetMetrics* const fleet_;
  const std::shared_ptr<Series> series_;
  v1::LossCounters losses_seen_;  // the host's stream's own
};

class ServiceMetrics {
 private:
  // First, so the families below are registered in it.
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<FleetMetrics> fleet_;

 public:
  ServiceMetrics();

  // The service's own series.
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  // The SPEC families of every host.
  const std::shared_ptr<FleetMetrics>& fleet() const { return fleet_; }
  // What /metrics serves, in order: the SPEC families, then the service's own.
  std::vector<std::weak_ptr<prometheus::Collectable>> collectables() const {
    return {fleet_, registry_};
  }
  // Every family collected, in the same order (tests).
  std::vector<prometheus::MetricFamily> Collect() const;

  // The service's own health.
  prometheus::Gauge& streams;
  prometheus::Counter& batches_applied;
  prometheus::Counter& batches_duplicate;
  prometheus::Gauge& watchers;
  prometheus::Counter& watch_events_missed;
  prometheus::Gauge& hosts;
  prometheus::Counter& hosts_expired;
  prometheus::Gauge& history_events;
  prometheus::Gauge& pair_index_entries;
  prometheus::Gauge& pair_index_ends;
  // With replicas.
  prometheus::Counter& replica_forwarded_ends;
  prometheus::Counter& replica_received_ends;
  prometheus::Gauge& replica_remote_hosts;
  prometheus::Family<prometheus::Counter>& replica_fragments_ignored;
  // Refused messages by reason (a fixed, small set of reasons chosen by the service).
  prometheus::Counter& Rejected(const std::string& reason);

 private:
  prometheus::Family<prometheus::Counter>& rejected_;
};

}  // namespace tcpscope::service
