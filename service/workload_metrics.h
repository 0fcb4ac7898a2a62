// The series of one host by workload (namespace, pod, container) and by server port: connection
// states, at-risk and half-open ends, handshake failures, keepalive timeouts and closes. Their
// cardinality is bounded per host: the first --max_pods_per_host pods (a container outside
// Kubernetes counts as one) and --max_ports_per_host ports get their own series, the rest are
// summed into pod="other" and port="other"; a pod or port with no end and no event for the
// expiry loses its slot and its series.
//
// Values are relaxed atomics read by scrapes (FleetMetrics) without this object's lock; the set
// of label sets is handed to scrapes as an immutable list, replaced when a workload or port comes
// or goes. Its own lock is a leaf: the aggregator calls it under a host's lock (events,
// snapshots) and the pairing index under its own (half-open ends).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/service_metrics.h"
#include "tcpscope/v1/events.pb.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::service {

// Containers of one pod with series of their own; more (a pod spec lists a handful) are summed
// into pod="other", so that the series budget per host is a bound.
inline constexpr size_t kMaxContainersPerPod = 8;

struct WorkloadLimits {
  int max_pods_per_host = 100;
  int max_ports_per_host = 50;
  // A pod or port without ends and events this long loses its slot (the host expiry).
  absl::Duration slot_expiry = absl::Minutes(10);
};

// The workload labels of a socket owner (views into the origin). A Kubernetes container when
// the pod is known (namespace and pod set): its namespace, pod and container name; a container
// outside Kubernetes (or one whose pod names are not known): namespace and pod empty, container
// its name, else (and for a Kubernetes container, whose name is unique only in its pod) the first
// 12 characters of its id. Host processes have no workload (nullopt): the host-level families cover
// them.
struct WorkloadView {
  absl::string_view pod_namespace;
  absl::string_view pod;
  absl::string_view container;
};
std::optional<WorkloadView> WorkloadOf(const v1::Origin& origin);

// The server's listening port of an event's connection: the remote port for a client end (and
// for a handshake failure, always a connect), the local port for a server end.
uint32_t ServerPort(const v1::Event& event);

class WorkloadMetrics {
 public:
  WorkloadMetrics(ServiceMetrics* metrics, std::string host, WorkloadLimits limits);
  ~WorkloadMetrics();  // removes every series

  WorkloadMetrics(const WorkloadMetrics&) = delete;
  WorkloadMetrics& operator=(const WorkloadMetrics&) = delete;

  // Counts a validated batch's events into their workload's and port's counters; any event of a
  // workload keeps its slot.
  void CountEvents(const v1::Batch& batch, absl::Time now);
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

  // The values of one label set (workload or port), shared with scrapes in progress.
  struct Series;
  struct Port;
  class Published;

 private:
  struct Slot;

  // The series of `origin`'s workload, taking a pod slot (or "other") when `allocate`; null
  // for a host process, or for an unknown pod when not allocating. Marks the slot active.
  Series* Resolve(const v1::Origin& origin, absl::Time now, bool allocate)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountEvent(const v1::Event& event, const v1::Origin& origin, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Port& PortOf(uint32_t port, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ShowHalfOpen(Series& series) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands the current set of series and ports to scrapes, if it changed.
  void Publish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  FleetMetrics* const fleet_;
  const std::string host_;
  const WorkloadLimits limits_;
  const std::shared_ptr<Published> published_;
  mutable absl::Mutex mu_;
  bool live_ ABSL_GUARDED_BY(mu_) = false;  // gauges shown (connected, with a snapshot)
  bool removed_ ABSL_GUARDED_BY(mu_) = false;
  bool changed_ ABSL_GUARDED_BY(mu_) = false;  // series or ports added or removed
  uint64_t round_ ABSL_GUARDED_BY(mu_) = 0;
  std::string scratch_ ABSL_GUARDED_BY(mu_);  // key buffer, reused
  // Pod slots by "namespace/pod" (Kubernetes) or "/container"; "" is the "other" slot.
  absl::flat_hash_map<std::string, std::unique_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<Series>> series_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, std::shared_ptr<Port>> ports_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Port> other_port_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tcpscope::service
