// The fleet summary as text: a block for the fleet, then one per host, each listing agents,
// events, losses by stage, handshakes, failures by reason, closes by initiator and reason and
// short/long, keepalive probes and timeouts, connections by state, keepalive on/off, at-risk
// connections and half-open ends by reason.
#pragma once

#include <ostream>

#include "absl/time/time.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::cli {

// `fleet` false leaves out the fleet block (a --host query, where it would repeat the host's).
void PrintSummary(const v1::SummaryResponse& response, bool fleet, absl::TimeZone zone,
                  std::ostream& out);

}  // namespace tcpscope::cli
