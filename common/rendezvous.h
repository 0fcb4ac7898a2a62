// Rendezvous (highest-random-weight) hashing: each key ranks the members by a weight computed
// from the key and the member's name, and belongs to the first member of its ranking that is
// available. Removing a member moves only the keys it had; adding one takes only the keys it
// now wins. Agents home on a replica this way (key: the host name) and replicas own connection
// tuples this way (key: the tuple's hash), so every process that knows the same members makes
// the same choice. The hash is stable across processes and builds (absl::Hash is not: it is
// seeded per process).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace tcpscope {

// FNV-1a, 64 bits, finished with a strong mix: stable everywhere.
uint64_t StableHash(absl::string_view bytes);
// splitmix64's finalizer.
inline uint64_t MixBits(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}
// The weight of `member_hash` (StableHash of its name) for `key_hash`.
inline uint64_t RendezvousWeight(uint64_t key_hash, uint64_t member_hash) {
  return MixBits(key_hash ^ MixBits(member_hash));
}

// The members ranked for `key`, best first (ties, which need equal names, by name).
std::vector<std::string> RendezvousRanking(absl::string_view key,
                                           const std::vector<std::string>& members);

// A fixed set of members, hashed once, for choosing many keys' owners fast.
class RendezvousSet {
 public:
  explicit RendezvousSet(std::vector<std::string> members);
  const std::vector<std::string>& members() const { return members_; }
  bool empty() const { return members_.empty(); }
  // The index in members() of the owner of `key_hash`; members() must not be empty.
  size_t Owner(uint64_t key_hash) const;

 private:
  std::vector<std::string> members_;  // sorted, distinct
  std::vector<uint64_t> hashes_;
};

}  // namespace tcpscope
