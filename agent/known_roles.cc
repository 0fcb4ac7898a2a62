// Kernel-known roles carried from events to snapshots.
#include "agent/known_roles.h"

namespace tcpscope::agent {

void KnownRoles::Observe(const v1::Event& event) {
  if (event.has_handshake() && event.role() != v1::ROLE_UNSPECIFIED) {
    absl::MutexLock lock(&mu_);
    roles_[event.connection_id()] = event.role();
  } else if (event.has_close() || event.has_handshake_failed()) {
    absl::MutexLock lock(&mu_);
    roles_.erase(event.connection_id());
  }
}

void KnownRoles::Apply(v1::Snapshot* snapshot) const {
  absl::MutexLock lock(&mu_);
  if (roles_.empty()) return;
  for (v1::Connection& connection : *snapshot->mutable_connections()) {
    if (connection.role() != v1::ROLE_UNSPECIFIED) continue;
    if (auto it = roles_.find(connection.connection_id()); it != roles_.end()) {
      connection.set_role(it->second);
    }
  }
}

size_t KnownRoles::size() const {
  absl::MutexLock lock(&mu_);
  return roles_.size();
}

}  // namespace tcpscope::agent
