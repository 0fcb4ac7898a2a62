// Turns the pair index's findings into what users see: a half_open event (published, logged)
// and a tcpscope_half_open_detected_total count per finding, and, for each host whose ends
// changed, its half-open gauges by reason and by workload, recomputed from the index so that
// reports racing from several hosts' streams end on the index's latest state.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "service/event_log.h"
#include "service/host_state.h"
#include "service/pair_index.h"

namespace tcpscope::service {

// Where a host's findings go: to its state here, or, for a host homed on another replica, to
// that replica (replica.proto's HostFindings), which reports them as its own.
struct ReportRoutes {
  // The host's state here, when it is homed here (null otherwise, or once expired).
  std::function<std::shared_ptr<HostState>(const std::string&)> local;
  // The host's record here, when it is homed on another replica (null otherwise).
  std::function<std::shared_ptr<RemoteHost>(const std::string&)> remote;
  // Sends to another replica (unused without replicas).
  std::function<void(const std::string& replica, v1::ReplicaMessage)> send;
};

class HalfOpenReporter {
 public:
  HalfOpenReporter(const PairIndex* pairs, EventLog* log, ReportRoutes routes)
      : pairs_(pairs), log_(log), routes_(std::move(routes)) {}

  void Report(Findings findings, absl::Time now);
  // Sets the host's half-open series from the index and the other replicas' reports (also
  // after it reconnects).
  void Refresh(HostState& host, absl::Time now);
  // Another replica's findings for a host homed here (validated).
  void ReportFromReplica(HostState& host, const std::string& replica, v1::HostFindings& findings,
                         absl::Time now);
  // Forgets what other replicas reported of the host's half-open ends (the ring changed).
  void ForgetReplicaReports(HostState& host, absl::Time now);

 private:
  const PairIndex* const pairs_;
  EventLog* const log_;
  const ReportRoutes routes_;
};

}  // namespace tcpscope::service
