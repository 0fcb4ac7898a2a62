// The service's SPEC series as they were before FleetMetrics: one prometheus-cpp Counter, Gauge
// or Histogram per series, in a Registry (service/service_metrics.cc and workload_metrics.cc at
// commit faa8a27, and the half-open series ConnectionPairs kept). Kept only as the reference the
// scrape benchmark measures against and the test compares with, sample for sample.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "service/workload_metrics.h"
#include "tcpscope/v1/events.pb.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::reference {

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
  std::array<prometheus::Counter*, 2> lost_{};
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
};

// The half-open series of one host, as ConnectionPairs kept them.
class HalfOpenSeries {
 public:
  HalfOpenSeries(ServiceMetrics* families, std::string host);
  ~HalfOpenSeries();

  void Set(const std::array<uint32_t, 4>& counts);  // ShowGauges
  void Clear();                                     // Disconnected
  void CountDetected(v1::HalfOpenReason reason);

 private:
  ServiceMetrics* const families_;
  const std::string host_;
  std::array<prometheus::Gauge*, 4> gauges_{};
  std::array<prometheus::Counter*, 4> detected_{};
};

class WorkloadMetrics {
 public:
  WorkloadMetrics(ServiceMetrics* families, std::string host, service::WorkloadLimits limits);
  ~WorkloadMetrics();  // removes every series

  WorkloadMetrics(const WorkloadMetrics&) = delete;
  WorkloadMetrics& operator=(const WorkloadMetrics&) = delete;

  // Counts validated events into their workload's and port's counters; any event of a workload
  // keeps its slot.
  void CountEvents(const google::protobuf::RepeatedPtrField<v1::Event>& events, absl::Time now);
  // Replaces the connection-state and at-risk gauges (at_risk: one reason per connection).
  void SetSnapshot(const v1::Snapshot& snapshot, const std::vector<v1::AtRiskReason>& at_risk,
                   absl::Time now);
  // The host's agent disconnected: every gauge goes (counters and half-open counts stay).
  void ClearGauges();
  // One more half-open end of `origin`'s workload; returns the series it was counted in (to
  // give to RemoveHalfOpen), empty for a host process.
  std::string AddHalfOpen(const v1::Origin& origin, v1::HalfOpenReason reason, absl::Time now);
  void RemoveHalfOpen(const std::string& series, v1::HalfOpenReason reason);
  // Frees the slots (and removes the series) of pods and ports idle for the slot expiry. A
  // series with half-open ends is not idle.
  void Expire(absl::Time now);
  // The host expired: every series goes, and nothing comes back (the pairing index may still
  // hold this object for a moment).
  void RemoveAll();

  struct Stats {
    size_t pods = 0;    // pod slots taken (at most max_pods_per_host), "other" not counted
    size_t series = 0;  // workload label sets, "other" included
    size_t ports = 0;   // port slots taken
  };
  Stats stats() const;

 private:
  // Indexes of the `state` label's values.
  static constexpr int kStates = 5;  // established, syn_sent, syn_recv, close_wait, time_wait
  static constexpr int kFailureReasons = 6;  // by v1::HandshakeFailureReason
  static constexpr int kCloseReasons = 8;    // by v1::CloseReason
  static constexpr int kRiskReasons = 4;     // by v1::AtRiskReason and v1::HalfOpenReason

  struct Slot;
  struct Series {
    std::string key;  // "namespace/pod/container"; names cannot hold '/'
    Slot* slot = nullptr;
    std::string pod_namespace, pod, container;
    std::array<prometheus::Gauge*, kStates> states{};
    std::array<prometheus::Gauge*, kRiskReasons> at_risk{};
    std::array<prometheus::Gauge*, kRiskReasons> half_open{};
    std::array<uint32_t, kRiskReasons> half_open_count{};
    std::array<prometheus::Counter*, kFailureReasons> failures{};
    prometheus::Counter* keepalive_timeouts = nullptr;
    std::array<prometheus::Counter*, kCloseReasons> closes{};
    // Counts of the snapshot being applied.
    uint64_t round = 0;
    std::array<uint32_t, kStates> state_count{};
    std::array<uint32_t, kRiskReasons> at_risk_count{};
  };
  struct Slot {
    absl::Time last_active;
    std::vector<Series*> series;
  };
  struct Port {
    std::string label;
    absl::Time last_active;
    std::array<prometheus::Counter*, kFailureReasons> failures{};
    std::array<prometheus::Counter*, kCloseReasons> closes{};
  };

  // The series of `origin`'s workload, taking a pod slot (or "other") when `allocate`; null
  // for a host process, or for an unknown pod when not allocating. Marks the slot active.
  Series* Resolve(const v1::Origin& origin, absl::Time now, bool allocate)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountEvent(const v1::Event& event, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Port& PortOf(uint32_t port, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  prometheus::Labels LabelsOf(const Series& series, const char* name,
                              absl::string_view value) const;
  void ShowHalfOpen(Series& series) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveGauges(Series& series) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveSeries(Series& series) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemovePort(Port& port) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ServiceMetrics* const families_;
  const std::string host_;
  const service::WorkloadLimits limits_;
  mutable absl::Mutex mu_;
  bool live_ ABSL_GUARDED_BY(mu_) = false;
  bool removed_ ABSL_GUARDED_BY(mu_) = false;  // gauges shown (connected, with a snapshot)
  uint64_t round_ ABSL_GUARDED_BY(mu_) = 0;
  std::string scratch_ ABSL_GUARDED_BY(mu_);  // key buffer, reused
  // Pod slots by "namespace/pod" (Kubernetes) or "/container"; "" is the "other" slot.
  absl::flat_hash_map<std::string, std::unique_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<Series>> series_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, std::unique_ptr<Port>> ports_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Port> other_port_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tcpscope::reference
