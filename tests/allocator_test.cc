// When a source hands its free memory back after a snapshot (common/allocator.h).
#include "common/allocator.h"

#include "gtest/gtest.h"

namespace tcpscope {
namespace {

constexpr size_t kSmall = SnapshotMemory::kSmallSnapshot;

TEST(SnapshotMemoryTest, SmallSnapshotsReleaseEveryTime) {
  SnapshotMemory memory;
  EXPECT_TRUE(memory.ReleaseAfter(0));
  EXPECT_TRUE(memory.ReleaseAfter(100));
  EXPECT_TRUE(memory.ReleaseAfter(kSmall - 1));
}

TEST(SnapshotMemoryTest, LargeSteadySnapshotsKeepTheirPages) {
  SnapshotMemory memory;
  EXPECT_FALSE(memory.ReleaseAfter(131072));  // the first: nothing larger before it
  EXPECT_FALSE(memory.ReleaseAfter(131072));
  EXPECT_FALSE(memory.ReleaseAfter(70000));  // smaller, not by half
  EXPECT_FALSE(memory.ReleaseAfter(140000));
}

TEST(SnapshotMemoryTest, TheEndOfABurstReleases) {
  SnapshotMemory memory;
  EXPECT_FALSE(memory.ReleaseAfter(131072));
  EXPECT_TRUE(memory.ReleaseAfter(60000));   // under half the last: the burst is over
  EXPECT_FALSE(memory.ReleaseAfter(60000));  // and steady again
  EXPECT_TRUE(memory.ReleaseAfter(kSmall / 2));
}

}  // namespace
}  // namespace tcpscope
