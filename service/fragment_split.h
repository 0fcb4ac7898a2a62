// A home replica's pairing input shared out by tuple owner (replica.proto's HostFragment): each
// other replica of the ring gets the ends of a host's latest view whose tuple it owns, packed
// with the origins and IPv6 addresses they use, and the closes in its tuples. Ends without a
// tuple (loopback, a connection to itself) and those this replica owns stay here.
#pragma once

#include <vector>

#include "google/protobuf/repeated_ptr_field.h"
#include "service/host_view.h"
#include "service/ring.h"
#include "tcpscope/v1/events.pb.h"
#include "tcpscope/v1/replica.pb.h"

namespace tcpscope::service {

// One fragment per member of `ring`, in its order; this replica's stays empty. With a `view`
// (the host's view just applied) every other member's fragment has packed ends, possibly none
// (the owner's ends of the host are gone); without one, fragments carry the closes of `events`
// only, and only owners with closes get one. `forwarded_ends`: the ends put in other replicas'
// fragments.
std::vector<v1::HostFragment> SplitByOwner(
    const HostView* view, const google::protobuf::RepeatedPtrField<v1::Event>& events,
    const Ring& ring, uint64_t* forwarded_ends);

}  // namespace tcpscope::service
