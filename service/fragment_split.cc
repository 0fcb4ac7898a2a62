#include "service/fragment_split.h"

#include "common/unix_time.h"
#include "service/packed_ends.h"
#include "service/pair_index.h"

namespace tcpscope::service {

namespace {

constexpr uint32_t kNotCopied = ~uint32_t{0};

// Where the view's origins and IPv6 addresses went in one owner's packed tables.
struct TablePositions {
  std::vector<uint32_t> origins;
  std::vector<uint32_t> ipv6;
};

uint32_t CopyIpv6(const HostView& view, uint32_t position, TablePositions& positions,
                  v1::PackedEnds& packed) {
  uint32_t& copied = positions.ipv6[position];
  if (copied == kNotCopied) {
    copied = static_cast<uint32_t>(packed.ipv6_addresses().size() / 16);
    packed.mutable_ipv6_addresses()->append(view.ipv6_addresses[position].data(), 16);
  }
  return copied;
}

}  // namespace

std::vector<v1::HostFragment> SplitByOwner(
    const HostView* view, const google::protobuf::RepeatedPtrField<v1::Event>& events,
    const Ring& ring, uint64_t* forwarded_ends) {
  std::vector<v1::HostFragment> fragments(ring.size());
  *forwarded_ends = 0;
  if (view != nullptr) {
    std::vector<TablePositions> positions(ring.size());
    for (size_t i = 0; i < ring.size(); ++i) {
      if (i == ring.self) continue;
      v1::PackedEnds& packed = *fragments[i].mutable_ends();
      packed.set_version(kPackedEndVersion);
      packed.set_time_unix_ns(UnixNanos(view->taken));
      packed.mutable_records()->reserve(view->ends.size() / ring.size() * kPackedEndSize * 5 / 4);
      positions[i].origins.assign(view->origins.size(), kNotCopied);
      positions[i].ipv6.assign(view->ipv6_addresses.size(), kNotCopied);
    }
    for (const EndRecord& end : view->ends) {
      const std::optional<uint64_t> route = TupleRouteHash(
          view->LocalAddress(end), end.local_port, view->RemoteAddress(end), end.remote_port);
      if (!route.has_value()) continue;
      const size_t owner = ring.Owner(*route);
      if (owner == ring.self) continue;
      v1::PackedEnds& packed = *fragments[owner].mutable_ends();
      TablePositions& to = positions[owner];
      EndRecord copy = end;
      uint32_t& origin = to.origins[end.origin];
      if (origin == kNotCopied) {
        origin = static_cast<uint32_t>(packed.origins_size());
        *packed.add_origins() = view->OriginOf(end);
      }
      copy.origin = origin;
      if (end.ipv6) {
        copy.local_address = CopyIpv6(*view, end.local_address, to, packed);
        copy.remote_address = CopyIpv6(*view, end.remote_address, to, packed);
      }
      AppendPackedEnd(copy, packed.mutable_records());
      ++*forwarded_ends;
    }
  }
  for (const v1::Event& event : events) {
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
