// The ring of a tier of replicas: the replicas up, as one replica sees them. Connection tuples
// belong to replicas by rendezvous hashing over it. Its id, a hash of the members, is equal on
// two replicas exactly when they agree on the members.
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/rendezvous.h"

namespace tcpscope::service {

struct Ring {
  explicit Ring(RendezvousSet set, const std::string& self_member, uint64_t ring_epoch,
                absl::Time changed)
      : members(std::move(set)),
        id(StableHash(absl::StrJoin(members.members(), ","))),
        epoch(ring_epoch),
        changed_at(changed) {
    for (size_t i = 0; i < members.members().size(); ++i) {
      if (members.members()[i] == self_member) self = i;
    }
  }

  const RendezvousSet members;
  const uint64_t id;
  const uint64_t epoch;  // this replica's count of changes
  const absl::Time changed_at;
  size_t self = 0;  // this replica's index in members.members()

  const std::string& member(size_t index) const { return members.members()[index]; }
  size_t size() const { return members.members().size(); }
  // The replica that owns a connection tuple's hash.
  size_t Owner(uint64_t key_hash) const { return members.Owner(key_hash); }
  bool Owns(uint64_t key_hash) const { return size() == 1 || Owner(key_hash) == self; }
};

}  // namespace tcpscope::service
