// A snapshot's origins, sent once each: the ends of one process share their origin, so the agent
// sends a snapshot's distinct origins in a table (Snapshot.origins) and each end refers to one
// (Connection.origin_ref, from 1). Ends with an inline origin (older agents) stay valid.
#pragma once

#include <cstddef>

#include "tcpscope/v1/events.pb.h"

namespace tcpscope {

// Hash and equality of origins by every field (for tables of distinct origins).
struct OriginHash {
  size_t operator()(const v1::Origin& origin) const;
};
struct OriginEq {
  bool operator()(const v1::Origin& a, const v1::Origin& b) const;
};

// Moves every inline origin of `snapshot` into its table, each distinct origin once, and makes
// the ends refer to them. Ends already referring to the table keep their reference.
void ShareSnapshotOrigins(v1::Snapshot& snapshot);

// The origin of one of the snapshot's ends: its reference's table entry or its inline origin.
// A reference out of the table's range (refused by the service's validation) gives the empty
// origin.
const v1::Origin& SnapshotOrigin(const v1::Snapshot& snapshot, const v1::Connection& connection);

}  // namespace tcpscope
