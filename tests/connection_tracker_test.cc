// Dump diffing: which events and snapshot a sequence of sock_diag dumps yields.
#include "agent/connection_tracker.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "gtest/gtest.h"

namespace tcpscope::agent {
namespace {

constexpr uint8_t kEstablished = 1, kFinWait1 = 4, kFinWait2 = 5, kTimeWait = 6, kCloseWait = 8,
                  kLastAck = 9, kListen = 10, kClosing = 11, kSynSent = 2;
constexpr uint16_t kServerPort = 8080;

SocketRecord Listener() {
  SocketRecord record;
  record.family = 2;
  record.state = kListen;
  record.local_address = {127, 0, 0, 1};
  record.local_port = kServerPort;
  record.cookie = 1;
  return record;
}

// One end of a connection between 127.0.0.1:port and 127.0.0.1:8080.
SocketRecord End(uint64_t cookie, uint8_t state, bool server, uint16_t client_port = 40000) {
  SocketRecord record;
  record.family = 2;
  record.state = state;
  record.local_address = {127, 0, 0, 1};
  record.remote_address = {127, 0, 0, 1};
  record.local_port = server ? kServerPort : client_port;
  record.remote_port = server ? client_port : kServerPort;
  record.cookie = cookie;
  TcpInfo info;
  info.bytes_acked = 100 * cookie;
  info.bytes_received = 7;
  info.rtt_us = 42;
  record.tcp_info = info;
  return record;
}

const absl::Time kStart = absl::FromUnixSeconds(1800000000);

int Count(const TrackerUpdate& update, v1::Event::KindCase kind) {
  int count = 0;
  for (const v1::Event& event : update.events) count += event.kind_case() == kind;
  return count;
}

TEST(ConnectionTrackerTest, StateSinceIsTheFirstDumpShowingTheState) {
  ConnectionTracker tracker(1);
  auto since = [](const TrackerUpdate& update) {
    return absl::FromUnixNanos(
        static_cast<int64_t>(update.snapshot.connections(0).state_since_unix_ns()));
  };
  EXPECT_EQ(since(tracker.Update({End(10, kEstablished, true)}, kStart)), kStart);
  EXPECT_EQ(since(tracker.Update({End(10, kEstablished, true)}, kStart + absl::Seconds(1))),
            kStart);
  EXPECT_EQ(since(tracker.Update({End(10, kCloseWait, true)}, kStart + absl::Seconds(2))),
            kStart + absl::Seconds(2));
  EXPECT_EQ(since(tracker.Update({End(10, kCloseWait, true)}, kStart + absl::Seconds(9))),
            kStart + absl::Seconds(2));
}

TEST(ConnectionTrackerTest, BaselineYieldsSnapshotButNoEvents) {
  ConnectionTracker tracker(4026531840);
  TrackerUpdate update =
      tracker.Update({Listener(), End(10, kEstablished, false), End(11, kEstablished, true),
                      End(12, kEstablished, false, /*client_port=*/40001)},
                     kStart);
  EXPECT_TRUE(update.events.empty());
  ASSERT_EQ(update.snapshot.connections_size(), 3);
  EXPECT_EQ(update.snapshot.listeners(), 1u);
  // Its peer, in the same namespace, was accepted by the listener: this end connected.
  EXPECT_EQ(update.snapshot.connections(0).role(), v1::ROLE_CLIENT);
  EXPECT_EQ(update.snapshot.connections(1).role(), v1::ROLE_SERVER);
  // No listener holds this end's port and its peer is elsewhere: it may be a server whose
  // listener closed, so its role is not known.
  EXPECT_EQ(update.snapshot.connections(2).role(), v1::ROLE_UNSPECIFIED);
  EXPECT_EQ(update.snapshot.connections(0).origin().netns_inode(), 4026531840u);
  EXPECT_EQ(update.snapshot.connections(0).srtt_us(), 42u);
}

// A tracker of snapshots only (the eBPF source's: its events come from the kernel) builds
// the same snapshots and no event, for new, closing and vanished connections alike.
TEST(ConnectionTrackerTest, SnapshotsOnlyYieldTheSameSnapshotsAndNoEvents) {
  ConnectionTracker deriving(1);
  ConnectionTracker snapshots_only(1, nullptr, ConnectionTracker::Events::kNone);
  const std::vector<std::vector<SocketRecord>> dumps = {
      {Listener()},
      {Listener(), End(10, kEstablished, false), End(11, kEstablished, true)},
      {Listener(), End(10, kTimeWait, false), End(12, kEstablished, false, 40001)},
      {Listener()},
  };
  int derived = 0;
  for (size_t i = 0; i < dumps.size(); ++i) {
    const absl::Time now = kStart + absl::Seconds(static_cast<int64_t>(i));
    const TrackerUpdate expected = deriving.Update(dumps[i], now);
    const TrackerUpdate update = snapshots_only.Update(dumps[i], now);
    derived += static_cast<int>(expected.events.size());
    EXPECT_TRUE(update.events.empty()) << "dump " << i;
    EXPECT_EQ(update.snapshot.SerializeAsString(), expected.snapshot.SerializeAsString())
        << "dump " << i;
  }
  // What the deriving tracker made of them: 3 handshakes, 3 closes (at TIME_WAIT, and the two
  // that vanished).
  EXPECT_EQ(derived, 6);
}

TEST(ConnectionTrackerTest, NewConnectionIsOneHandshakePerEnd) {
  ConnectionTracker tracker(1);
  tracker.Update({Listener()}, kStart);
  TrackerUpdate update =
      tracker.Update({Listener(), End(10, kEstablished, false), End(11, kEstablished, true)},
                     kStart + absl::Seconds(1));
  ASSERT_EQ(update.events.size(), 2u);
  EXPECT_TRUE(update.events[0].has_handshake());
  EXPECT_EQ(update.events[0].role(), v1::ROLE_CLIENT);  // from its peer, accepted here
  EXPECT_EQ(update.events[0].connection_id(), 10u);
  EXPECT_EQ(update.events[0].endpoints().local_port(), 40000u);
  EXPECT_EQ(update.events[0].endpoints().local_address(), std::string("\x7f\0\0\x01", 4));
  EXPECT_EQ(update.events[1].role(), v1::ROLE_SERVER);
  // The same connections in the next dump are not new.
  update = tracker.Update({Listener(), End(10, kEstablished, false), End(11, kEstablished, true)},
                          kStart + absl::Seconds(2));
  EXPECT_TRUE(update.events.empty());
}

TEST(ConnectionTrackerTest, HandshakeWhenSynSentBecomesEstablished) {
  ConnectionTracker tracker(1);
  tracker.Update({}, kStart);
  TrackerUpdate update = tracker.Update({End(10, kSynSent, false)}, kStart + absl::Seconds(1));
  EXPECT_TRUE(update.events.empty());
  EXPECT_EQ(update.snapshot.connections(0).state(), v1::TCP_STATE_SYN_SENT);
  update = tracker.Update({End(10, kEstablished, false)}, kStart + absl::Seconds(2));
  ASSERT_EQ(Count(update, v1::Event::kHandshake), 1);
  EXPECT_EQ(update.events[0].role(), v1::ROLE_CLIENT);  // seen connecting: known
}

TEST(ConnectionTrackerTest, LocalCloseThroughFinWaitAndTimeWait) {
  ConnectionTracker tracker(1);
  tracker.Update({}, kStart);
  tracker.Update({End(10, kEstablished, false)}, kStart + absl::Seconds(1));
  TrackerUpdate update = tracker.Update({End(10, kFinWait2, false)}, kStart + absl::Seconds(2));
  EXPECT_TRUE(update.events.empty());
  SocketRecord time_wait = End(10, kTimeWait, false);
  time_wait.tcp_info.reset();  // TIME_WAIT sockets carry no tcp_info
  update = tracker.Update({time_wait}, kStart + absl::Seconds(3));
  ASSERT_EQ(update.events.size(), 1u);
  const v1::Close& close = update.events[0].close();
  EXPECT_EQ(close.initiator(), v1::CLOSE_INITIATOR_LOCAL);
  EXPECT_EQ(close.reason(), v1::CLOSE_REASON_FIN);
  EXPECT_EQ(close.lifetime_us(), 2000000u);
  EXPECT_EQ(close.bytes_sent(), 1000u);  // from the last full socket
  EXPECT_EQ(close.last_state(), v1::TCP_STATE_TIME_WAIT);
  // TIME_WAIT expiring later is not a second close.
  update = tracker.Update({}, kStart + absl::Seconds(60));
  EXPECT_TRUE(update.events.empty());
  EXPECT_EQ(tracker.tracked(), 0u);
}

TEST(ConnectionTrackerTest, RemoteCloseThroughCloseWait) {
  ConnectionTracker tracker(1);
  tracker.Update({Listener()}, kStart);
  tracker.Update({Listener(), End(11, kEstablished, true)}, kStart + absl::Seconds(1));
  tracker.Update({Listener(), End(11, kCloseWait, true)}, kStart + absl::Seconds(2));
  tracker.Update({Listener(), End(11, kLastAck, true)}, kStart + absl::Seconds(3));
  TrackerUpdate update = tracker.Update({Listener()}, kStart + absl::Seconds(4));
  ASSERT_EQ(update.events.size(), 1u);
  EXPECT_EQ(update.events[0].role(), v1::ROLE_SERVER);
  EXPECT_EQ(update.events[0].close().initiator(), v1::CLOSE_INITIATOR_REMOTE);
  EXPECT_EQ(update.events[0].close().reason(), v1::CLOSE_REASON_FIN);
}

TEST(ConnectionTrackerTest, SimultaneousClose) {
  ConnectionTracker tracker(1);
  tracker.Update({}, kStart);
  tracker.Update({End(10, kEstablished, false)}, kStart + absl::Seconds(1));
  tracker.Update({End(10, kFinWait1, false)}, kStart + absl::Seconds(2));
  tracker.Update({End(10, kClosing, false)}, kStart + absl::Seconds(3));
  TrackerUpdate update = tracker.Update({End(10, kTimeWait, false)}, kStart + absl::Seconds(4));
  ASSERT_EQ(update.events.size(), 1u);
  EXPECT_EQ(update.events[0].close().initiator(), v1::CLOSE_INITIATOR_SIMULTANEOUS);
}

TEST(ConnectionTrackerTest, VanishedFromEstablishedIsUnknownOther) {
  ConnectionTracker tracker(1);
  tracker.Update({End(10, kEstablished, false)}, kStart);  // baseline: lifetime unknown
  TrackerUpdate update = tracker.Update({}, kStart + absl::Seconds(1));
  ASSERT_EQ(update.events.size(), 1u);
  EXPECT_EQ(update.events[0].close().initiator(), v1::CLOSE_INITIATOR_UNKNOWN);
  EXPECT_EQ(update.events[0].close().reason(), v1::CLOSE_REASON_OTHER);
  EXPECT_FALSE(update.events[0].close().has_lifetime_us());
}

TEST(ConnectionTrackerTest, ShortConnectionSeenOnlyInTimeWait) {
  ConnectionTracker tracker(1);
  tracker.Update({}, kStart);
  TrackerUpdate update = tracker.Update({End(10, kTimeWait, false)}, kStart + absl::Seconds(1));
  EXPECT_EQ(Count(update, v1::Event::kHandshake), 1);
  EXPECT_EQ(Count(update, v1::Event::kClose), 1);
}

TEST(ConnectionTrackerTest, KeepaliveStateFromTimer) {
  ConnectionTracker tracker(1);
  SocketRecord record = End(10, kEstablished, false);
  record.timer = DiagTimer::kKeepalive;
  record.timer_expires_ms = 6500;
  record.timer_retrans = 2;
  TrackerUpdate update = tracker.Update({record}, kStart);
  const v1::KeepaliveState& keepalive = update.snapshot.connections(0).keepalive();
  EXPECT_TRUE(keepalive.enabled());
  EXPECT_EQ(keepalive.next_probe_ms(), 6500u);
  EXPECT_EQ(keepalive.probes_out(), 2u);
  // A retransmission timer hides the keepalive timer: the last known state stays.
  record.timer = DiagTimer::kRetransmit;
  update = tracker.Update({record}, kStart + absl::Seconds(1));
  EXPECT_TRUE(update.snapshot.connections(0).keepalive().enabled());
  EXPECT_EQ(update.snapshot.connections(0).keepalive().next_probe_ms(), 0u);
  record.timer = DiagTimer::kNone;
  update = tracker.Update({record}, kStart + absl::Seconds(2));
  EXPECT_FALSE(update.snapshot.connections(0).keepalive().enabled());
}

TEST(ConnectionTrackerTest, BoundOnlySocketsAreNotConnections) {
  ConnectionTracker tracker(1);
  tracker.Update({}, kStart);
  SocketRecord bound = End(10, /*TCP_CLOSE=*/7, false);
  bound.tcp_info.reset();
  TrackerUpdate update = tracker.Update({bound}, kStart + absl::Seconds(1));
  EXPECT_TRUE(update.events.empty());
  EXPECT_EQ(update.snapshot.connections_size(), 0);
  // An established connection that was reset and still has its fd open is in CLOSE: it ends.
  tracker.Update({End(11, kEstablished, false)}, kStart + absl::Seconds(2));
  update = tracker.Update({End(11, 7, false)}, kStart + absl::Seconds(3));
  EXPECT_EQ(Count(update, v1::Event::kClose), 1);
}

TEST(ConnectionTrackerTest, V4MappedAddressesBecomeIpv4) {
  ConnectionTracker tracker(1);
  SocketRecord record = End(10, kEstablished, true);
  record.family = 10;
  record.local_address = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
  record.remote_address = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2};
  TrackerUpdate update = tracker.Update({record}, kStart);
  EXPECT_EQ(update.snapshot.connections(0).endpoints().local_address(),
            std::string("\x0a\0\0\x01", 4));
  EXPECT_EQ(update.snapshot.connections(0).endpoints().remote_address(),
            std::string("\x0a\0\0\x02", 4));
}

TEST(ConnectionTrackerTest, Ipv6AddressesKeepSixteenBytes) {
  ConnectionTracker tracker(1);
  SocketRecord record = End(10, kEstablished, false);
  record.family = 10;
  record.local_address = {};
  record.local_address[15] = 1;
  TrackerUpdate update = tracker.Update({record}, kStart);
  EXPECT_EQ(update.snapshot.connections(0).endpoints().local_address().size(), 16u);
}

// What a destroy notification carries: state CLOSE, the final tcp_info, no inode.
SocketRecord Destroyed(uint64_t cookie, bool server, uint64_t bytes_acked) {
  SocketRecord record = End(cookie, /*TCP_CLOSE=*/7, server);
  record.tcp_info->state = 7;
  record.tcp_info->bytes_acked = bytes_acked;
  return record;
}

TEST(ConnectionTrackerTest, DestroyAfterCloseWaitIsRemoteCloseRightAway) {
  ConnectionTracker tracker(1);
  tracker.Update({Listener()}, kStart);
  tracker.Update({Listener(), End(11, kEstablished, true)}, kStart + absl::Seconds(1));
  tracker.Update({Listener(), End(11, kCloseWait, true)}, kStart + absl::Seconds(2));
  std::vector<v1::Event> events =
      tracker.OnDestroyed({Destroyed(11, true, 5555)}, kStart + absl::Milliseconds(2500));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].connection_id(), 11u);
  EXPECT_EQ(events[0].role(), v1::ROLE_SERVER);
  EXPECT_EQ(events[0].time_unix_ns(),
            static_cast<uint64_t>(absl::ToUnixNanos(kStart + absl::Milliseconds(2500))));
  const v1::Close& close = events[0].close();
  EXPECT_EQ(close.initiator(), v1::CLOSE_INITIATOR_REMOTE);
  EXPECT_EQ(close.reason(), v1::CLOSE_REASON_FIN);
  EXPECT_EQ(close.lifetime_us(), 1500000u);
  EXPECT_EQ(close.bytes_sent(), 5555u);  // the final tcp_info, newer than any dump's
  EXPECT_EQ(close.last_state(), v1::TCP_STATE_CLOSE);
  // The dump that no longer shows it does not close it again.
  TrackerUpdate update = tracker.Update({Listener()}, kStart + absl::Seconds(3));
  EXPECT_TRUE(update.events.empty());
  EXPECT_EQ(tracker.tracked(), 0u);
}

TEST(ConnectionTrackerTest, DestroyAfterFinWaitIsLocalAndTimeWaitSuccessorIsNotASecondClose) {
  ConnectionTracker tracker(1);
  tracker.Update({}, kStart);
  tracker.Update({End(10, kEstablished, false)}, kStart + absl::Seconds(1));
  tracker.Update({End(10, kFinWait2, false)}, kStart + absl::Seconds(2));
  std::vector<v1::Event> events =
      tracker.OnDestroyed({Destroyed(10, false, 1234)}, kStart + absl::Seconds(2));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].close().initiator(), v1::CLOSE_INITIATOR_LOCAL);
  EXPECT_EQ(events[0].close().reason(), v1::CLOSE_REASON_FIN);
  EXPECT_EQ(events[0].close().bytes_sent(), 1234u);
  // The kernel keeps the cookie for the TIME_WAIT socket that replaces the full one.
  SocketRecord time_wait = End(10, kTimeWait, false);
  time_wait.tcp_info.reset();
  TrackerUpdate update = tracker.Update({time_wait}, kStart + absl::Seconds(3));
  EXPECT_TRUE(update.events.empty());
  ASSERT_EQ(update.snapshot.connections_size(), 1);
  EXPECT_EQ(update.snapshot.connections(0).state(), v1::TCP_STATE_TIME_WAIT);
  update = tracker.Update({}, kStart + absl::Seconds(63));
  EXPECT_TRUE(update.events.empty());
  EXPECT_EQ(tracker.tracked(), 0u);
}

// Closing states that no dump caught are lost to the destroy message too: it always says CLOSE.
TEST(ConnectionTrackerTest, DestroyFromEstablishedIsUnknownOtherAndNotRepeated) {
  ConnectionTracker tracker(1);
  tracker.Update({}, kStart);
  tracker.Update({End(10, kEstablished, false)}, kStart + absl::Seconds(1));
  std::vector<v1::Event> events = tracker.OnDestroyed(
      {Destroyed(10, false, 1), Destroyed(10, false, 1)}, kStart + absl::Seconds(2));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].close().initiator(), v1::CLOSE_INITIATOR_UNKNOWN);
  EXPECT_EQ(events[0].close().reason(), v1::CLOSE_REASON_OTHER);
  EXPECT_TRUE(tracker.OnDestroyed({Destroyed(10, false, 1)}, kStart + absl::Seconds(2)).empty());
  TrackerUpdate update = tracker.Update({End(10, kTimeWait, false)}, kStart + absl::Seconds(3));
  EXPECT_TRUE(update.events.empty());
}

TEST(ConnectionTrackerTest, DestroyKeepsTrackedEndpointsAfterAbort) {
  ConnectionTracker tracker(1);
  tracker.Update({}, kStart);
  tracker.Update({End(10, kEstablished, false)}, kStart + absl::Seconds(1));
  SocketRecord aborted = Destroyed(10, false, 0);
  aborted.remote_port = 0;  // tcp_disconnect() clears it before the socket is freed
  std::vector<v1::Event> events = tracker.OnDestroyed({aborted}, kStart + absl::Seconds(2));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].endpoints().remote_port(), kServerPort);
  EXPECT_EQ(events[0].endpoints().local_port(), 40000u);
}

TEST(ConnectionTrackerTest, DestroyOfUnknownCookieIsIgnored) {
  ConnectionTracker tracker(1);
  tracker.Update({}, kStart);
  tracker.Update({End(10, kEstablished, false)}, kStart + absl::Seconds(1));
  EXPECT_TRUE(tracker.OnDestroyed({Destroyed(99, false, 1)}, kStart + absl::Seconds(2)).empty());
  EXPECT_EQ(tracker.tracked(), 1u);
  // If it did connect, its TIME_WAIT end still yields a handshake and a close, as without
  // destroy notifications.
  TrackerUpdate update = tracker.Update({End(10, kEstablished, false), End(99, kTimeWait, false)},
                                        kStart + absl::Seconds(3));
  EXPECT_EQ(Count(update, v1::Event::kHandshake), 1);
  EXPECT_EQ(Count(update, v1::Event::kClose), 1);
}

TEST(ConnectionTrackerTest, DestroyBeforeBaselineIsIgnored) {
  ConnectionTracker tracker(1);
  EXPECT_TRUE(tracker.OnDestroyed({Destroyed(10, false, 1)}, kStart).empty());
  TrackerUpdate update = tracker.Update({End(11, kEstablished, false)}, kStart);
  EXPECT_TRUE(update.events.empty());
}

TEST(ConnectionTrackerTest, DestroyOfBaselineConnectionHasNoLifetime) {
  ConnectionTracker tracker(1);
  tracker.Update({End(10, kEstablished, false)}, kStart);
  std::vector<v1::Event> events =
      tracker.OnDestroyed({Destroyed(10, false, 1)}, kStart + absl::Seconds(1));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_FALSE(events[0].close().has_lifetime_us());
}

TEST(ConnectionTrackerTest, DestroyDuringHandshakeIsNoCloseAndForgetsIt) {
  ConnectionTracker tracker(1);
  tracker.Update({}, kStart);
  tracker.Update({End(10, kSynSent, false)}, kStart + absl::Seconds(1));
  EXPECT_TRUE(tracker.OnDestroyed({Destroyed(10, false, 0)}, kStart + absl::Seconds(2)).empty());
  EXPECT_EQ(tracker.tracked(), 0u);
  TrackerUpdate update = tracker.Update({}, kStart + absl::Seconds(3));
  EXPECT_TRUE(update.events.empty());
}

TEST(ConnectionTrackerTest, AnEndTwiceInOneDumpIsOneConnection) {
  ConnectionTracker tracker(1);
  tracker.Update({}, kStart);
  // The kernel's walk can meet a socket twice when it moves between buckets meanwhile.
  TrackerUpdate update = tracker.Update(
      {End(10, kEstablished, false), End(11, kEstablished, true), End(10, kEstablished, false)},
      kStart + absl::Seconds(1));
  EXPECT_EQ(tracker.tracked(), 2u);
  EXPECT_EQ(Count(update, v1::Event::kHandshake), 2);
  update = tracker.Update({End(11, kEstablished, true)}, kStart + absl::Seconds(2));
  EXPECT_EQ(Count(update, v1::Event::kClose), 1);
  EXPECT_EQ(update.events[0].connection_id(), 10u);
  EXPECT_FALSE(tracker.IsOpen(10));
  EXPECT_TRUE(tracker.IsOpen(11));
}

TEST(ConnectionTrackerTest, KeepsEveryEndThroughDumpsInAnyOrderAndAfterABurst) {
  ConnectionTracker tracker(1);
  tracker.Update({}, kStart);
  // A burst of 5000 ends, then the same ends in reverse order, then only every tenth of them.
  std::vector<SocketRecord> dump;
  for (uint64_t cookie = 100; cookie < 5100; ++cookie) {
    dump.push_back(End(cookie, kEstablished, false, static_cast<uint16_t>(cookie)));
  }
  TrackerUpdate update = tracker.Update(dump, kStart + absl::Seconds(1));
  EXPECT_EQ(Count(update, v1::Event::kHandshake), 5000);
  std::reverse(dump.begin(), dump.end());
  update = tracker.Update(dump, kStart + absl::Seconds(2));
  EXPECT_TRUE(update.events.empty());
  ASSERT_EQ(update.snapshot.connections_size(), 5000);
  EXPECT_EQ(update.snapshot.connections(0).connection_id(), 5099u);
  EXPECT_EQ(update.snapshot.connections(0).endpoints().local_port(), 5099u);
  EXPECT_EQ(update.snapshot.connections(0).first_seen_unix_ns(),
            static_cast<uint64_t>(absl::ToUnixNanos(kStart + absl::Seconds(1))));
  std::vector<SocketRecord> few;
  for (const SocketRecord& record : dump) {
    if (record.cookie % 10 == 0) few.push_back(record);
  }
  update = tracker.Update(few, kStart + absl::Seconds(3));
  EXPECT_EQ(Count(update, v1::Event::kClose), 4500);
  EXPECT_EQ(tracker.tracked(), 500u);
  for (uint64_t cookie = 100; cookie < 5100; ++cookie) {
    EXPECT_EQ(tracker.IsOpen(cookie), cookie % 10 == 0) << cookie;
  }
  update = tracker.Update(few, kStart + absl::Seconds(4));
  EXPECT_TRUE(update.events.empty());
  EXPECT_EQ(update.snapshot.connections_size(), 500);
}

// Socket owners: which process holds each end, by the inode of its record.

constexpr uint8_t kSynRecv = 3;

SocketRecord WithInode(SocketRecord record, uint32_t inode) {
  record.inode = inode;
  return record;
}

OwnerRef Owner(uint32_t pid, const std::string& command, uint64_t cgroup_id = 0) {
  return std::make_shared<const SocketOwner>(
      SocketOwner{.pid = pid, .cgroup_id = cgroup_id, .command = command});
}

class FakeWorkloads : public WorkloadResolver {
 public:
  std::shared_ptr<const Workload> Resolve(uint64_t cgroup_id) override {
    ++calls;
    auto it = workloads.find(cgroup_id);
    return it == workloads.end() ? nullptr : it->second;
  }
  absl::flat_hash_map<uint64_t, std::shared_ptr<const Workload>> workloads;
  int calls = 0;
};

TEST(ConnectionTrackerOwnerTest, EndsGetTheirInodesOwner) {
  ConnectionTracker tracker(1);
  OwnerTable owners;
  owners.sockets[500] = Owner(77, "client", 9);
  TrackerUpdate update = tracker.Update(
      {WithInode(End(10, kEstablished, false), 500), WithInode(End(11, kEstablished, true), 501)},
      kStart, &owners);
  ASSERT_EQ(update.snapshot.connections_size(), 2);
  const v1::Origin& client = update.snapshot.connections(0).origin();
  EXPECT_EQ(client.pid(), 77u);
  EXPECT_EQ(client.command(), "client");
  EXPECT_EQ(client.cgroup_id(), 9u);
  EXPECT_EQ(client.netns_inode(), 1u);
  // Inode not in the table (a process out of sight), no listener: no owner.
  EXPECT_EQ(update.snapshot.connections(1).origin().pid(), 0u);
  EXPECT_EQ(update.snapshot.connections(1).origin().command(), "");
  ASSERT_EQ(update.owners.size(), 1u);
  EXPECT_EQ(update.owners.at(10)->pid, 77u);
}

TEST(ConnectionTrackerOwnerTest, OwnerIsStickyThroughTimeWaitAndIntoTheClose) {
  ConnectionTracker tracker(1);
  OwnerTable owners;
  owners.sockets[500] = Owner(77, "client");
  tracker.Update({}, kStart, &owners);
  tracker.Update({WithInode(End(10, kEstablished, false), 500)}, kStart + absl::Seconds(1),
                 &owners);
  // The process closed: TIME_WAIT has no inode, and the next scan no longer has the socket.
  OwnerTable later;
  TrackerUpdate update =
      tracker.Update({End(10, kTimeWait, false)}, kStart + absl::Seconds(2), &later);
  ASSERT_EQ(Count(update, v1::Event::kClose), 1);
  EXPECT_EQ(update.events[0].origin().pid(), 77u);
  EXPECT_EQ(update.events[0].origin().command(), "client");
  ASSERT_EQ(update.snapshot.connections_size(), 1);
  EXPECT_EQ(update.snapshot.connections(0).origin().pid(), 77u);
  EXPECT_EQ(update.owners.at(10)->pid, 77u);
  // Without a table at all (owner scans off or failed), the owner stays too.
  update = tracker.Update({End(10, kTimeWait, false)}, kStart + absl::Seconds(3));
  EXPECT_EQ(update.snapshot.connections(0).origin().pid(), 77u);
}

TEST(ConnectionTrackerOwnerTest, OwnerFollowsTheSocketToANewHolder) {
  ConnectionTracker tracker(1);
  OwnerTable owners;
  owners.sockets[500] = Owner(77, "parent");
  tracker.Update({WithInode(End(10, kEstablished, false), 500)}, kStart, &owners);
  owners.sockets[500] = Owner(78, "worker");  // handed over (SCM_RIGHTS), parent closed it
  TrackerUpdate update = tracker.Update({WithInode(End(10, kEstablished, false), 500)},
                                        kStart + absl::Seconds(1), &owners);
  EXPECT_EQ(update.snapshot.connections(0).origin().pid(), 78u);
}

TEST(ConnectionTrackerOwnerTest, UnacceptedServerEndsGetTheListenersOwner) {
  ConnectionTracker tracker(1);
  OwnerTable owners;
  owners.sockets[400] = Owner(50, "nginx", 3);
  owners.sockets[600] = Owner(51, "worker", 3);
  tracker.Update({WithInode(Listener(), 400)}, kStart, &owners);
  // A request socket (SYN_RECV) and an established end in the accept queue: neither has an
  // inode yet. The handshake event of the latter carries the listener's process.
  TrackerUpdate update = tracker.Update(
      {WithInode(Listener(), 400), End(20, kSynRecv, true, 40001), End(21, kEstablished, true)},
      kStart + absl::Seconds(1), &owners);
  ASSERT_EQ(update.snapshot.connections_size(), 2);
  EXPECT_EQ(update.snapshot.connections(0).origin().pid(), 50u);
  EXPECT_EQ(update.snapshot.connections(1).origin().pid(), 50u);
  EXPECT_EQ(update.snapshot.connections(1).origin().command(), "nginx");
  ASSERT_EQ(Count(update, v1::Event::kHandshake), 1);
  EXPECT_EQ(update.events[0].origin().pid(), 50u);
  // Accepted by a worker process: its own inode and owner from then on.
  update = tracker.Update({WithInode(Listener(), 400), WithInode(End(21, kEstablished, true), 600)},
                          kStart + absl::Seconds(2), &owners);
  EXPECT_EQ(update.snapshot.connections(0).origin().pid(), 51u);
  // A client end on an ephemeral port is never given a listener's owner.
  update = tracker.Update({WithInode(Listener(), 400), End(22, kEstablished, false)},
                          kStart + absl::Seconds(3), &owners);
  EXPECT_EQ(update.snapshot.connections(0).origin().pid(), 0u);
}

TEST(ConnectionTrackerOwnerTest, SharedListenerPortTakesTheOwnerSsListsFirst) {
  ConnectionTracker tracker(1);
  OwnerTable owners;
  owners.sockets[400] = Owner(60, "a");
  owners.sockets[401] = Owner(90, "b");
  owners.sockets[402] = Owner(70, "c");
  TrackerUpdate update = tracker.Update({WithInode(Listener(), 400), WithInode(Listener(), 401),
                                         WithInode(Listener(), 402), End(20, kSynRecv, true)},
                                        kStart, &owners);
  EXPECT_EQ(update.snapshot.connections(0).origin().pid(), 90u);
}

TEST(ConnectionTrackerOwnerTest, WorkloadOfTheOwnersCgroup) {
  FakeWorkloads workloads;
  auto web = std::make_shared<Workload>();
  web->container_id = std::string(64, 'a');
  web->container_name = "web";
  web->pod_namespace = "shop";
  web->pod = "web-0";
  web->pod_uid = "uid-1";
  web->runtime = v1::CONTAINER_RUNTIME_CONTAINERD;
  workloads.workloads[9] = web;
  ConnectionTracker tracker(1, &workloads);
  OwnerTable owners;
  owners.sockets[500] = Owner(77, "web", 9);
  owners.sockets[501] = Owner(78, "host-daemon", 1);
  tracker.Update({}, kStart, &owners);
  TrackerUpdate update = tracker.Update(
      {WithInode(End(10, kEstablished, false), 500),
       WithInode(End(11, kEstablished, false, 40001), 501), End(12, kEstablished, false, 40002)},
      kStart + absl::Seconds(1), &owners);
  ASSERT_EQ(update.snapshot.connections_size(), 3);
  const v1::Origin& in_pod = update.snapshot.connections(0).origin();
  EXPECT_EQ(in_pod.container_id(), std::string(64, 'a'));
  EXPECT_EQ(in_pod.container_name(), "web");
  EXPECT_EQ(in_pod.pod_namespace(), "shop");
  EXPECT_EQ(in_pod.pod(), "web-0");
  EXPECT_EQ(in_pod.pod_uid(), "uid-1");
  EXPECT_EQ(in_pod.runtime(), v1::CONTAINER_RUNTIME_CONTAINERD);
  EXPECT_EQ(update.snapshot.connections(1).origin().container_id(), "");
  EXPECT_EQ(update.snapshot.connections(1).origin().pid(), 78u);
  EXPECT_EQ(update.snapshot.connections(2).origin().container_id(), "");
  // The handshake events carry it too.
  ASSERT_EQ(Count(update, v1::Event::kHandshake), 3);
  EXPECT_EQ(update.events[0].origin().pod(), "web-0");
  // No owner, no cgroup: the resolver is not asked.
  EXPECT_EQ(workloads.calls, 4);
}

}  // namespace
}  // namespace tcpscope::agent
