// Current connections as a table: where they are, their state and how long they have been in
// it, whether their peer end was found, why they are at risk or half-open, keepalive (on/off,
// probes out, next probe), idle time, RTT, queues.
#pragma once

#include "absl/time/time.h"
#include "cli/table.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::cli {

Table ConnectionsTable(const v1::ListConnectionsResponse& response, absl::Time now);

}  // namespace tcpscope::cli
