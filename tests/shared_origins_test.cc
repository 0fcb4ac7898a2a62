// Origins sent once per snapshot and per batch: the agent's sharing keeps every end's and
// event's origin, and the service reads the same views and listings from either form.
#include "common/shared_origins.h"

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "service/host_view.h"

namespace tcpscope {
namespace {

v1::Origin OriginOf(uint32_t pid, const std::string& pod) {
  v1::Origin origin;
  origin.set_netns_inode(4026531840);
  origin.set_cgroup_id(77);
  origin.set_pid(pid);
  origin.set_command("server");
  origin.set_container_id(std::string(64, 'c'));
  origin.set_pod(pod);
  origin.set_pod_namespace("shop");
  origin.set_runtime(v1::CONTAINER_RUNTIME_CONTAINERD);
  return origin;
}

// 12 ends over 3 origins (interleaved) and 2 ends with none.
v1::Snapshot InlineSnapshot() {
  v1::Snapshot snapshot;
  snapshot.set_time_unix_ns(1800000000ULL * 1000000000ULL);
  for (int i = 0; i < 14; ++i) {
    v1::Connection* c = snapshot.add_connections();
    c->set_connection_id(static_cast<uint64_t>(100 + i));
    c->set_state(v1::TCP_STATE_ESTABLISHED);
    c->set_role(v1::ROLE_CLIENT);
    c->mutable_endpoints()->set_local_address(std::string("\x0a\0\0\x01", 4));
    c->mutable_endpoints()->set_remote_address(std::string("\x0a\0\0\x02", 4));
    c->mutable_endpoints()->set_local_port(static_cast<uint32_t>(40000 + i));
    c->mutable_endpoints()->set_remote_port(443);
    if (i < 12) *c->mutable_origin() = OriginOf(static_cast<uint32_t>(10 + i % 3), "web-0");
  }
  return snapshot;
}

TEST(SharedOriginsTest, SharingSendsEachOriginOnceAndKeepsEveryEndsOrigin) {
  const v1::Snapshot original = InlineSnapshot();
  v1::Snapshot shared = original;
  ShareSnapshotOrigins(shared);
  ASSERT_EQ(shared.origins_size(), 3);
  ASSERT_EQ(shared.connections_size(), original.connections_size());
  for (int i = 0; i < shared.connections_size(); ++i) {
    const v1::Connection& c = shared.connections(i);
    EXPECT_FALSE(c.has_origin()) << i;
    EXPECT_EQ(c.origin_ref(), i < 12 ? static_cast<uint32_t>(i % 3 + 1) : 0u) << i;
    EXPECT_TRUE(OriginEq()(SnapshotOrigin(shared, c), original.connections(i).origin())) << i;
    EXPECT_TRUE(OriginEq()(SnapshotOrigin(original, original.connections(i)),
                           original.connections(i).origin()))
        << i;
  }
  EXPECT_LT(shared.ByteSizeLong(), original.ByteSizeLong() / 2);

  // Again: nothing changes (references are kept, the table is reused).
  v1::Snapshot again = shared;
  ShareSnapshotOrigins(again);
  EXPECT_EQ(again.SerializeAsString(), shared.SerializeAsString());

  // A reference beyond the table (refused by the service) reads as no origin, never out of range.
  shared.mutable_connections(0)->set_origin_ref(9);
  EXPECT_TRUE(OriginEq()(SnapshotOrigin(shared, shared.connections(0)), v1::Origin()));
}

TEST(SharedOriginsTest, BatchesSendEachEventOriginOnce) {
  v1::Batch original;
  original.set_seq(1);
  for (int i = 0; i < 9; ++i) {
    v1::Event* event = original.add_events();
    event->set_connection_id(static_cast<uint64_t>(i));
    event->mutable_handshake();
    if (i < 8) *event->mutable_origin() = OriginOf(static_cast<uint32_t>(10 + i % 2), "web-0");
  }
  v1::Batch shared = original;
  ShareBatchOrigins(shared);
  ASSERT_EQ(shared.origins_size(), 2);
  for (int i = 0; i < shared.events_size(); ++i) {
    EXPECT_FALSE(shared.events(i).has_origin()) << i;
    EXPECT_EQ(shared.events(i).origin_ref(), i < 8 ? static_cast<uint32_t>(i % 2 + 1) : 0u) << i;
    EXPECT_TRUE(OriginEq()(EventOrigin(shared, shared.events(i)), original.events(i).origin()))
        << i;
  }
  EXPECT_LT(shared.ByteSizeLong(), original.ByteSizeLong() / 2);
}

TEST(SharedOriginsTest, ViewsOfBothFormsListTheSameEnds) {
  const v1::Snapshot original = InlineSnapshot();
  v1::Snapshot shared = original;
  ShareSnapshotOrigins(shared);
  const std::vector<v1::AtRiskReason> at_risk(original.connections_size(),
                                              v1::AT_RISK_REASON_UNSPECIFIED);
  service::OriginTable inline_table, shared_table;
  auto from_inline =
      service::HostView::Build(original, at_risk, nullptr, 1, absl::Now(), &inline_table);
  auto from_shared =
      service::HostView::Build(shared, at_risk, nullptr, 1, absl::Now(), &shared_table);
  ASSERT_EQ(from_shared->ends.size(), from_inline->ends.size());
  EXPECT_EQ(from_shared->origins.size(), 4u);  // 3 and the empty one
  EXPECT_EQ(shared_table.size(), inline_table.size());
  // Listed with the origin inline, as the agent's tracker made them (an unknown origin is the
  // empty one).
  using google::protobuf::util::MessageDifferencer;
  for (size_t i = 0; i < from_inline->ends.size(); ++i) {
    const v1::Connection& sent = original.connections(static_cast<int>(i));
    EXPECT_TRUE(
        MessageDifferencer::Equivalent(from_shared->ConnectionOf(from_shared->ends[i]), sent))
        << i;
    EXPECT_TRUE(
        MessageDifferencer::Equivalent(from_inline->ConnectionOf(from_inline->ends[i]), sent))
        << i;
  }
}

}  // namespace
}  // namespace tcpscope
