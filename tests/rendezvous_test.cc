// Rendezvous hashing (common/rendezvous.h): the same choices in every process and build (pinned
// vectors: agents and replicas must agree without talking), removing a member moves only the
// keys it owned, and 3000 host names spread evenly over 3 replicas.
#include "common/rendezvous.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"

namespace tcpscope {
namespace {

const std::vector<std::string> kReplicas = {"10.0.0.1:7700", "10.0.0.2:7700", "10.0.0.3:7700"};

std::string HostName(int i) { return absl::StrFormat("node-%05d", i); }

TEST(RendezvousTest, HashIsPinned) {
  // FNV-1a then splitmix64's finalizer: a change here rehomes every agent of a fleet.
  EXPECT_EQ(StableHash(""), 0xf52a15e9a9b5e89bULL);
  EXPECT_EQ(StableHash("node-00001"), 0xd5ab66a5eaaf87abULL);
}

TEST(RendezvousTest, RankingsArePinnedAndStableAcrossCalls) {
  const std::map<std::string, std::vector<std::string>> expected = {
      {"node-00000", {"10.0.0.3:7700", "10.0.0.2:7700", "10.0.0.1:7700"}},
      {"node-00001", {"10.0.0.3:7700", "10.0.0.1:7700", "10.0.0.2:7700"}},
      {"web-1", {"10.0.0.2:7700", "10.0.0.3:7700", "10.0.0.1:7700"}},
  };
  const std::vector<std::string> reversed(kReplicas.rbegin(), kReplicas.rend());
  for (const auto& [key, ranking] : expected) {
    EXPECT_EQ(RendezvousRanking(key, kReplicas), ranking) << key;
    EXPECT_EQ(RendezvousRanking(key, kReplicas), ranking) << key << ", again";
    EXPECT_EQ(RendezvousRanking(key, reversed), ranking) << key << ", members in another order";
  }
}

TEST(RendezvousTest, SetOwnerIsTheRankingsFirst) {
  const RendezvousSet set(kReplicas);
  for (int i = 0; i < 300; ++i) {
    EXPECT_EQ(set.members()[set.Owner(StableHash(HostName(i)))],
              RendezvousRanking(HostName(i), kReplicas).front())
        << HostName(i);
  }
}

TEST(RendezvousTest, RemovingAMemberMovesOnlyItsKeys) {
  const std::vector<std::string> without_third = {kReplicas[0], kReplicas[1]};
  int moved = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::vector<std::string> before = RendezvousRanking(HostName(i), kReplicas);
    const std::vector<std::string> after = RendezvousRanking(HostName(i), without_third);
    if (before.front() == kReplicas[2]) {
      ++moved;
      EXPECT_EQ(after.front(), before[1]) << HostName(i) << " moves to its second choice";
    } else {
      EXPECT_EQ(after.front(), before.front()) << HostName(i) << " stays";
    }
  }
  EXPECT_EQ(moved, 1000);  // exactly the keys the third replica owned (below)
}

TEST(RendezvousTest, ThreeThousandHostsSpreadEvenlyOverThreeReplicas) {
  const RendezvousSet set(kReplicas);
  std::vector<int> owned(kReplicas.size());
  for (int i = 0; i < 3000; ++i) ++owned[set.Owner(StableHash(HostName(i)))];
  // The hash is fixed, so the split is exact: within 1.1 % of a third each.
  EXPECT_EQ(owned, (std::vector<int>{989, 1011, 1000}));
}

TEST(RendezvousTest, NoMembersNoRanking) {
  EXPECT_TRUE(RendezvousRanking("node-00000", {}).empty());
}

}  // namespace
}  // namespace tcpscope
