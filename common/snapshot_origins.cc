#include "common/snapshot_origins.h"

#include <cstdint>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"

namespace tcpscope {

size_t OriginHash::operator()(const v1::Origin& o) const {
  return absl::HashOf(o.netns_inode(), o.cgroup_id(), o.pid(), o.command(), o.container_id(),
                      o.container_name(), o.pod(), o.pod_namespace(), o.pod_uid(),
                      static_cast<int>(o.runtime()));
}

bool OriginEq::operator()(const v1::Origin& a, const v1::Origin& b) const {
  return a.netns_inode() == b.netns_inode() && a.cgroup_id() == b.cgroup_id() &&
         a.pid() == b.pid() && a.runtime() == b.runtime() && a.command() == b.command() &&
         a.container_id() == b.container_id() && a.container_name() == b.container_name() &&
         a.pod() == b.pod() && a.pod_namespace() == b.pod_namespace() && a.pod_uid() == b.pod_uid();
}

void ShareSnapshotOrigins(v1::Snapshot& snapshot) {
  struct Hash {
    using is_transparent = void;
    size_t operator()(const v1::Origin* origin) const { return OriginHash()(*origin); }
  };
  struct Eq {
    using is_transparent = void;
    bool operator()(const v1::Origin* a, const v1::Origin* b) const { return OriginEq()(*a, *b); }
  };
  // Keyed by the table's own entries, which stay in place while the table grows (a repeated
  // field of messages holds pointers).
  absl::flat_hash_map<const v1::Origin*, uint32_t, Hash, Eq> refs;
  refs.reserve(static_cast<size_t>(snapshot.origins_size()));
  for (int i = 0; i < snapshot.origins_size(); ++i) {
    refs.try_emplace(&snapshot.origins(i), static_cast<uint32_t>(i + 1));
  }
  for (v1::Connection& connection : *snapshot.mutable_connections()) {
    if (connection.origin_ref() != 0) continue;
    if (connection.has_origin()) {
      auto it = refs.find(&connection.origin());
      if (it == refs.end()) {
        v1::Origin* entry = snapshot.add_origins();
        entry->Swap(connection.mutable_origin());
        it = refs.try_emplace(entry, static_cast<uint32_t>(snapshot.origins_size())).first;
      }
      connection.set_origin_ref(it->second);
    }
    connection.clear_origin();
  }
}

const v1::Origin& SnapshotOrigin(const v1::Snapshot& snapshot, const v1::Connection& connection) {
  const uint32_t ref = connection.origin_ref();
  if (ref == 0) return connection.origin();
  if (ref > static_cast<uint32_t>(snapshot.origins_size())) return v1::Origin::default_instance();
  return snapshot.origins(static_cast<int>(ref - 1));
}

}  // namespace tcpscope
