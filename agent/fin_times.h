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
#include <string_view>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tcpscope/v1/events.pb.h"

namespace tcpscope::agent {

class FinTimes {
 public:
  // At most this many notes held at once; beyond it, notes are dropped (the snapshots then keep
  // the tracker's later time, which is safe, only slower).
  static constexpr size_t kMaxNotes = 1 << 20;

  // `pid` 0: the program did not know the process (then only the time is used). The command is
  // kept to its first 16 bytes, the kernel's own limit.
  void Note(uint64_t connection_id, absl::Time sent, uint32_t pid = 0, uint64_t cgroup_id = 0,
            std::string_view command = {});
  // Sets state_since of every FIN_WAIT1 end with a note to the time its FIN was sent (when that
  // is earlier than what the tracker recorded), and names the process (pid, command, cgroup) of
  // every end with a note that has none; of two notes of one end, the later is used. Returns the
  // indexes of the ends it named (for their workload). Keeps the notes of ends in the snapshot,
  // and of others until they are older than `keep` (a note may arrive before the dump that shows
  // the end). The notes are taken while it runs: the ring's reader, noting, never waits for it.
  std::vector<int> Apply(v1::Snapshot* snapshot, absl::Time now, absl::Duration keep);

  // Notes held.
  size_t size() const;

 private:
  // 48 bytes, no allocation: a churning host notes ~10^5 ends between two snapshots.
  struct Fin {
    uint64_t connection_id;
    int64_t sent_unix_ns;
    uint64_t cgroup_id;
    uint32_t pid;
    char command[16];  // not NUL-terminated at 16 bytes
  };

  mutable absl::Mutex mu_;
  // In the order noted. A snapshot looks each up in an index of its own ends, a table a few MB
  // large: hashing every note into a table of all notes instead (hundreds of thousands, 72 bytes
  // each) cost a cache miss or two per note and most of the snapshot thread's time.
  std::vector<Fin> notes_ ABSL_GUARDED_BY(mu_);
  size_t applying_ ABSL_GUARDED_BY(mu_) = 0;  // notes Apply holds while it runs
};

}  // namespace tcpscope::agent
