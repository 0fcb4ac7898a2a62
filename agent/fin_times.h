// When each local end sent its FIN, as the eBPF program saw it, for the snapshots: a dump only
// shows an end in FIN_WAIT1, and the tracker dates that to the first dump that shows it (up to a
// snapshot interval late). The service dates a peer's close by it when judging half-open
// connections, so the exact time makes detection one interval faster. Thread-safe: the ring
// consumer notes, the snapshot thread applies.
#pragma once

#include <cstdint>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tcpscope/v1/events.pb.h"

namespace tcpscope::agent {

class FinTimes {
 public:
  // At most this many ends remembered at once; beyond it, notes are dropped (the snapshots then
  // keep the tracker's later time, which is safe, only slower).
  static constexpr size_t kMaxNotes = 1 << 20;

  void Note(uint64_t connection_id, absl::Time sent);
  // Sets state_since of every FIN_WAIT1 end with a note to the time its FIN was sent (when that
  // is earlier than what the tracker recorded). Forgets notes of ends no longer in FIN_WAIT1,
  // once they are older than `keep` (a note may arrive before the dump that shows the state).
  void Apply(v1::Snapshot* snapshot, absl::Time now, absl::Duration keep);

  size_t size() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, absl::Time> sent_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tcpscope::agent
