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

class HalfOpenReporter {
 public:
  // `lookup` finds a host's state by name (null once expired).
  using Lookup = std::function<std::shared_ptr<HostState>(const std::string&)>;
  HalfOpenReporter(const PairIndex* pairs, EventLog* log, Lookup lookup)
      : pairs_(pairs), log_(log), lookup_(std::move(lookup)) {}

  void Report(Findings findings, absl::Time now);
  // Sets the host's half-open series from the index (also after it reconnects).
  void Refresh(HostState& host, absl::Time now);

 private:
  const PairIndex* const pairs_;
  EventLog* const log_;
  const Lookup lookup_;
};

}  // namespace tcpscope::service
