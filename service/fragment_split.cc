#include "service/fragment_split.h"

#include "service/pair_index.h"

namespace tcpscope::service {

std::vector<v1::HostFragment> SplitByOwner(const v1::Batch& batch, const Ring& ring,
                                           uint64_t* forwarded_ends) {
  std::vector<v1::HostFragment> fragments(ring.size());
  *forwarded_ends = 0;
  if (batch.has_snapshot()) {
    const v1::Snapshot& snapshot = batch.snapshot();
    // Per owner, the position of each of the snapshot's origins in the owner's table (0: not
    // copied yet).
    std::vector<std::vector<uint32_t>> refs(ring.size());
    for (size_t i = 0; i < ring.size(); ++i) {
      if (i == ring.self) continue;
      fragments[i].mutable_snapshot()->set_time_unix_ns(snapshot.time_unix_ns());
      refs[i].assign(static_cast<size_t>(snapshot.origins_size()) + 1, 0);
    }
    for (const v1::Connection& connection : snapshot.connections()) {
      const std::optional<uint64_t> route = TupleRouteHash(connection.endpoints());
      if (!route.has_value()) continue;
      const size_t owner = ring.Owner(*route);
      if (owner == ring.self) continue;
      v1::Snapshot& part = *fragments[owner].mutable_snapshot();
      v1::Connection& copy = *part.add_connections();
      copy = connection;
      ++*forwarded_ends;
      if (connection.origin_ref() == 0) continue;
      uint32_t& ref = refs[owner][connection.origin_ref()];
      if (ref == 0) {
        *part.add_origins() = snapshot.origins(static_cast<int>(connection.origin_ref()) - 1);
        ref = static_cast<uint32_t>(part.origins_size());
      }
      copy.set_origin_ref(ref);
    }
  }
  for (const v1::Event& event : batch.events()) {
    if (!event.has_close()) continue;
    const std::optional<uint64_t> route = TupleRouteHash(event.endpoints());
    if (!route.has_value()) continue;
    const size_t owner = ring.Owner(*route);
    if (owner == ring.self) continue;
    v1::FragmentClose& close = *fragments[owner].add_closes();
    close.set_connection_id(event.connection_id());
    *close.mutable_endpoints() = event.endpoints();
    close.set_time_unix_ns(event.time_unix_ns());
  }
  return fragments;
}

}  // namespace tcpscope::service
