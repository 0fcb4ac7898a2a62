// When each local end sent its FIN, and which process sent it, as the eBPF program saw it, for
// the snapshots. The time: a dump only shows an end in FIN_WAIT1, and the tracker dates that to
// the first dump that shows it (up to a snapshot interval late); the service dates a peer's close
// by it when judging half-open connections, so the exact time makes detection one interval
// faster. The process: an end that sent its FIN and was closed is held by no file any more
// (TIME_WAIT, an orphaned FIN_WAIT2), so no owner scan finds it, and a connection that opened and
// closed between two snapshots was never seen owned; the process that closed it names it.
// Thread-safe: the ring consumer notes, the snapshot thread applies.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

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

  // `pid` 0: the program did not know the process (then only the time is used).
  void Note(uint64_t connection_id, absl::Time sent, uint32_t pid = 0, uint64_t cgroup_id = 0,
            std::string command = {});
  // Sets state_since of every FIN_WAIT1 end with a note to the time its FIN was sent (when that
  // is earlier than what the tracker recorded), and names the process (pid, command, cgroup) of
  // every end with a note that has none. Returns the indexes of the ends it named (for their
  // workload). Forgets notes of ends no longer in the snapshot once they are older than `keep`
  // (a note may arrive before the dump that shows the end).
  std::vector<int> Apply(v1::Snapshot* snapshot, absl::Time now, absl::Duration keep);

  // Notes held (an end noted twice, after a reconnect, counts twice until the next Apply).
  size_t size() const;

 private:
  struct Fin {
    absl::Time sent;
    uint32_t pid = 0;
    uint64_t cgroup_id = 0;
    std::string command;
  };
  // Moves the notes taken since the last snapshot into sent_.
  void MergePending() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  // A note is appended here (one per closing end, on the ring consumer's hot path) and hashed
  // in bulk at the next snapshot, which needs the lookups: inserting each into a table of
  // hundreds of thousands at once cost a cache miss or two per note, and its growth.
  std::vector<std::pair<uint64_t, Fin>> pending_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Fin> sent_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tcpscope::agent
