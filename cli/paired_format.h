// Paired connections (connections --paired) as a table: one row per connection, its two ends
// side by side, so that an operator sees at a glance which side still believes in it. For each
// end: host, local address, state, keepalive, unacked and unread bytes, idle time; then why the
// left end is half-open. A peer end that is gone shows its last state and when it was lost.
#pragma once

#include "absl/time/time.h"
#include "cli/table.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::cli {

Table PairedConnectionsTable(const v1::ListConnectionsResponse& response, absl::Time now);

}  // namespace tcpscope::cli
