// FIN times noted from the eBPF program, applied to snapshots.
#include "agent/fin_times.h"

#include "absl/container/flat_hash_set.h"

namespace tcpscope::agent {

void FinTimes::Note(uint64_t connection_id, absl::Time sent) {
  absl::MutexLock lock(&mu_);
  if (sent_.size() >= kMaxNotes) return;
  sent_[connection_id] = sent;
}

void FinTimes::Apply(v1::Snapshot* snapshot, absl::Time now, absl::Duration keep) {
  absl::flat_hash_set<uint64_t> in_fin_wait1;
  absl::MutexLock lock(&mu_);
  if (sent_.empty()) return;
  for (v1::Connection& connection : *snapshot->mutable_connections()) {
    if (connection.state() != v1::TCP_STATE_FIN_WAIT1) continue;
    auto it = sent_.find(connection.connection_id());
    if (it == sent_.end()) continue;
    in_fin_wait1.insert(connection.connection_id());
    const uint64_t sent = static_cast<uint64_t>(absl::ToUnixNanos(it->second));
    if (connection.state_since_unix_ns() == 0 || sent < connection.state_since_unix_ns()) {
      connection.set_state_since_unix_ns(sent);
    }
  }
  for (auto it = sent_.begin(); it != sent_.end();) {
    auto current = it++;
    if (!in_fin_wait1.contains(current->first) && now - current->second > keep) {
      sent_.erase(current);
    }
  }
}

size_t FinTimes::size() const {
  absl::MutexLock lock(&mu_);
  return sent_.size();
}

}  // namespace tcpscope::agent
