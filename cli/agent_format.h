// Agents as a table: connected or not and since when, last seen, source, version, events,
// losses by stage, connections and at-risk connections in the latest snapshot, half-open ends.
#pragma once

#include "absl/time/time.h"
#include "cli/table.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::cli {

Table AgentsTable(const v1::ListAgentsResponse& response, absl::Time now);

}  // namespace tcpscope::cli
