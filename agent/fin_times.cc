// FIN times noted from the eBPF program, applied to snapshots.
#include "agent/fin_times.h"

#include "absl/container/flat_hash_set.h"

namespace tcpscope::agent {

void FinTimes::Note(uint64_t connection_id, absl::Time sent, uint32_t pid, uint64_t cgroup_id,
                    std::string command) {
  absl::MutexLock lock(&mu_);
  if (sent_.size() + pending_.size() >= kMaxNotes) return;
  pending_.emplace_back(connection_id, Fin{sent, pid, cgroup_id, std::move(command)});
}

void FinTimes::MergePending() {
  sent_.reserve(sent_.size() + pending_.size());
  for (auto& [connection_id, fin] : pending_) sent_[connection_id] = std::move(fin);
  std::vector<std::pair<uint64_t, Fin>>().swap(pending_);  // a burst's capacity is not kept
}

std::vector<int> FinTimes::Apply(v1::Snapshot* snapshot, absl::Time now, absl::Duration keep) {
  std::vector<int> named;
  absl::flat_hash_set<uint64_t> present;
  absl::MutexLock lock(&mu_);
  MergePending();
  if (sent_.empty()) return named;
  for (int i = 0; i < snapshot->connections_size(); ++i) {
    v1::Connection& connection = *snapshot->mutable_connections(i);
    auto it = sent_.find(connection.connection_id());
    if (it == sent_.end()) continue;
    present.insert(connection.connection_id());
    const Fin& fin = it->second;
    if (connection.state() == v1::TCP_STATE_FIN_WAIT1) {
      const uint64_t sent = static_cast<uint64_t>(absl::ToUnixNanos(fin.sent));
      if (connection.state_since_unix_ns() == 0 || sent < connection.state_since_unix_ns()) {
        connection.set_state_since_unix_ns(sent);
      }
    }
    v1::Origin* origin = connection.mutable_origin();
    if (fin.pid != 0 && origin->pid() == 0) {
      origin->set_pid(fin.pid);
      origin->set_command(fin.command);
      origin->set_cgroup_id(fin.cgroup_id);
      named.push_back(i);
    }
  }
  for (auto it = sent_.begin(); it != sent_.end();) {
    auto current = it++;
    if (!present.contains(current->first) && now - current->second.sent > keep) {
      sent_.erase(current);
    }
  }
  return named;
}

size_t FinTimes::size() const {
  absl::MutexLock lock(&mu_);
  return sent_.size() + pending_.size();
}

}  // namespace tcpscope::agent
