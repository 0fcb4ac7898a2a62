// Dump diffing: which events and snapshot a sequence of sock_diag dumps yields.
#include "agent/connection_tracker.h"

#include <vector>

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
  TrackerUpdate update = tracker.Update(
      {Listener(), End(10, kEstablished, false), End(11, kEstablished, true)}, kStart);
  EXPECT_TRUE(update.events.empty());
  ASSERT_EQ(update.snapshot.connections_size(), 2);
  EXPECT_EQ(update.snapshot.listeners(), 1u);
  EXPECT_EQ(update.snapshot.connections(0).role(), v1::ROLE_CLIENT);
  EXPECT_EQ(update.snapshot.connections(1).role(), v1::ROLE_SERVER);
  EXPECT_EQ(update.snapshot.connections(0).origin().netns_inode(), 4026531840u);
  EXPECT_EQ(update.snapshot.connections(0).srtt_us(), 42u);
}

TEST(ConnectionTrackerTest, NewConnectionIsOneHandshakePerEnd) {
  ConnectionTracker tracker(1);
  tracker.Update({Listener()}, kStart);
  TrackerUpdate update =
      tracker.Update({Listener(), End(10, kEstablished, false), End(11, kEstablished, true)},
                     kStart + absl::Seconds(1));
  ASSERT_EQ(update.events.size(), 2u);
  EXPECT_TRUE(update.events[0].has_handshake());
  EXPECT_EQ(update.events[0].role(), v1::ROLE_CLIENT);
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
  EXPECT_EQ(Count(update, v1::Event::kHandshake), 1);
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

}  // namespace
}  // namespace tcpscope::agent
