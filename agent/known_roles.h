// The roles the eBPF program knew (it saw each end open: SYN_SENT is a client, a SYN_RECV child
// a server), for the snapshots: a sock_diag dump only knows a role from a listener on the end's
// port, so without these the snapshots would report a client end as "unknown" although the
// agent knows it. Noted from handshake events, forgotten at the end's close, applied to each
// snapshot. Thread-safe: the ring consumer notes, the snapshot thread applies.
#pragma once

#include <cstdint>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "tcpscope/v1/events.pb.h"

namespace tcpscope::agent {

class KnownRoles {
 public:
  // Notes the role of a handshake event, forgets it at a close or failed handshake.
  void Observe(const v1::Event& event);
  // Sets the role of every end of `snapshot` whose dump did not know it.
  void Apply(v1::Snapshot* snapshot) const;
  size_t size() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, v1::Role> roles_ ABSL_GUARDED_BY(mu_);  // open ends, by cookie
};

}  // namespace tcpscope::agent
