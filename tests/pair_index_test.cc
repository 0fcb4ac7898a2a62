// Pairing of connection ends across hosts and half-open judgement, on made-up snapshots and
// close events with exact times: each reason found once, at the first snapshot that may show
// it and not before; cleared when the survivor closes or the peer's end comes back; healthy
// closes, unpaired, local and ambiguous ends never judged.
#include "service/pair_index.h"

#include <algorithm>
#include <map>
#include <thread>

#include "gtest/gtest.h"

namespace tcpscope::service {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1800000000);
constexpr absl::Duration kGrace = absl::Seconds(3);

std::string V4(uint8_t last) { return std::string("\xc6\x12\x00", 3) + static_cast<char>(last); }

// One end: local a.b.c.<local>:local_port -> a.b.c.<remote>:remote_port.
v1::Connection End(uint64_t id, uint8_t local, uint32_t local_port, uint8_t remote,
                   uint32_t remote_port, v1::TcpState state, v1::Role role,
                   absl::Time state_since = absl::Time()) {
  v1::Connection connection;
  connection.set_connection_id(id);
  connection.mutable_endpoints()->set_local_address(V4(local));
  connection.mutable_endpoints()->set_local_port(local_port);
  connection.mutable_endpoints()->set_remote_address(V4(remote));
  connection.mutable_endpoints()->set_remote_port(remote_port);
  connection.set_state(state);
  connection.set_role(role);
  if (state_since != absl::Time()) {
    connection.set_state_since_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(state_since)));
  }
  return connection;
}

// The client's end on host a (198.18.0.1:40000) and the server's on host b (198.18.0.2:80).
v1::Connection ClientEnd(v1::TcpState state = v1::TCP_STATE_ESTABLISHED,
                         absl::Time since = absl::Time()) {
  return End(11, 1, 40000, 2, 80, state, v1::ROLE_CLIENT, since);
}
v1::Connection ServerEnd(v1::TcpState state = v1::TCP_STATE_ESTABLISHED,
                         absl::Time since = absl::Time()) {
  return End(22, 2, 80, 1, 40000, state, v1::ROLE_SERVER, since);
}

// 127.0.0.1:5000 -> 127.0.0.1:6000.
v1::Connection LoopbackEnd() {
  v1::Connection connection = End(5, 1, 5000, 1, 6000, v1::TCP_STATE_ESTABLISHED, v1::ROLE_CLIENT);
  connection.mutable_endpoints()->set_local_address(std::string("\x7f\x00\x00\x01", 4));
  connection.mutable_endpoints()->set_remote_address(std::string("\x7f\x00\x00\x01", 4));
  return connection;
}

class PairIndexTest : public ::testing::Test {
 protected:
  struct Host {
    std::shared_ptr<PairHost> pair;
    OriginTable origins;
    std::shared_ptr<const HostView> view;
  };

  Host& HostNamed(const std::string& name) {
    std::unique_ptr<Host>& host = hosts_[name];
    if (host == nullptr) {
      host = std::make_unique<Host>();
      host->pair = pairs_.Host(name);
    }
    return *host;
  }

  std::shared_ptr<const HostView> ViewOf(Host& host, absl::Time taken,
                                         const std::vector<v1::Connection>& connections,
                                         uint64_t round) {
    v1::Snapshot snapshot;
    snapshot.set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(taken)));
    for (const auto& connection : connections) *snapshot.add_connections() = connection;
    const std::vector<v1::AtRiskReason> at_risk(connections.size());
    return HostView::Build(snapshot, at_risk, host.pair, round, taken, &host.origins);
  }

  void Snapshot(const std::string& name, absl::Time taken,
                const std::vector<v1::Connection>& connections) {
    Host& host = HostNamed(name);
    auto view = ViewOf(host, taken, connections, host.view == nullptr ? 1 : host.view->round + 1);
    Keep(pairs_.ApplySnapshot(*host.pair, view, host.view.get()));
    host.view = std::move(view);
  }

  void Closed(const std::string& name, const v1::Connection& end, absl::Time at) {
    pairs_.ApplyCloses(*HostNamed(name).pair, {{end.connection_id(), &end.endpoints(), at}});
  }

  void Connected(const std::string& name, const std::string& boot_id) {
    pairs_.Connected(*HostNamed(name).pair, boot_id);
  }
  void Disconnected(const std::string& name) { pairs_.Disconnected(*HostNamed(name).pair); }

  // As the aggregator does every second: hosts silent for peer_down_after are down.
  void CheckSilence(const std::vector<std::pair<std::string, absl::Time>>& last_seen,
                    absl::Time now) {
    for (const auto& [name, seen] : last_seen) {
      Host& host = HostNamed(name);
      const bool down = now - seen >= kPeerDownAfter;
      if (down == host.pair->down.load()) continue;
      Keep(pairs_.SetDown(*host.pair, down, seen, host.view.get()));
    }
  }

  void Forget(const std::string& name) {
    pairs_.Forget(name);
    hosts_.erase(name);
  }

  // Both agents up, the connection seen by both at kStart.
  void Paired() {
    Connected("a", "boot-a");
    Connected("b", "boot-b");
    Snapshot("a", kStart, {ClientEnd()});
    Snapshot("b", kStart, {ServerEnd()});
  }

  // Every finding so far.
  const std::vector<HalfOpenFinding>& Found() const { return found_; }

  uint32_t HalfOpen(const std::string& name, v1::HalfOpenReason reason) {
    return HostNamed(name).pair->HalfOpenCounts()[reason];
  }

  EndStatus StatusOf(const std::string& name, const v1::Connection& connection) {
    Host& host = HostNamed(name);
    auto view = ViewOf(host, kStart, {connection}, 0);
    return pairs_.Describe(*view, /*with_peers=*/true)[0];
  }

  void Keep(Findings findings) {
    for (auto& finding : findings.half_open) found_.push_back(std::move(finding));
    for (const auto& host : findings.changed) {
      EXPECT_EQ(std::count(findings.changed.begin(), findings.changed.end(), host), 1)
          << "a changed host is reported once per pass";
    }
  }

  static constexpr absl::Duration kPeerDownAfter = absl::Seconds(30);
  PairIndex pairs_{{kGrace, kPeerDownAfter}};
  std::map<std::string, std::unique_ptr<Host>> hosts_;
  std::vector<HalfOpenFinding> found_;
};

TEST_F(PairIndexTest, PairsTheTwoEndsAndShowsEachTheOther) {
  Paired();
  const EndStatus client = StatusOf("a", ClientEnd());
  EXPECT_EQ(client.pairing, v1::PAIRING_PAIRED);
  EXPECT_EQ(client.half_open, v1::HALF_OPEN_REASON_UNSPECIFIED);
  ASSERT_TRUE(client.peer.has_value());
  EXPECT_EQ(client.peer->host->name, "b");
  EXPECT_EQ(client.peer->connection.connection_id(), 22u);
  EXPECT_TRUE(client.peer->present);
  EXPECT_TRUE(client.peer_listed);
  EXPECT_EQ(StatusOf("b", ServerEnd()).peer->host->name, "a");
  EXPECT_EQ(pairs_.stats().pairs, 1u);
  EXPECT_EQ(HalfOpen("a", v1::HALF_OPEN_PEER_CLOSED), 0);
  EXPECT_EQ(HalfOpen("b", v1::HALF_OPEN_PEER_HOST_DOWN), 0);
  EXPECT_TRUE(Found().empty());
}

TEST_F(PairIndexTest, RepeatedSnapshotsKeepTheIndexTheSize) {
  Paired();
  for (int i = 1; i <= 5; ++i) {
    Snapshot("a", kStart + absl::Seconds(i), {ClientEnd()});
    Snapshot("b", kStart + absl::Seconds(i), {ServerEnd()});
  }
  EXPECT_EQ(pairs_.stats().ends, 2u);
  EXPECT_EQ(pairs_.stats().entries, 1u);
  EXPECT_EQ(pairs_.stats().pairs, 1u);
  Snapshot("a", kStart + absl::Seconds(6), {});
  Snapshot("b", kStart + absl::Seconds(6), {});
  EXPECT_EQ(pairs_.stats().ends, 0u);
  EXPECT_EQ(pairs_.stats().entries, 0u);
  EXPECT_TRUE(Found().empty());
}

TEST_F(PairIndexTest, PeerResetLostOnTheWayIsFoundAfterTheGraceAndOnlyOnce) {
  Paired();
  const absl::Time reset = kStart + absl::Seconds(1);
  Closed("b", ServerEnd(), reset);
  Snapshot("b", kStart + absl::Seconds(2), {});
  // A's snapshots inside the grace: a RST could still be on its way.
  Snapshot("a", reset + kGrace - absl::Milliseconds(1), {ClientEnd()});
  EXPECT_TRUE(Found().empty());
  EXPECT_EQ(StatusOf("a", ClientEnd()).half_open, v1::HALF_OPEN_REASON_UNSPECIFIED);

  Snapshot("a", reset + kGrace, {ClientEnd()});
  const std::vector<HalfOpenFinding>& found = Found();
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].connection.connection_id(), 11u);
  EXPECT_EQ(found[0].connection.role(), v1::ROLE_CLIENT);
  EXPECT_EQ(found[0].reason, v1::HALF_OPEN_PEER_CLOSED);
  EXPECT_EQ(found[0].peer.host->name, "b");
  EXPECT_EQ(found[0].peer.connection.connection_id(), 22u);
  EXPECT_EQ(found[0].peer.connection.state(), v1::TCP_STATE_ESTABLISHED);
  EXPECT_EQ(found[0].peer_lost, reset);
  EXPECT_EQ(HalfOpen("a", v1::HALF_OPEN_PEER_CLOSED), 1);
  const EndStatus status = StatusOf("a", ClientEnd());
  EXPECT_EQ(status.half_open, v1::HALF_OPEN_PEER_CLOSED);
  EXPECT_FALSE(status.peer->present);
  EXPECT_FALSE(status.peer_listed);

  // Still half-open at the next snapshot: no second finding.
  Snapshot("a", reset + kGrace + absl::Seconds(1), {ClientEnd()});
  EXPECT_EQ(Found().size(), 1u);
  // A finally closes its end: cleared, and the entry goes.
  Snapshot("a", reset + kGrace + absl::Seconds(2), {});
  EXPECT_EQ(HalfOpen("a", v1::HALF_OPEN_PEER_CLOSED), 0);
  EXPECT_EQ(pairs_.stats().entries, 0u);
  EXPECT_EQ(Found().size(), 1u);
}

TEST_F(PairIndexTest, PeerStuckSendingItsFinIsPeerClosed) {
  Paired();
  const absl::Time fin = kStart + absl::Seconds(1);
  Snapshot("b", kStart + absl::Seconds(2), {ServerEnd(v1::TCP_STATE_FIN_WAIT1, fin)});
  Snapshot("a", fin + absl::Seconds(2), {ClientEnd()});
  EXPECT_TRUE(Found().empty());
  Snapshot("a", fin + kGrace, {ClientEnd()});
  ASSERT_EQ(Found().size(), 1u);
  EXPECT_EQ(Found()[0].peer.connection.state(), v1::TCP_STATE_FIN_WAIT1);
  EXPECT_EQ(HalfOpen("a", v1::HALF_OPEN_PEER_CLOSED), 1);
}

TEST_F(PairIndexTest, HealthyClosesAreNeverHalfOpen) {
  Paired();
  // A closes first: its FIN reaches B at once (CLOSE_WAIT), B closes, both ends go.
  const absl::Time fin = kStart + absl::Seconds(1);
  Snapshot("a", fin + absl::Seconds(5), {ClientEnd(v1::TCP_STATE_FIN_WAIT2, fin)});
  Snapshot("b", fin + absl::Seconds(5), {ServerEnd(v1::TCP_STATE_CLOSE_WAIT, fin)});
  Snapshot("a", fin + absl::Seconds(10), {ClientEnd(v1::TCP_STATE_TIME_WAIT, fin)});
  Snapshot("b", fin + absl::Seconds(10), {});
  Snapshot("a", fin + absl::Seconds(70), {});
  EXPECT_TRUE(Found().empty());
  EXPECT_EQ(pairs_.stats().entries, 0u);
  // A connection that both ends close between snapshots leaves nothing either.
  Snapshot("a", fin + absl::Seconds(71),
           {End(33, 1, 40001, 2, 80, v1::TCP_STATE_ESTABLISHED, v1::ROLE_CLIENT)});
  Snapshot("b", fin + absl::Seconds(71),
           {End(44, 2, 80, 1, 40001, v1::TCP_STATE_ESTABLISHED, v1::ROLE_SERVER)});
  Snapshot("b", fin + absl::Seconds(80), {});
  Snapshot("a", fin + absl::Seconds(80), {});
  EXPECT_TRUE(Found().empty());
  EXPECT_EQ(pairs_.stats().entries, 0u);
}

TEST_F(PairIndexTest, NewConnectionOnATupleIsNotJudgedByThePreviousOnesEnd) {
  Paired();
  // B closed first and sits in TIME_WAIT; A's end is gone; A connects again from the same port
  // and B's TIME_WAIT end lets it in, but B's latest snapshot still shows the old end.
  const absl::Time fin = kStart + absl::Seconds(1);
  Snapshot("b", fin + absl::Seconds(1), {ServerEnd(v1::TCP_STATE_TIME_WAIT, fin)});
  Snapshot("a", fin + absl::Seconds(1), {});
  v1::Connection again = ClientEnd();
  again.set_connection_id(12);
  Snapshot("a", fin + absl::Seconds(20), {again});
  EXPECT_TRUE(Found().empty());
  EXPECT_EQ(HalfOpen("a", v1::HALF_OPEN_PEER_CLOSED), 0);
  // B's next snapshot has the new connection: the two new ends pair; losing B's later counts.
  v1::Connection again_b = ServerEnd();
  again_b.set_connection_id(23);
  Snapshot("b", fin + absl::Seconds(21), {again_b});
  Snapshot("a", fin + absl::Seconds(21), {again});
  EXPECT_TRUE(Found().empty());
  Snapshot("b", fin + absl::Seconds(22), {});
  Snapshot("a", fin + absl::Seconds(22) + kGrace, {again});
  ASSERT_EQ(Found().size(), 1u);
  EXPECT_EQ(Found()[0].peer.connection.connection_id(), 23u);
}

TEST_F(PairIndexTest, PeerRebootedIsFoundFromItsFirstSnapshotAfterANewBootId) {
  Paired();
  Disconnected("b");
  Connected("b", "boot-b-2");
  const absl::Time back = kStart + absl::Seconds(20);
  Snapshot("b", back, {});
  Snapshot("a", back + kGrace, {ClientEnd()});
  const std::vector<HalfOpenFinding>& found = Found();
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].reason, v1::HALF_OPEN_PEER_REBOOTED);
  EXPECT_EQ(found[0].peer_lost, back);
  EXPECT_EQ(HalfOpen("a", v1::HALF_OPEN_PEER_REBOOTED), 1);
  EXPECT_EQ(HalfOpen("a", v1::HALF_OPEN_PEER_CLOSED), 0);
  EXPECT_EQ(HalfOpen("a", v1::HALF_OPEN_PEER_REBOOTED), 1u);
}

TEST_F(PairIndexTest, AgentRestartWithTheSameBootIdIsPeerClosed) {
  Paired();
  Disconnected("b");
  Connected("b", "boot-b");
  Snapshot("b", kStart + absl::Seconds(5), {});
  Snapshot("a", kStart + absl::Seconds(5) + kGrace, {ClientEnd()});
  ASSERT_EQ(Found().size(), 1u);
  EXPECT_EQ(Found()[0].reason, v1::HALF_OPEN_PEER_CLOSED);
}

TEST_F(PairIndexTest, SilentPeerHostIsDownUntilItComesBackWithTheConnection) {
  Paired();
  Disconnected("b");
  const absl::Time last_heard = kStart + absl::Seconds(1);
  CheckSilence({{"a", kStart + absl::Seconds(29)}, {"b", last_heard}},
               last_heard + absl::Seconds(29));
  EXPECT_TRUE(Found().empty());
  CheckSilence({{"a", kStart + absl::Seconds(30)}, {"b", last_heard}},
               last_heard + absl::Seconds(30));
  const std::vector<HalfOpenFinding>& found = Found();
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].reason, v1::HALF_OPEN_PEER_HOST_DOWN);
  EXPECT_EQ(found[0].peer_lost, last_heard);
  EXPECT_EQ(HalfOpen("a", v1::HALF_OPEN_PEER_HOST_DOWN), 1);

  // B's agent is back and the connection is still there on B: cleared, nothing new found.
  Connected("b", "boot-b");
  Snapshot("b", kStart + absl::Seconds(40), {ServerEnd()});
  EXPECT_EQ(HalfOpen("a", v1::HALF_OPEN_PEER_HOST_DOWN), 0);
  EXPECT_EQ(StatusOf("a", ClientEnd()).half_open, v1::HALF_OPEN_REASON_UNSPECIFIED);
  EXPECT_EQ(Found().size(), 1u);
}

// A finding names both ends' origins (their workloads are the reporter's to count).
TEST_F(PairIndexTest, FindingsNameBothEndsOrigins) {
  Connected("a", "boot-a");
  Connected("b", "boot-b");
  v1::Connection client = ClientEnd();
  client.mutable_origin()->set_pod_namespace("shop");
  client.mutable_origin()->set_pod("web-0");
  client.mutable_origin()->set_container_name("web");
  v1::Connection server = ServerEnd();
  server.mutable_origin()->set_container_name("postgres");
  server.mutable_origin()->set_pid(88);
  server.mutable_origin()->set_command("postgres");
  Snapshot("a", kStart, {client});
  Snapshot("b", kStart, {server});
  Disconnected("b");
  const absl::Time last_heard = kStart + absl::Seconds(1);
  CheckSilence({{"a", last_heard}, {"b", last_heard}}, last_heard + absl::Seconds(30));
  const std::vector<HalfOpenFinding>& found = Found();
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].connection.origin().pod(), "web-0");
  EXPECT_EQ(found[0].peer.connection.origin().container_name(), "postgres");
  EXPECT_EQ(found[0].peer.connection.origin().pid(), 88u);
  EXPECT_EQ(found[0].peer.connection.origin().command(), "postgres");
  EXPECT_EQ(HalfOpen("a", v1::HALF_OPEN_PEER_HOST_DOWN), 1u);
  // B comes back with the connection: cleared.
  Connected("b", "boot-b");
  Snapshot("b", kStart + absl::Seconds(40), {server});
  EXPECT_EQ(HalfOpen("a", v1::HALF_OPEN_PEER_HOST_DOWN), 0u);
}

TEST_F(PairIndexTest, ExpiredPeerHostLeavesItsPeersHalfOpen) {
  Paired();
  Disconnected("b");
  CheckSilence({{"b", kStart}}, kStart + absl::Seconds(30));
  ASSERT_EQ(Found().size(), 1u);
  Forget("b");
  Snapshot("a", kStart + absl::Seconds(40), {ClientEnd()});
  EXPECT_EQ(Found().size(), 1u);  // the same reason: not found again
  EXPECT_EQ(HalfOpen("a", v1::HALF_OPEN_PEER_HOST_DOWN), 1);
  EXPECT_FALSE(StatusOf("a", ClientEnd()).peer->present);
}

TEST_F(PairIndexTest, UnpairedLocalAndAmbiguousEndsAreNotGuessed) {
  Connected("a", "boot-a");
  Snapshot("a", kStart,
           {ClientEnd(), LoopbackEnd(),
            End(6, 1, 7000, 3, 8000, v1::TCP_STATE_ESTABLISHED, v1::ROLE_CLIENT),
            End(7, 3, 8000, 1, 7000, v1::TCP_STATE_ESTABLISHED, v1::ROLE_SERVER),
            End(8, 1, 9000, 2, 80, v1::TCP_STATE_SYN_SENT, v1::ROLE_CLIENT)});
  auto view = ViewOf(HostNamed("a"), kStart,
                     {ClientEnd(), LoopbackEnd(),
                      End(6, 1, 7000, 3, 8000, v1::TCP_STATE_ESTABLISHED, v1::ROLE_CLIENT),
                      End(8, 1, 9000, 2, 80, v1::TCP_STATE_SYN_SENT, v1::ROLE_CLIENT)},
                     0);
  std::vector<EndStatus> statuses = pairs_.Describe(*view, true);
  EXPECT_EQ(statuses[0].pairing, v1::PAIRING_UNPAIRED);     // no agent has the peer's end
  EXPECT_EQ(statuses[1].pairing, v1::PAIRING_LOCAL);        // loopback
  EXPECT_EQ(statuses[2].pairing, v1::PAIRING_LOCAL);        // both ends on a
  EXPECT_EQ(statuses[3].pairing, v1::PAIRING_UNSPECIFIED);  // handshake in progress

  // Hosts b and c both claim the server's end (overlapping private addresses): ambiguous, and
  // never half-open even when one of them loses it.
  Connected("b", "boot-b");
  Connected("c", "boot-c");
  Snapshot("b", kStart, {ServerEnd()});
  Snapshot("c", kStart, {End(99, 2, 80, 1, 40000, v1::TCP_STATE_ESTABLISHED, v1::ROLE_SERVER)});
  EXPECT_EQ(StatusOf("a", ClientEnd()).pairing, v1::PAIRING_AMBIGUOUS);
  Snapshot("c", kStart + absl::Seconds(1), {});
  Snapshot("a", kStart + absl::Seconds(10), {ClientEnd()});
  EXPECT_TRUE(Found().empty());
}

// Hosts apply their snapshots at once, each from its own thread as its stream does, while
// listings describe them: every connection pairs across the shards, and nothing is found.
TEST(PairIndexConcurrencyTest, HostsApplyingAtOnceStillPairEveryEnd) {
  constexpr int kHosts = 8;
  constexpr int kConnections = 300;  // per host, as the client; the next host is the server
  constexpr int kRounds = 20;
  PairIndex pairs({kGrace, absl::Minutes(1)});
  auto ends_of = [](int self) {
    std::vector<v1::Connection> ends;
    const int server = (self + 1) % kHosts;
    const int client = (self + kHosts - 1) % kHosts;
    for (int i = 0; i < kConnections; ++i) {
      const uint32_t port = static_cast<uint32_t>(10000 + i);
      ends.push_back(End(static_cast<uint64_t>(self * 100000 + i), static_cast<uint8_t>(self + 1),
                         port, static_cast<uint8_t>(server + 1), 443, v1::TCP_STATE_ESTABLISHED,
                         v1::ROLE_CLIENT));
      ends.push_back(End(static_cast<uint64_t>(self * 100000 + 50000 + i),
                         static_cast<uint8_t>(self + 1), 443, static_cast<uint8_t>(client + 1),
                         port, v1::TCP_STATE_ESTABLISHED, v1::ROLE_SERVER));
    }
    return ends;
  };
  std::atomic<size_t> findings{0};
  std::atomic<int> done{0};
  absl::Mutex views_mu;
  std::vector<std::shared_ptr<const HostView>> views(kHosts);
  std::vector<std::thread> threads;
  for (int h = 0; h < kHosts; ++h) {
    threads.emplace_back([&, h] {
      std::shared_ptr<PairHost> host = pairs.Host("host-" + std::to_string(h));
      pairs.Connected(*host, "boot");
      OriginTable origins;
      v1::Snapshot snapshot;
      for (const auto& end : ends_of(h)) *snapshot.add_connections() = end;
      const std::vector<v1::AtRiskReason> at_risk(static_cast<size_t>(2 * kConnections));
      std::shared_ptr<const HostView> previous;
      for (int round = 1; round <= kRounds; ++round) {
        const absl::Time taken = kStart + absl::Seconds(round);
        snapshot.set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(taken)));
        auto view =
            HostView::Build(snapshot, at_risk, host, static_cast<uint64_t>(round), taken, &origins);
        {
          absl::MutexLock lock(&views_mu);
          views[static_cast<size_t>(h)] = view;
        }
        findings += pairs.ApplySnapshot(*host, view, previous.get()).half_open.size();
        previous = std::move(view);
      }
      absl::MutexLock lock(&views_mu);
      views[static_cast<size_t>(h)] = previous;  // the index points into it
      ++done;
    });
  }
  size_t described = 0;
  while (done.load() < kHosts) {
    for (int h = 0; h < kHosts; ++h) {
      std::shared_ptr<const HostView> view;
      {
        absl::MutexLock lock(&views_mu);
        view = views[static_cast<size_t>(h)];
      }
      if (view != nullptr) described += pairs.Describe(*view, /*with_peers=*/true).size();
    }
  }
  for (auto& thread : threads) thread.join();
  EXPECT_GT(described, 0u);
  EXPECT_EQ(findings.load(), 0u);
  const PairIndex::Stats stats = pairs.stats();
  EXPECT_EQ(stats.pairs, static_cast<size_t>(kHosts * kConnections));
  EXPECT_EQ(stats.entries, static_cast<size_t>(kHosts * kConnections));
  EXPECT_EQ(stats.ends, static_cast<size_t>(2 * kHosts * kConnections));
  for (int h = 0; h < kHosts; ++h) {
    for (const EndStatus& status : pairs.Describe(*views[static_cast<size_t>(h)], false)) {
      ASSERT_EQ(status.pairing, v1::PAIRING_PAIRED);
    }
  }
}

}  // namespace
}  // namespace tcpscope::service
