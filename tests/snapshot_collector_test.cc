// When a snapshot leaves an empty namespace unwalked (SocketBirths), and that it never does so
// blindly: a birth since the empty walk, a walk too soon after the last birth, or a namespace
// with any socket means a walk.
#include "agent/snapshot_collector.h"

#include <memory>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace tcpscope::agent {
namespace {

constexpr uint64_t kSecond = SnapshotCollector::kBirthSettleNs;

// Dumps what the test puts in `sockets`, and counts its walks.
class FakeDumper : public SocketDumper {
 public:
  FakeDumper(int* walks, std::vector<SocketRecord>* sockets) : walks_(walks), sockets_(sockets) {}
  absl::StatusOr<std::vector<SocketRecord>> Dump() override {
    ++*walks_;
    return *sockets_;
  }
  uint64_t netns_inode() const override { return 4026531840; }

 private:
  int* walks_;
  std::vector<SocketRecord>* sockets_;
};

class SnapshotCollectorTest : public ::testing::Test {
 protected:
  SnapshotCollectorTest()
      : collector_(
            SnapshotCollector::ForNamespace(std::make_unique<FakeDumper>(&walks_, &sockets_))) {}

  // One snapshot with these births; true if it walked the namespace.
  bool Walked(uint64_t generation, uint64_t last_birth_ns, uint64_t walk_started_ns) {
    const int before = walks_;
    const SnapshotCollector::Result result =
        collector_->Collect(absl::Now(), SocketBirths{generation, last_birth_ns, walk_started_ns});
    EXPECT_EQ(result.namespaces, 1);
    EXPECT_EQ(result.skipped_namespaces, walks_ == before ? 1 : 0);
    return walks_ > before;
  }

  static SocketRecord Listener() {
    SocketRecord record;
    record.family = 2;
    record.state = 10;  // TCP_LISTEN
    record.local_port = 8080;
    record.cookie = 7;
    return record;
  }

  int walks_ = 0;
  std::vector<SocketRecord> sockets_;
  std::unique_ptr<SnapshotCollector> collector_;
};

TEST_F(SnapshotCollectorTest, AnEmptyNamespaceIsSkippedUntilTheNextBirth) {
  EXPECT_TRUE(Walked(5, 10 * kSecond, 20 * kSecond));  // empty, births long settled
  EXPECT_FALSE(Walked(5, 10 * kSecond, 30 * kSecond));
  EXPECT_FALSE(Walked(5, 10 * kSecond, 40 * kSecond));
  // A birth (anywhere watched): walked again, and the listener it made is in the snapshot.
  sockets_.push_back(Listener());
  EXPECT_TRUE(Walked(6, 41 * kSecond, 50 * kSecond));
  EXPECT_TRUE(Walked(6, 41 * kSecond, 60 * kSecond));  // not empty: walked every time
}

TEST_F(SnapshotCollectorTest, AWalkTooSoonAfterABirthDoesNotCountAsEmpty) {
  // The socket born half a second before may not be in the hash tables yet.
  EXPECT_TRUE(Walked(5, 10 * kSecond, 10 * kSecond + kSecond / 2));
  EXPECT_TRUE(Walked(5, 10 * kSecond, 12 * kSecond));  // settled now: this walk counts
  EXPECT_FALSE(Walked(5, 10 * kSecond, 14 * kSecond));
}

TEST_F(SnapshotCollectorTest, WithoutBirthsEveryNamespaceIsWalked) {
  for (int i = 0; i < 3; ++i) {
    const int before = walks_;
    const SnapshotCollector::Result result = collector_->Collect(absl::Now());
    EXPECT_EQ(walks_, before + 1);
    EXPECT_EQ(result.skipped_namespaces, 0);
  }
}

}  // namespace
}  // namespace tcpscope::agent
