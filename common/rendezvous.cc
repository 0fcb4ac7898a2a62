#include "common/rendezvous.h"

#include <algorithm>
#include <utility>

namespace tcpscope {

uint64_t StableHash(absl::string_view bytes) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return MixBits(hash);
}

std::vector<std::string> RendezvousRanking(absl::string_view key,
                                           const std::vector<std::string>& members) {
  const uint64_t key_hash = StableHash(key);
  std::vector<std::pair<uint64_t, const std::string*>> weighted;
  weighted.reserve(members.size());
  for (const std::string& member : members) {
    weighted.emplace_back(RendezvousWeight(key_hash, StableHash(member)), &member);
  }
  std::sort(weighted.begin(), weighted.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : *a.second < *b.second;
  });
  std::vector<std::string> ranking;
  ranking.reserve(weighted.size());
  for (const auto& [weight, member] : weighted) ranking.push_back(*member);
  return ranking;
}

RendezvousSet::RendezvousSet(std::vector<std::string> members) : members_(std::move(members)) {
  std::sort(members_.begin(), members_.end());
  members_.erase(std::unique(members_.begin(), members_.end()), members_.end());
  hashes_.reserve(members_.size());
  for (const std::string& member : members_) hashes_.push_back(StableHash(member));
}

size_t RendezvousSet::Owner(uint64_t key_hash) const {
  size_t best = 0;
  uint64_t best_weight = 0;
  for (size_t i = 0; i < hashes_.size(); ++i) {
    const uint64_t weight = RendezvousWeight(key_hash, hashes_[i]);
    if (i == 0 || weight > best_weight) {
      best = i;
      best_weight = weight;
    }
  }
  return best;
}

}  // namespace tcpscope
