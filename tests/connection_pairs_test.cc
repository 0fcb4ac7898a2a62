// Pairing of connection ends across hosts and half-open judgement, on made-up snapshots and
// close events with exact times: each reason found once, at the first snapshot that may show
// it and not before; cleared when the survivor closes or the peer's end comes back; healthy
// closes, unpaired, local and ambiguous ends never judged.
#include "service/connection_pairs.h"

#include <map>
#include <memory>
#include <sstream>

#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "tests/harness/metrics_text.h"

namespace tcpscope::service {
namespace {

using testing::MetricValue;

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

class ConnectionPairsTest : public ::testing::Test {
 protected:
  ConnectionPairsTest() { log_.Subscribe(nullptr); }

  void Snapshot(const std::shared_ptr<const std::string>& host, absl::Time taken,
                std::vector<v1::Connection> connections) {
    auto snapshot = std::make_shared<v1::Snapshot>();
    snapshot->set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(taken)));
    for (auto& connection : connections) *snapshot->add_connections() = std::move(connection);
    pairs_.Apply(host, v1::Batch(), snapshot, taken);
  }

  void Closed(const std::shared_ptr<const std::string>& host, const v1::Connection& end,
              absl::Time at) {
    v1::Batch batch;
    v1::Event* event = batch.add_events();
    event->set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(at)));
    event->set_connection_id(end.connection_id());
    *event->mutable_endpoints() = end.endpoints();
    event->mutable_close()->set_reason(v1::CLOSE_REASON_RESET_SENT);
    pairs_.Apply(host, batch, nullptr, at);
  }

  // As the aggregator does: the host's half-open series are reported into its HostMetrics.
  void Connected(const std::shared_ptr<const std::string>& host, const std::string& boot_id,
                 std::shared_ptr<WorkloadMetrics> workloads = nullptr) {
    std::shared_ptr<HostMetrics>& metrics = host_metrics_[*host];
    if (metrics == nullptr) metrics = std::make_shared<HostMetrics>(&metrics_, *host);
    pairs_.Connected(host, boot_id, std::move(workloads), metrics);
  }

  // Both agents up, the connection seen by both at kStart.
  void Paired() {
    Connected(a_, "boot-a");
    Connected(b_, "boot-b");
    Snapshot(a_, kStart, {ClientEnd()});
    Snapshot(b_, kStart, {ServerEnd()});
  }

  // The half_open events published so far.
  std::vector<v1::Event> Findings() {
    std::vector<v1::Event> events;
    for (const auto& batch : log_.Subscribe(nullptr).batches) {
      for (const v1::Event& event : batch->batch->events()) {
        EXPECT_TRUE(event.has_half_open());
        events.push_back(event);
      }
    }
    return events;
  }

  std::optional<double> Gauge(const std::string& host, const std::string& reason) {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, metrics_.Collect());
    return MetricValue(out.str(), "tcpscope_connections_half_open",
                       {{"host", host}, {"reason", reason}});
  }

  EndStatus StatusOf(const std::string& host, const v1::Connection& connection) {
    v1::Snapshot snapshot;
    *snapshot.add_connections() = connection;
    return pairs_.Describe(host, snapshot, /*with_peers=*/true)[0];
  }

  const std::shared_ptr<const std::string> a_ = std::make_shared<const std::string>("a");
  const std::shared_ptr<const std::string> b_ = std::make_shared<const std::string>("b");
  ServiceMetrics metrics_;
  std::map<std::string, std::shared_ptr<HostMetrics>> host_metrics_;
  EventLog log_{1000};
  ConnectionPairs pairs_{&metrics_, &log_, {kGrace, absl::Seconds(30)}};
};

TEST_F(ConnectionPairsTest, PairsTheTwoEndsAndShowsEachTheOther) {
  Paired();
  const EndStatus client = StatusOf("a", ClientEnd());
  EXPECT_EQ(client.pairing, v1::PAIRING_PAIRED);
  EXPECT_EQ(client.half_open, v1::HALF_OPEN_REASON_UNSPECIFIED);
  ASSERT_TRUE(client.peer.has_value());
  EXPECT_EQ(client.peer->host(), "b");
  EXPECT_EQ(client.peer->connection().connection_id(), 22u);
  EXPECT_TRUE(client.peer->present());
  EXPECT_TRUE(client.peer_listed);
  EXPECT_EQ(StatusOf("b", ServerEnd()).peer->host(), "a");
  EXPECT_EQ(pairs_.stats().pairs, 1u);
  EXPECT_EQ(Gauge("a", "peer_closed"), 0);
  EXPECT_EQ(Gauge("b", "peer_host_down"), 0);
  EXPECT_TRUE(Findings().empty());
}

TEST_F(ConnectionPairsTest, RepeatedSnapshotsKeepTheIndexTheSize) {
  Paired();
  for (int i = 1; i <= 5; ++i) {
    Snapshot(a_, kStart + absl::Seconds(i), {ClientEnd()});
    Snapshot(b_, kStart + absl::Seconds(i), {ServerEnd()});
  }
  EXPECT_EQ(pairs_.stats().ends, 2u);
  EXPECT_EQ(pairs_.stats().entries, 1u);
  EXPECT_EQ(pairs_.stats().pairs, 1u);
  Snapshot(a_, kStart + absl::Seconds(6), {});
  Snapshot(b_, kStart + absl::Seconds(6), {});
  EXPECT_EQ(pairs_.stats().ends, 0u);
  EXPECT_EQ(pairs_.stats().entries, 0u);
  EXPECT_TRUE(Findings().empty());
}

TEST_F(ConnectionPairsTest, PeerResetLostOnTheWayIsFoundAfterTheGraceAndOnlyOnce) {
  Paired();
  const absl::Time reset = kStart + absl::Seconds(1);
  Closed(b_, ServerEnd(), reset);
  Snapshot(b_, kStart + absl::Seconds(2), {});
  // A's snapshots inside the grace: a RST could still be on its way.
  Snapshot(a_, reset + kGrace - absl::Milliseconds(1), {ClientEnd()});
  EXPECT_TRUE(Findings().empty());
  EXPECT_EQ(StatusOf("a", ClientEnd()).half_open, v1::HALF_OPEN_REASON_UNSPECIFIED);

  Snapshot(a_, reset + kGrace, {ClientEnd()});
  std::vector<v1::Event> found = Findings();
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].connection_id(), 11u);
  EXPECT_EQ(found[0].role(), v1::ROLE_CLIENT);
  EXPECT_EQ(found[0].half_open().reason(), v1::HALF_OPEN_PEER_CLOSED);
  EXPECT_EQ(found[0].half_open().peer_host(), "b");
  EXPECT_EQ(found[0].half_open().peer_connection_id(), 22u);
  EXPECT_EQ(found[0].half_open().peer_last_state(), v1::TCP_STATE_ESTABLISHED);
  EXPECT_EQ(found[0].half_open().peer_lost_unix_ns(),
            static_cast<uint64_t>(absl::ToUnixNanos(reset)));
  EXPECT_EQ(Gauge("a", "peer_closed"), 1);
  const EndStatus status = StatusOf("a", ClientEnd());
  EXPECT_EQ(status.half_open, v1::HALF_OPEN_PEER_CLOSED);
  EXPECT_FALSE(status.peer->present());
  EXPECT_FALSE(status.peer_listed);

  // Still half-open at the next snapshot: no second finding.
  Snapshot(a_, reset + kGrace + absl::Seconds(1), {ClientEnd()});
  EXPECT_EQ(Findings().size(), 1u);
  // A finally closes its end: cleared, and the entry goes.
  Snapshot(a_, reset + kGrace + absl::Seconds(2), {});
  EXPECT_EQ(Gauge("a", "peer_closed"), 0);
  EXPECT_EQ(pairs_.stats().entries, 0u);
  EXPECT_EQ(Findings().size(), 1u);
}

TEST_F(ConnectionPairsTest, PeerStuckSendingItsFinIsPeerClosed) {
  Paired();
  const absl::Time fin = kStart + absl::Seconds(1);
  Snapshot(b_, kStart + absl::Seconds(2), {ServerEnd(v1::TCP_STATE_FIN_WAIT1, fin)});
  Snapshot(a_, fin + absl::Seconds(2), {ClientEnd()});
  EXPECT_TRUE(Findings().empty());
  Snapshot(a_, fin + kGrace, {ClientEnd()});
  ASSERT_EQ(Findings().size(), 1u);
  EXPECT_EQ(Findings()[0].half_open().peer_last_state(), v1::TCP_STATE_FIN_WAIT1);
  EXPECT_EQ(Gauge("a", "peer_closed"), 1);
}

TEST_F(ConnectionPairsTest, HealthyClosesAreNeverHalfOpen) {
  Paired();
  // A closes first: its FIN reaches B at once (CLOSE_WAIT), B closes, both ends go.
  const absl::Time fin = kStart + absl::Seconds(1);
  Snapshot(a_, fin + absl::Seconds(5), {ClientEnd(v1::TCP_STATE_FIN_WAIT2, fin)});
  Snapshot(b_, fin + absl::Seconds(5), {ServerEnd(v1::TCP_STATE_CLOSE_WAIT, fin)});
  Snapshot(a_, fin + absl::Seconds(10), {ClientEnd(v1::TCP_STATE_TIME_WAIT, fin)});
  Snapshot(b_, fin + absl::Seconds(10), {});
  Snapshot(a_, fin + absl::Seconds(70), {});
  EXPECT_TRUE(Findings().empty());
  EXPECT_EQ(pairs_.stats().entries, 0u);
  // A connection that both ends close between snapshots leaves nothing either.
  Snapshot(a_, fin + absl::Seconds(71),
           {End(33, 1, 40001, 2, 80, v1::TCP_STATE_ESTABLISHED, v1::ROLE_CLIENT)});
  Snapshot(b_, fin + absl::Seconds(71),
           {End(44, 2, 80, 1, 40001, v1::TCP_STATE_ESTABLISHED, v1::ROLE_SERVER)});
  Snapshot(b_, fin + absl::Seconds(80), {});
  Snapshot(a_, fin + absl::Seconds(80), {});
  EXPECT_TRUE(Findings().empty());
  EXPECT_EQ(pairs_.stats().entries, 0u);
}

TEST_F(ConnectionPairsTest, NewConnectionOnATupleIsNotJudgedByThePreviousOnesEnd) {
  Paired();
  // B closed first and sits in TIME_WAIT; A's end is gone; A connects again from the same port
  // and B's TIME_WAIT end lets it in, but B's latest snapshot still shows the old end.
  const absl::Time fin = kStart + absl::Seconds(1);
  Snapshot(b_, fin + absl::Seconds(1), {ServerEnd(v1::TCP_STATE_TIME_WAIT, fin)});
  Snapshot(a_, fin + absl::Seconds(1), {});
  v1::Connection again = ClientEnd();
  again.set_connection_id(12);
  Snapshot(a_, fin + absl::Seconds(20), {again});
  EXPECT_TRUE(Findings().empty());
  EXPECT_EQ(Gauge("a", "peer_closed"), 0);
  // B's next snapshot has the new connection: the two new ends pair; losing B's later counts.
  v1::Connection again_b = ServerEnd();
  again_b.set_connection_id(23);
  Snapshot(b_, fin + absl::Seconds(21), {again_b});
  Snapshot(a_, fin + absl::Seconds(21), {again});
  EXPECT_TRUE(Findings().empty());
  Snapshot(b_, fin + absl::Seconds(22), {});
  Snapshot(a_, fin + absl::Seconds(22) + kGrace, {again});
  ASSERT_EQ(Findings().size(), 1u);
  EXPECT_EQ(Findings()[0].half_open().peer_connection_id(), 23u);
}

TEST_F(ConnectionPairsTest, PeerRebootedIsFoundFromItsFirstSnapshotAfterANewBootId) {
  Paired();
  pairs_.Disconnected("b");
  Connected(b_, "boot-b-2");
  const absl::Time back = kStart + absl::Seconds(20);
  Snapshot(b_, back, {});
  Snapshot(a_, back + kGrace, {ClientEnd()});
  std::vector<v1::Event> found = Findings();
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].half_open().reason(), v1::HALF_OPEN_PEER_REBOOTED);
  EXPECT_EQ(found[0].half_open().peer_lost_unix_ns(),
            static_cast<uint64_t>(absl::ToUnixNanos(back)));
  EXPECT_EQ(Gauge("a", "peer_rebooted"), 1);
  EXPECT_EQ(Gauge("a", "peer_closed"), 0);
  EXPECT_EQ(pairs_.HalfOpenCounts("a")[v1::HALF_OPEN_PEER_REBOOTED], 1u);
}

TEST_F(ConnectionPairsTest, AgentRestartWithTheSameBootIdIsPeerClosed) {
  Paired();
  pairs_.Disconnected("b");
  Connected(b_, "boot-b");
  Snapshot(b_, kStart + absl::Seconds(5), {});
  Snapshot(a_, kStart + absl::Seconds(5) + kGrace, {ClientEnd()});
  ASSERT_EQ(Findings().size(), 1u);
  EXPECT_EQ(Findings()[0].half_open().reason(), v1::HALF_OPEN_PEER_CLOSED);
}

TEST_F(ConnectionPairsTest, SilentPeerHostIsDownUntilItComesBackWithTheConnection) {
  Paired();
  pairs_.Disconnected("b");
  const absl::Time last_heard = kStart + absl::Seconds(1);
  pairs_.CheckSilence({{"a", kStart + absl::Seconds(29)}, {"b", last_heard}},
                      last_heard + absl::Seconds(29));
  EXPECT_TRUE(Findings().empty());
  pairs_.CheckSilence({{"a", kStart + absl::Seconds(30)}, {"b", last_heard}},
                      last_heard + absl::Seconds(30));
  std::vector<v1::Event> found = Findings();
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].half_open().reason(), v1::HALF_OPEN_PEER_HOST_DOWN);
  EXPECT_EQ(found[0].half_open().peer_lost_unix_ns(),
            static_cast<uint64_t>(absl::ToUnixNanos(last_heard)));
  EXPECT_EQ(Gauge("a", "peer_host_down"), 1);

  // B's agent is back and the connection is still there on B: cleared, nothing new found.
  Connected(b_, "boot-b");
  Snapshot(b_, kStart + absl::Seconds(40), {ServerEnd()});
  EXPECT_EQ(Gauge("a", "peer_host_down"), 0);
  EXPECT_EQ(StatusOf("a", ClientEnd()).half_open, v1::HALF_OPEN_REASON_UNSPECIFIED);
  EXPECT_EQ(Findings().size(), 1u);
}

// A half-open end counts for its own workload; the finding names the peer's.
TEST_F(ConnectionPairsTest, HalfOpenEndsCountForTheirPodAndNameThePeersOrigin) {
  auto workloads = std::make_shared<WorkloadMetrics>(&metrics_, "a", WorkloadLimits());
  Connected(a_, "boot-a", workloads);
  Connected(b_, "boot-b");
  v1::Connection client = ClientEnd();
  client.mutable_origin()->set_pod_namespace("shop");
  client.mutable_origin()->set_pod("web-0");
  client.mutable_origin()->set_container_name("web");
  v1::Connection server = ServerEnd();
  server.mutable_origin()->set_container_name("postgres");
  server.mutable_origin()->set_pid(88);
  server.mutable_origin()->set_command("postgres");
  v1::Snapshot shown;
  *shown.add_connections() = client;
  workloads->SetSnapshot(shown, {v1::AT_RISK_REASON_UNSPECIFIED}, kStart);  // gauges live
  Snapshot(a_, kStart, {client});
  Snapshot(b_, kStart, {server});
  pairs_.Disconnected("b");
  const absl::Time last_heard = kStart + absl::Seconds(1);
  pairs_.CheckSilence({{"a", last_heard}, {"b", last_heard}}, last_heard + absl::Seconds(30));
  std::vector<v1::Event> found = Findings();
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].origin().pod(), "web-0");
  EXPECT_EQ(found[0].half_open().peer_origin().container_name(), "postgres");
  EXPECT_EQ(found[0].half_open().peer_origin().pid(), 88u);
  EXPECT_EQ(found[0].half_open().peer_origin().command(), "postgres");
  auto gauge = [&] {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, metrics_.Collect());
    return MetricValue(out.str(), "tcpscope_workload_connections_half_open",
                       {{"host", "a"},
                        {"namespace", "shop"},
                        {"pod", "web-0"},
                        {"container", "web"},
                        {"reason", "peer_host_down"}});
  };
  EXPECT_EQ(gauge(), 1);
  // B comes back with the connection: cleared.
  Connected(b_, "boot-b");
  Snapshot(b_, kStart + absl::Seconds(40), {server});
  EXPECT_EQ(gauge(), 0);
}

TEST_F(ConnectionPairsTest, ExpiredPeerHostLeavesItsPeersHalfOpen) {
  Paired();
  pairs_.Disconnected("b");
  pairs_.CheckSilence({{"b", kStart}}, kStart + absl::Seconds(30));
  ASSERT_EQ(Findings().size(), 1u);
  pairs_.Forget("b");
  Snapshot(a_, kStart + absl::Seconds(40), {ClientEnd()});
  EXPECT_EQ(Findings().size(), 1u);  // the same reason: not found again
  EXPECT_EQ(Gauge("a", "peer_host_down"), 1);
  EXPECT_FALSE(StatusOf("a", ClientEnd()).peer->present());
}

TEST_F(ConnectionPairsTest, UnpairedLocalAndAmbiguousEndsAreNotGuessed) {
  Connected(a_, "boot-a");
  Snapshot(a_, kStart,
           {ClientEnd(), LoopbackEnd(),
            End(6, 1, 7000, 3, 8000, v1::TCP_STATE_ESTABLISHED, v1::ROLE_CLIENT),
            End(7, 3, 8000, 1, 7000, v1::TCP_STATE_ESTABLISHED, v1::ROLE_SERVER),
            End(8, 1, 9000, 2, 80, v1::TCP_STATE_SYN_SENT, v1::ROLE_CLIENT)});
  v1::Snapshot snapshot;
  for (const v1::Connection& connection :
       {ClientEnd(), LoopbackEnd(),
        End(6, 1, 7000, 3, 8000, v1::TCP_STATE_ESTABLISHED, v1::ROLE_CLIENT),
        End(8, 1, 9000, 2, 80, v1::TCP_STATE_SYN_SENT, v1::ROLE_CLIENT)}) {
    *snapshot.add_connections() = connection;
  }
  std::vector<EndStatus> statuses = pairs_.Describe("a", snapshot, true);
  EXPECT_EQ(statuses[0].pairing, v1::PAIRING_UNPAIRED);     // no agent has the peer's end
  EXPECT_EQ(statuses[1].pairing, v1::PAIRING_LOCAL);        // loopback
  EXPECT_EQ(statuses[2].pairing, v1::PAIRING_LOCAL);        // both ends on a
  EXPECT_EQ(statuses[3].pairing, v1::PAIRING_UNSPECIFIED);  // handshake in progress

  // Hosts b and c both claim the server's end (overlapping private addresses): ambiguous, and
  // never half-open even when one of them loses it.
  auto c = std::make_shared<const std::string>("c");
  Connected(b_, "boot-b");
  Connected(c, "boot-c");
  Snapshot(b_, kStart, {ServerEnd()});
  Snapshot(c, kStart, {End(99, 2, 80, 1, 40000, v1::TCP_STATE_ESTABLISHED, v1::ROLE_SERVER)});
  EXPECT_EQ(StatusOf("a", ClientEnd()).pairing, v1::PAIRING_AMBIGUOUS);
  Snapshot(c, kStart + absl::Seconds(1), {});
  Snapshot(a_, kStart + absl::Seconds(10), {ClientEnd()});
  EXPECT_TRUE(Findings().empty());
}

}  // namespace
}  // namespace tcpscope::service
