#include "common/shared_origins.h"

#include <cstdint>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "google/protobuf/repeated_ptr_field.h"

namespace tcpscope {
namespace {

// Moves the inline origins of `items` (ends or events) into `table`.
template <typename Item>
void Share(google::protobuf::RepeatedPtrField<Item>& items,
           google::protobuf::RepeatedPtrField<v1::Origin>& table) {
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
  refs.reserve(static_cast<size_t>(table.size()));
  for (int i = 0; i < table.size(); ++i)
    refs.try_emplace(&table.Get(i), static_cast<uint32_t>(i + 1));
  for (Item& item : items) {
    if (item.origin_ref() != 0) continue;
    if (item.has_origin()) {
      auto it = refs.find(&item.origin());
      if (it == refs.end()) {
        v1::Origin* entry = table.Add();
        entry->Swap(item.mutable_origin());
        it = refs.try_emplace(entry, static_cast<uint32_t>(table.size())).first;
      }
      item.set_origin_ref(it->second);
    }
    item.clear_origin();
  }
}

template <typename Item>
const v1::Origin& Resolve(const google::protobuf::RepeatedPtrField<v1::Origin>& table,
                          const Item& item) {
  const uint32_t ref = item.origin_ref();
  if (ref == 0) return item.origin();
  if (ref > static_cast<uint32_t>(table.size())) return v1::Origin::default_instance();
  return table.Get(static_cast<int>(ref - 1));
}

}  // namespace

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
  Share(*snapshot.mutable_connections(), *snapshot.mutable_origins());
}

void ShareBatchOrigins(v1::Batch& batch) {
  Share(*batch.mutable_events(), *batch.mutable_origins());
}

const v1::Origin& SnapshotOrigin(const v1::Snapshot& snapshot, const v1::Connection& connection) {
  return Resolve(snapshot.origins(), connection);
}

const v1::Origin& EventOrigin(const v1::Batch& batch, const v1::Event& event) {
  return Resolve(batch.origins(), event);
}

}  // namespace tcpscope
