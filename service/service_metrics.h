// The service's Prometheus series: the SPEC metric families, resolved per host into handles
// once (HostMetrics), plus the service's own health counters.
#pragma once

#include <array>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "tcpscope/v1/events.pb.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::service {

class ServiceMetrics;

// The series of one host. Event counters are created on first use and cached, so a series
// exists only once something happened; snapshot gauges exist while the host is connected.
class HostMetrics {
 public:
  HostMetrics(ServiceMetrics* families, std::string host);
  ~HostMetrics();  // removes every series of the host

  HostMetrics(const HostMetrics&) = delete;
  HostMetrics& operator=(const HostMetrics&) = delete;

  // Counts one event into the matching series; the event must have passed validation.
  void CountEvent(const v1::Event& event);
  void AddEvents(uint64_t count);
  // Raises the lost-events counters to the agent's cumulative values.
  void SetLosses(const v1::LossCounters& cumulative);
  void SetUp(bool up);
  // Replaces the snapshot gauges with the counts of `snapshot`.
  void SetSnapshot(const v1::Snapshot& snapshot);
  // Sets tcpscope_connections_at_risk, indexed by v1::AtRiskReason (index 0 unused).
  void SetAtRisk(const std::array<uint32_t, 4>& counts);
  // Drops the snapshot and at-risk gauges (host gone).
  void ClearSnapshot();
  // Sets tcpscope_connections_half_open, indexed by v1::HalfOpenReason (index 0 unused).
  void SetHalfOpen(const std::array<uint32_t, v1::HalfOpenReason_ARRAYSIZE>& counts);
  // Drops the half-open gauges (host disconnected).
  void ClearHalfOpen();
  // One more half-open end found (tcpscope_half_open_detected_total).
  void CountHalfOpenDetected(v1::HalfOpenReason reason);

 private:
  static constexpr int kRoles = 3;
  static constexpr int kInitiators = 5;
  static constexpr int kReasons = 8;
  static constexpr int kFailureReasons = 6;
  static constexpr int kStates = 12;

  prometheus::Counter& Handshakes(v1::Role role);
  prometheus::Histogram& HandshakeDuration(v1::Role role);
  prometheus::Counter& Closes(v1::Role role, v1::CloseInitiator initiator, v1::CloseReason reason);
  prometheus::Histogram& Lifetime(v1::Role role);
  prometheus::Counter& Failures(v1::HandshakeFailureReason reason);
  prometheus::Counter& Timeouts(v1::Role role);

  ServiceMetrics* const families_;
  const std::string host_;
  prometheus::Gauge& up_;
  prometheus::Counter& events_;
  std::array<prometheus::Counter*, 3> lost_{};
  v1::LossCounters losses_seen_;
  prometheus::Counter* keepalive_probes_ = nullptr;
  std::array<prometheus::Counter*, kRoles> handshakes_{};
  std::array<prometheus::Histogram*, kRoles> handshake_duration_{};
  std::array<prometheus::Counter*, kRoles * kInitiators * kReasons> closes_{};
  std::array<prometheus::Histogram*, kRoles> lifetime_{};
  std::array<prometheus::Counter*, kFailureReasons> failures_{};
  std::array<prometheus::Counter*, kRoles> timeouts_{};
  std::array<prometheus::Gauge*, kStates> states_{};
  std::array<prometheus::Gauge*, 2> keepalive_{};  // off, on
  std::array<prometheus::Gauge*, 4> at_risk_{};    // by v1::AtRiskReason
  std::array<prometheus::Gauge*, v1::HalfOpenReason_ARRAYSIZE> half_open_{};
  std::array<prometheus::Counter*, v1::HalfOpenReason_ARRAYSIZE> half_open_detected_{};
};

class ServiceMetrics {
 private:
  // First, so the families below are registered in it.
  std::shared_ptr<prometheus::Registry> registry_;

 public:
  ServiceMetrics();

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // SPEC families.
  prometheus::Family<prometheus::Counter>& handshakes;
  prometheus::Family<prometheus::Counter>& handshake_failures;
  prometheus::Family<prometheus::Histogram>& handshake_duration;
  prometheus::Family<prometheus::Counter>& closes;
  prometheus::Family<prometheus::Histogram>& lifetime;
  prometheus::Family<prometheus::Counter>& keepalive_probes;
  prometheus::Family<prometheus::Counter>& keepalive_timeouts;
  prometheus::Family<prometheus::Gauge>& connections;
  prometheus::Family<prometheus::Gauge>& connections_keepalive;
  prometheus::Family<prometheus::Gauge>& connections_at_risk;
  // Half-open connection ends (set by ConnectionPairs, which owns their series).
  prometheus::Family<prometheus::Gauge>& connections_half_open;
  prometheus::Family<prometheus::Counter>& half_open_detected;
  // Per workload (namespace, pod, container) and per server port, owned by WorkloadMetrics.
  prometheus::Family<prometheus::Gauge>& workload_connections;
  prometheus::Family<prometheus::Gauge>& workload_connections_at_risk;
  prometheus::Family<prometheus::Gauge>& workload_connections_half_open;
  prometheus::Family<prometheus::Counter>& workload_handshake_failures;
  prometheus::Family<prometheus::Counter>& workload_keepalive_timeouts;
  prometheus::Family<prometheus::Counter>& workload_closes;
  prometheus::Family<prometheus::Counter>& port_handshake_failures;
  prometheus::Family<prometheus::Counter>& port_closes;
  prometheus::Family<prometheus::Gauge>& agent_up;
  prometheus::Family<prometheus::Counter>& agent_events;
  prometheus::Family<prometheus::Counter>& agent_events_lost;

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
  // Refused messages by reason (a fixed, small set of reasons chosen by the service).
  prometheus::Counter& Rejected(const std::string& reason);

 private:
  prometheus::Family<prometheus::Counter>& rejected_;
};

}  // namespace tcpscope::service
