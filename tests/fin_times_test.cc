// FIN times from the eBPF program date the snapshots' FIN_WAIT1 ends exactly, the process that
// closed an end names it when no file does any more, and notes are forgotten once their ends have
// left the snapshots.
#include "agent/fin_times.h"

#include "gtest/gtest.h"

namespace tcpscope::agent {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1800000000);

uint64_t Nanos(absl::Time time) { return static_cast<uint64_t>(absl::ToUnixNanos(time)); }

v1::Snapshot SnapshotOf(uint64_t id, v1::TcpState state, absl::Time since) {
  v1::Snapshot snapshot;
  v1::Connection* connection = snapshot.add_connections();
  connection->set_connection_id(id);
  connection->set_state(state);
  connection->set_state_since_unix_ns(Nanos(since));
  return snapshot;
}

TEST(FinTimesTest, DatesFinWait1ByTheFinAndForgetsEndsGoneFromTheSnapshots) {
  FinTimes fins;
  const absl::Time fin = kNow - absl::Milliseconds(700);
  fins.Note(7, fin);
  fins.Note(8, kNow - absl::Seconds(30));  // an end that left FIN_WAIT1 long ago

  // The tracker saw FIN_WAIT1 first at this dump (kNow); the FIN went 700 ms earlier.
  v1::Snapshot snapshot = SnapshotOf(7, v1::TCP_STATE_FIN_WAIT1, kNow);
  fins.Apply(&snapshot, kNow, absl::Seconds(20));
  EXPECT_EQ(snapshot.connections(0).state_since_unix_ns(), Nanos(fin));
  EXPECT_EQ(fins.size(), 1u);  // 8 is gone; 7 stays while in the snapshots

  // Later states keep their own time (entering FIN_WAIT2 is not sending the FIN).
  snapshot = SnapshotOf(7, v1::TCP_STATE_FIN_WAIT2, kNow + absl::Seconds(1));
  fins.Apply(&snapshot, kNow + absl::Seconds(1), absl::Seconds(20));
  EXPECT_EQ(snapshot.connections(0).state_since_unix_ns(), Nanos(kNow + absl::Seconds(1)));
  fins.Apply(&snapshot, kNow + absl::Seconds(21), absl::Seconds(20));
  EXPECT_EQ(fins.size(), 1u);  // still in the snapshot (FIN_WAIT2, then TIME_WAIT)
  v1::Snapshot empty;
  fins.Apply(&empty, kNow + absl::Seconds(22), absl::Seconds(20));
  EXPECT_EQ(fins.size(), 0u);
}

TEST(FinTimesTest, NamesTheProcessOfEndsNoFileHolds) {
  FinTimes fins;
  fins.Note(7, kNow, 4242, 99, "nginx");
  fins.Note(8, kNow, 4243, 99, "nginx");
  fins.Note(9, kNow);  // the program did not know the process
  v1::Snapshot snapshot = SnapshotOf(7, v1::TCP_STATE_TIME_WAIT, kNow);
  v1::Connection* owned = snapshot.add_connections();  // still held: its scanned owner stays
  owned->set_connection_id(8);
  owned->set_state(v1::TCP_STATE_FIN_WAIT2);
  owned->mutable_origin()->set_pid(17);
  owned->mutable_origin()->set_command("app");
  v1::Connection* unknown = snapshot.add_connections();
  unknown->set_connection_id(9);
  unknown->set_state(v1::TCP_STATE_TIME_WAIT);
  EXPECT_EQ(fins.Apply(&snapshot, kNow, absl::Seconds(20)), std::vector<int>{0});
  EXPECT_EQ(snapshot.connections(0).origin().pid(), 4242u);
  EXPECT_EQ(snapshot.connections(0).origin().command(), "nginx");
  EXPECT_EQ(snapshot.connections(0).origin().cgroup_id(), 99u);
  EXPECT_EQ(snapshot.connections(1).origin().pid(), 17u);
  EXPECT_EQ(snapshot.connections(2).origin().pid(), 0u);
}

TEST(FinTimesTest, NeverMovesATimeLater) {
  FinTimes fins;
  fins.Note(7, kNow);
  v1::Snapshot snapshot = SnapshotOf(7, v1::TCP_STATE_FIN_WAIT1, kNow - absl::Seconds(1));
  fins.Apply(&snapshot, kNow, absl::Seconds(20));
  EXPECT_EQ(snapshot.connections(0).state_since_unix_ns(), Nanos(kNow - absl::Seconds(1)));
}

TEST(FinTimesTest, UsesAndKeepsTheLaterOfTwoNotesOfAnEnd) {
  FinTimes fins;
  fins.Note(7, kNow - absl::Seconds(2), 1, 5, "first");
  fins.Note(7, kNow - absl::Seconds(1), 2, 6, "a-command-longer-than-sixteen");
  fins.Note(8, kNow, 3, 7, "other");  // an end the snapshot does not hold yet
  v1::Snapshot snapshot = SnapshotOf(7, v1::TCP_STATE_TIME_WAIT, kNow);
  EXPECT_EQ(fins.Apply(&snapshot, kNow, absl::Seconds(20)), std::vector<int>{0});
  EXPECT_EQ(snapshot.connections(0).origin().pid(), 2u);
  EXPECT_EQ(snapshot.connections(0).origin().cgroup_id(), 6u);
  EXPECT_EQ(snapshot.connections(0).origin().command(), "a-command-longer");  // the kernel's 16
  EXPECT_EQ(fins.size(), 2u);  // 7's later note, and 8's

  // The next dump shows 8 and still 7: each is named by its own note.
  snapshot = SnapshotOf(8, v1::TCP_STATE_TIME_WAIT, kNow);
  v1::Connection* again = snapshot.add_connections();
  again->set_connection_id(7);
  again->set_state(v1::TCP_STATE_TIME_WAIT);
  EXPECT_EQ(fins.Apply(&snapshot, kNow + absl::Seconds(10), absl::Seconds(20)),
            (std::vector<int>{0, 1}));
  EXPECT_EQ(snapshot.connections(0).origin().pid(), 3u);
  EXPECT_EQ(snapshot.connections(1).origin().pid(), 2u);
  EXPECT_EQ(fins.size(), 2u);
}

TEST(FinTimesTest, HoldsAtMostItsLimitOfNotes) {
  FinTimes fins;
  for (uint64_t id = 0; id < FinTimes::kMaxNotes + 10; ++id) fins.Note(id, kNow);
  EXPECT_EQ(fins.size(), FinTimes::kMaxNotes);
  v1::Snapshot empty;
  fins.Apply(&empty, kNow + absl::Seconds(30), absl::Seconds(20));
  EXPECT_EQ(fins.size(), 0u);
}

}  // namespace
}  // namespace tcpscope::agent
