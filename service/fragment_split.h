// A home replica's pairing input shared out by tuple owner (replica.proto's HostFragment): each
// other replica of the ring gets the connections of a host's snapshot whose tuple it owns, with
// the origins they use, and the closes in its tuples. Ends without a tuple (loopback, a
// connection to itself) and those this replica owns stay here.
#pragma once

#include <vector>

#include "service/ring.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/replica.pb.h"

namespace tcpscope::service {

// One fragment per member of `ring`, in its order; this replica's stays empty. Every fragment
// of a snapshot has a snapshot (possibly without connections: the owner's ends of the host are
// gone); a batch without one gives fragments with closes only, and those only for owners with
// closes. `forwarded_ends`: the connections put in other replicas' fragments.
std::vector<v1::HostFragment> SplitByOwner(const v1::Batch& batch, const Ring& ring,
                                           uint64_t* forwarded_ends);

}  // namespace tcpscope::service
