// FIN times noted from the eBPF program, applied to snapshots.
#include "agent/fin_times.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/container/flat_hash_map.h"

namespace tcpscope::agent {

void FinTimes::Note(uint64_t connection_id, absl::Time sent, uint32_t pid, uint64_t cgroup_id,
                    std::string_view command) {
  Fin fin{.connection_id = connection_id,
          .sent_unix_ns = absl::ToUnixNanos(sent),
          .cgroup_id = cgroup_id,
          .pid = pid,
          .command = {}};
  command.copy(fin.command, sizeof(fin.command));  // no memcpy: an empty view's data() is null
  absl::MutexLock lock(&mu_);
  if (notes_.size() + applying_ >= kMaxNotes) return;
  notes_.push_back(fin);
}

std::vector<int> FinTimes::Apply(v1::Snapshot* snapshot, absl::Time now, absl::Duration keep) {
  std::vector<int> named;
  std::vector<Fin> notes;
  {
    absl::MutexLock lock(&mu_);
    notes.swap(notes_);
    applying_ = notes.size();
  }
  if (!notes.empty()) {
    // The snapshot's ends by id; ~index once a note was applied to the end.
    absl::flat_hash_map<uint64_t, int> ends;
    ends.reserve(static_cast<size_t>(snapshot->connections_size()));
    for (int i = 0; i < snapshot->connections_size(); ++i) {
      ends.try_emplace(snapshot->connections(i).connection_id(), i);
    }
    const int64_t forget_before = absl::ToUnixNanos(now - keep);
    // Latest first, so the later of two notes of an end is the one used and kept. What is kept
    // moves to the back, in place: `kept` never passes the note being read.
    size_t kept = notes.size();
    for (size_t i = notes.size(); i-- > 0;) {
      const Fin& fin = notes[i];
      auto it = ends.find(fin.connection_id);
      if (it == ends.end()) {
        if (fin.sent_unix_ns >= forget_before) notes[--kept] = fin;
        continue;
      }
      if (it->second < 0) continue;  // spent: a later note of this end was applied
      const int index = it->second;
      it->second = ~index;
      notes[--kept] = fin;
      v1::Connection& connection = *snapshot->mutable_connections(index);
      if (connection.state() == v1::TCP_STATE_FIN_WAIT1) {
        const uint64_t sent = static_cast<uint64_t>(fin.sent_unix_ns);
        if (connection.state_since_unix_ns() == 0 || sent < connection.state_since_unix_ns()) {
          connection.set_state_since_unix_ns(sent);
        }
      }
      v1::Origin* origin = connection.mutable_origin();
      if (fin.pid != 0 && origin->pid() == 0) {
        origin->set_pid(fin.pid);
        origin->set_command(std::string(fin.command, strnlen(fin.command, sizeof(fin.command))));
        origin->set_cgroup_id(fin.cgroup_id);
        named.push_back(index);
      }
    }
    notes.erase(notes.begin(), notes.begin() + static_cast<std::ptrdiff_t>(kept));
    std::sort(named.begin(), named.end());
  }
  // The notes taken meanwhile are later than those kept.
  absl::MutexLock lock(&mu_);
  notes.insert(notes.end(), notes_.begin(), notes_.end());
  notes_.swap(notes);
  applying_ = 0;
  return named;
}

size_t FinTimes::size() const {
  absl::MutexLock lock(&mu_);
  return notes_.size() + applying_;
}

}  // namespace tcpscope::agent
