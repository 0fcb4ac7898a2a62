// Origins sent once each: the ends of a snapshot and the events of a batch mostly share a few
// origins (one per process), so the agent sends the distinct ones in a table (Snapshot.origins,
// Batch.origins) and each end or event refers to one (origin_ref, from 1). Inline origins (older
// agents, the service's own events) stay valid.
#pragma once

#include <cstddef>

#include "tcpscope/v1/events.pb.h"
#include "tcpscope/v1/ingest.pb.h"

namespace tcpscope {

// Hash and equality of origins by every field (for tables of distinct origins).
struct OriginHash {
  size_t operator()(const v1::Origin& origin) const;
};
struct OriginEq {
  bool operator()(const v1::Origin& a, const v1::Origin& b) const;
};

// Moves every inline origin of the snapshot's ends (the batch's events) into its table, each
// distinct origin once, and makes them refer to it. References already made are kept.
void ShareSnapshotOrigins(v1::Snapshot& snapshot);
void ShareBatchOrigins(v1::Batch& batch);

// The origin of one of the snapshot's ends (the batch's events): its reference's table entry or
// its inline origin. A reference beyond the table (refused by the service's validation) gives the
// empty origin.
const v1::Origin& SnapshotOrigin(const v1::Snapshot& snapshot, const v1::Connection& connection);
const v1::Origin& EventOrigin(const v1::Batch& batch, const v1::Event& event);

}  // namespace tcpscope
