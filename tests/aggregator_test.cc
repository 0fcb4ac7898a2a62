// Aggregation into metric values: events counted once per batch, resends ignored, snapshot
// gauges replaced and removed with the host.
#include "service/aggregator.h"

#include <atomic>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "tests/harness/metrics_text.h"

namespace tcpscope::service {
namespace {

using testing::MetricSum;
using testing::MetricValue;

const absl::Time kNow = absl::FromUnixSeconds(1800000000);

v1::Hello HelloFor(const std::string& host, uint64_t instance) {
  v1::Hello hello;
  hello.set_host_name(host);
  hello.set_boot_id("boot");
  hello.set_instance_id(instance);
  hello.set_source(v1::SOURCE_KIND_SOCK_DIAG);
  return hello;
}

v1::Event Handshake(v1::Role role) {
  v1::Event event;
  event.set_role(role);
  event.mutable_handshake()->set_duration_us(300);
  return event;
}

v1::Event Close(v1::Role role, v1::CloseInitiator initiator, v1::CloseReason reason) {
  v1::Event event;
  event.set_role(role);
  event.mutable_close()->set_initiator(initiator);
  event.mutable_close()->set_reason(reason);
  event.mutable_close()->set_lifetime_us(2500000);
  return event;
}

v1::Connection Connection(v1::TcpState state, bool keepalive) {
  v1::Connection connection;
  connection.set_state(state);
  connection.mutable_keepalive()->set_enabled(keepalive);
  return connection;
}

class AggregatorTest : public ::testing::Test {
 protected:
  std::string Exposition() {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, metrics_.registry()->Collect());
    return out.str();
  }

  std::shared_ptr<HostState> Connect(const std::string& host, uint64_t instance,
                                     uint64_t* last_applied) {
    auto state = aggregator_.Connect(HelloFor(host, instance), kNow, last_applied);
    EXPECT_TRUE(state.ok()) << state.status();
    return state.ok() ? *state : nullptr;
  }

  bool Apply(HostState& host, const v1::Batch& batch, absl::Time now = kNow) {
    return aggregator_.Apply(host, std::make_shared<v1::Batch>(batch), now);
  }

  int ConnectionCount(const v1::ListConnectionsRequest& request) {
    return aggregator_.Connections(request, kNow).connections_size();
  }

  ServiceMetrics metrics_;
  EventLog log_{1000};
  Aggregator aggregator_{&metrics_, &log_, Options()};

 private:
  static AggregatorOptions Options() {
    AggregatorOptions options;
    options.at_risk.idle_after = absl::Minutes(5);
    options.at_risk.close_wait_after = absl::Seconds(30);
    options.host_expiry = absl::Seconds(60);
    return options;
  }
};

TEST_F(AggregatorTest, CountsEventsIntoTheirSeries) {
  uint64_t last_applied = 99;
  auto host = Connect("a", 1, &last_applied);
  EXPECT_EQ(last_applied, 0u);
  v1::Batch batch;
  batch.set_seq(1);
  *batch.add_events() = Handshake(v1::ROLE_CLIENT);
  *batch.add_events() = Handshake(v1::ROLE_CLIENT);
  *batch.add_events() = Handshake(v1::ROLE_SERVER);
  *batch.add_events() = Close(v1::ROLE_CLIENT, v1::CLOSE_INITIATOR_LOCAL, v1::CLOSE_REASON_FIN);
  *batch.add_events() =
      Close(v1::ROLE_SERVER, v1::CLOSE_INITIATOR_REMOTE, v1::CLOSE_REASON_RESET_RECEIVED);
  v1::Event probe;
  probe.mutable_keepalive_probe()->set_probe_number(1);
  *batch.add_events() = probe;
  v1::Event failure;
  failure.mutable_handshake_failed()->set_reason(v1::HANDSHAKE_FAILURE_REFUSED);
  *batch.add_events() = failure;
  batch.mutable_losses()->set_kernel(3);
  EXPECT_TRUE(Apply(*host, batch));

  const std::string m = Exposition();
  EXPECT_EQ(MetricValue(m, "tcpscope_handshakes_total", {{"host", "a"}, {"role", "client"}}), 2);
  EXPECT_EQ(MetricValue(m, "tcpscope_handshakes_total", {{"host", "a"}, {"role", "server"}}), 1);
  EXPECT_EQ(
      MetricValue(m, "tcpscope_closes_total",
                  {{"host", "a"}, {"role", "client"}, {"initiator", "local"}, {"reason", "fin"}}),
      1);
  EXPECT_EQ(MetricValue(m, "tcpscope_closes_total",
                        {{"host", "a"},
                         {"role", "server"},
                         {"initiator", "remote"},
                         {"reason", "reset_received"}}),
            1);
  EXPECT_EQ(MetricValue(m, "tcpscope_keepalive_probes_total", {{"host", "a"}}), 1);
  EXPECT_EQ(
      MetricValue(m, "tcpscope_handshake_failures_total", {{"host", "a"}, {"reason", "refused"}}),
      1);
  EXPECT_EQ(MetricValue(m, "tcpscope_agent_events_total", {{"host", "a"}}), 7);
  EXPECT_EQ(
      MetricValue(m, "tcpscope_agent_events_lost_total", {{"host", "a"}, {"stage", "kernel"}}), 3);
  EXPECT_EQ(MetricValue(m, "tcpscope_agent_up", {{"host", "a"}}), 1);
  EXPECT_EQ(MetricValue(m, "tcpscope_handshake_duration_seconds_count",
                        {{"host", "a"}, {"role", "client"}}),
            2);
  EXPECT_EQ(MetricValue(m, "tcpscope_handshake_duration_seconds_bucket",
                        {{"host", "a"}, {"role", "client"}, {"le", "0.0005"}}),
            2);
  EXPECT_EQ(MetricValue(m, "tcpscope_connection_lifetime_seconds_bucket",
                        {{"host", "a"}, {"role", "client"}, {"le", "1"}}),
            0);
  EXPECT_EQ(MetricValue(m, "tcpscope_connection_lifetime_seconds_bucket",
                        {{"host", "a"}, {"role", "client"}, {"le", "10"}}),
            1);
}

TEST_F(AggregatorTest, ResentBatchesAreNotCountedTwice) {
  uint64_t last_applied = 0;
  auto host = Connect("a", 1, &last_applied);
  v1::Batch batch;
  batch.set_seq(1);
  *batch.add_events() = Handshake(v1::ROLE_CLIENT);
  EXPECT_TRUE(Apply(*host, batch));
  EXPECT_FALSE(Apply(*host, batch));
  aggregator_.Disconnect(*host, kNow);

  // The same agent instance reconnects: it learns what was applied and resends batch 1 anyway.
  host = Connect("a", 1, &last_applied);
  EXPECT_EQ(last_applied, 1u);
  EXPECT_FALSE(Apply(*host, batch));
  batch.set_seq(2);
  EXPECT_TRUE(Apply(*host, batch));
  EXPECT_EQ(
      MetricValue(Exposition(), "tcpscope_handshakes_total", {{"host", "a"}, {"role", "client"}}),
      2);
  aggregator_.Disconnect(*host, kNow);

  // A restarted agent (new instance) starts again from 1.
  host = Connect("a", 2, &last_applied);
  EXPECT_EQ(last_applied, 0u);
  batch.set_seq(1);
  EXPECT_TRUE(Apply(*host, batch));
  EXPECT_EQ(
      MetricValue(Exposition(), "tcpscope_handshakes_total", {{"host", "a"}, {"role", "client"}}),
      3);
}

TEST_F(AggregatorTest, SecondAgentForOneHostIsRefused) {
  uint64_t last_applied = 0;
  auto first = Connect("a", 1, &last_applied);
  auto second = aggregator_.Connect(HelloFor("a", 2), kNow, &last_applied);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(second.status().message().find("two agents claim one host"), std::string::npos);
}

TEST_F(AggregatorTest, SnapshotGaugesAreReplacedAndRemovedWithTheHost) {
  uint64_t last_applied = 0;
  auto host = Connect("a", 1, &last_applied);
  v1::Batch batch;
  batch.set_seq(1);
  v1::Snapshot* snapshot = batch.mutable_snapshot();
  *snapshot->add_connections() = Connection(v1::TCP_STATE_ESTABLISHED, true);
  *snapshot->add_connections() = Connection(v1::TCP_STATE_ESTABLISHED, false);
  *snapshot->add_connections() = Connection(v1::TCP_STATE_ESTABLISHED, false);
  *snapshot->add_connections() = Connection(v1::TCP_STATE_TIME_WAIT, false);
  *snapshot->add_connections() = Connection(v1::TCP_STATE_CLOSE_WAIT, true);
  snapshot->set_listeners(2);
  Apply(*host, batch);
  std::string m = Exposition();
  auto state = [&](const std::string& s) {
    return MetricValue(m, "tcpscope_connections", {{"host", "a"}, {"state", s}});
  };
  EXPECT_EQ(state("established"), 3);
  EXPECT_EQ(state("time_wait"), 1);
  EXPECT_EQ(state("close_wait"), 1);
  EXPECT_EQ(state("listen"), 2);
  EXPECT_EQ(state("syn_sent"), 0);  // every state is present, zeros included
  EXPECT_EQ(MetricSum(m, "tcpscope_connections", {{"host", "a"}}), 7);
  // Keepalive counts established connections only.
  EXPECT_EQ(MetricValue(m, "tcpscope_connections_keepalive", {{"host", "a"}, {"keepalive", "on"}}),
            1);
  EXPECT_EQ(MetricValue(m, "tcpscope_connections_keepalive", {{"host", "a"}, {"keepalive", "off"}}),
            2);

  batch.set_seq(2);
  batch.mutable_snapshot()->clear_connections();
  batch.mutable_snapshot()->set_listeners(0);
  Apply(*host, batch);
  m = Exposition();
  EXPECT_EQ(state("established"), 0);
  EXPECT_EQ(state("listen"), 0);

  aggregator_.Disconnect(*host, kNow);
  m = Exposition();
  EXPECT_EQ(state("established"), std::nullopt);
  EXPECT_EQ(MetricValue(m, "tcpscope_connections_keepalive", {{"host", "a"}, {"keepalive", "on"}}),
            std::nullopt);
  EXPECT_EQ(MetricValue(m, "tcpscope_agent_up", {{"host", "a"}}), 0);
  EXPECT_EQ(ConnectionCount({}), 0);
  ASSERT_EQ(aggregator_.Agents().size(), 1u);
  EXPECT_FALSE(aggregator_.Agents()[0].connected());
}

TEST_F(AggregatorTest, ConnectionsFilterByHostStateAndPort) {
  uint64_t last_applied = 0;
  auto a = Connect("a", 1, &last_applied);
  auto b = Connect("b", 2, &last_applied);
  v1::Batch batch;
  batch.set_seq(1);
  v1::Connection connection = Connection(v1::TCP_STATE_ESTABLISHED, false);
  connection.mutable_endpoints()->set_local_port(80);
  *batch.mutable_snapshot()->add_connections() = connection;
  connection.set_state(v1::TCP_STATE_TIME_WAIT);
  connection.mutable_endpoints()->set_local_port(81);
  *batch.mutable_snapshot()->add_connections() = connection;
  Apply(*a, batch);
  Apply(*b, batch);
  EXPECT_EQ(ConnectionCount({}), 4);
  v1::ListConnectionsRequest request;
  request.set_host("b");
  EXPECT_EQ(ConnectionCount(request), 2);
  request.set_state(v1::TCP_STATE_TIME_WAIT);
  EXPECT_EQ(ConnectionCount(request), 1);
  request.Clear();
  request.set_port(80);
  EXPECT_EQ(ConnectionCount(request), 2);
}

v1::Connection AtRiskCandidate(v1::TcpState state, bool keepalive, uint64_t idle_ms,
                               uint32_t probes_out, absl::Duration in_state) {
  v1::Connection connection = Connection(state, keepalive);
  connection.set_idle_ms(idle_ms);
  connection.mutable_keepalive()->set_probes_out(probes_out);
  connection.set_state_since_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(kNow - in_state)));
  return connection;
}

TEST_F(AggregatorTest, AtRiskGaugesAndFiltersFollowTheSnapshot) {
  uint64_t last_applied = 0;
  auto host = Connect("a", 1, &last_applied);
  v1::Batch batch;
  batch.set_seq(1);
  v1::Snapshot* snapshot = batch.mutable_snapshot();
  snapshot->set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(kNow)));
  // Idle 6 min without keepalive (threshold 5 min): at risk; idle 4 min: not.
  *snapshot->add_connections() =
      AtRiskCandidate(v1::TCP_STATE_ESTABLISHED, false, 360000, 0, absl::Hours(1));
  *snapshot->add_connections() =
      AtRiskCandidate(v1::TCP_STATE_ESTABLISHED, false, 240000, 0, absl::Hours(1));
  // Keepalive on: idle does not matter, probes out do.
  *snapshot->add_connections() =
      AtRiskCandidate(v1::TCP_STATE_ESTABLISHED, true, 9000000, 0, absl::Hours(1));
  *snapshot->add_connections() =
      AtRiskCandidate(v1::TCP_STATE_ESTABLISHED, true, 9000000, 2, absl::Hours(1));
  // CLOSE_WAIT for 31 s (threshold 30 s) and for 29 s.
  *snapshot->add_connections() =
      AtRiskCandidate(v1::TCP_STATE_CLOSE_WAIT, false, 0, 0, absl::Seconds(31));
  *snapshot->add_connections() =
      AtRiskCandidate(v1::TCP_STATE_CLOSE_WAIT, false, 0, 0, absl::Seconds(29));
  ASSERT_TRUE(Apply(*host, batch));
  std::string m = Exposition();
  auto at_risk = [&](const std::string& reason) {
    return MetricValue(m, "tcpscope_connections_at_risk", {{"host", "a"}, {"reason", reason}});
  };
  EXPECT_EQ(at_risk("idle_no_keepalive"), 1);
  EXPECT_EQ(at_risk("keepalive_probing"), 1);
  EXPECT_EQ(at_risk("close_wait_stale"), 1);

  v1::ListConnectionsRequest request;
  request.set_at_risk(true);
  const v1::ListConnectionsResponse risky = aggregator_.Connections(request, kNow);
  ASSERT_EQ(risky.connections_size(), 3);
  EXPECT_EQ(risky.connections(0).at_risk(), v1::AT_RISK_IDLE_NO_KEEPALIVE);
  EXPECT_EQ(risky.connections(1).at_risk(), v1::AT_RISK_KEEPALIVE_PROBING);
  EXPECT_EQ(risky.connections(2).at_risk(), v1::AT_RISK_CLOSE_WAIT_STALE);
  request.set_at_risk_reason(v1::AT_RISK_CLOSE_WAIT_STALE);
  EXPECT_EQ(ConnectionCount(request), 1);
  request.Clear();
  request.set_keepalive(v1::KEEPALIVE_FILTER_ON);
  EXPECT_EQ(ConnectionCount(request), 2);
  request.set_keepalive(v1::KEEPALIVE_FILTER_OFF);
  EXPECT_EQ(ConnectionCount(request), 4);
  ASSERT_EQ(aggregator_.Agents().size(), 1u);
  EXPECT_EQ(aggregator_.Agents()[0].at_risk(), 3u);

  // The next snapshot without them clears the gauges to zero; disconnecting removes them.
  batch.set_seq(2);
  batch.mutable_snapshot()->clear_connections();
  ASSERT_TRUE(Apply(*host, batch));
  m = Exposition();
  EXPECT_EQ(at_risk("idle_no_keepalive"), 0);
  EXPECT_EQ(at_risk("keepalive_probing"), 0);
  EXPECT_EQ(at_risk("close_wait_stale"), 0);
  aggregator_.Disconnect(*host, kNow);
  m = Exposition();
  EXPECT_EQ(at_risk("idle_no_keepalive"), std::nullopt);
}

TEST_F(AggregatorTest, SummaryTotalsPerHostAndFleet) {
  uint64_t last_applied = 0;
  auto a = Connect("a", 1, &last_applied);
  auto b = Connect("b", 2, &last_applied);
  v1::Batch batch;
  batch.set_seq(1);
  *batch.add_events() = Handshake(v1::ROLE_CLIENT);
  *batch.add_events() = Close(v1::ROLE_CLIENT, v1::CLOSE_INITIATOR_LOCAL, v1::CLOSE_REASON_FIN);
  v1::Event short_close =
      Close(v1::ROLE_SERVER, v1::CLOSE_INITIATOR_REMOTE, v1::CLOSE_REASON_RESET_RECEIVED);
  short_close.mutable_close()->set_lifetime_us(1500);
  *batch.add_events() = short_close;
  v1::Event refused;
  refused.mutable_handshake_failed()->set_reason(v1::HANDSHAKE_FAILURE_REFUSED);
  *batch.add_events() = refused;
  *batch.mutable_snapshot()->add_connections() = Connection(v1::TCP_STATE_ESTABLISHED, true);
  batch.mutable_losses()->set_kernel(3);
  ASSERT_TRUE(Apply(*a, batch));
  ASSERT_TRUE(Apply(*b, batch));
  aggregator_.Disconnect(*b, kNow);

  const v1::SummaryResponse summary = aggregator_.Summary("");
  ASSERT_EQ(summary.hosts_size(), 2);
  const v1::HostSummary& host_a = summary.hosts(0);
  EXPECT_EQ(host_a.host(), "a");
  EXPECT_EQ(host_a.agents_connected(), 1u);
  EXPECT_EQ(host_a.events(), 4u);
  EXPECT_EQ(host_a.handshakes(), 1u);
  ASSERT_EQ(host_a.handshake_failures_size(), 1);
  EXPECT_EQ(host_a.handshake_failures(0).name(), "refused");
  EXPECT_EQ(host_a.handshake_failures(0).value(), 1u);
  ASSERT_EQ(host_a.closes_by_reason_size(), 2);
  EXPECT_EQ(host_a.closes_by_reason(0).name(), "fin");
  EXPECT_EQ(host_a.closes_by_reason(1).name(), "reset_received");
  EXPECT_EQ(host_a.closes_short(), 1u);
  EXPECT_EQ(host_a.closes_long(), 1u);
  EXPECT_EQ(host_a.keepalive_on(), 1u);
  EXPECT_EQ(summary.hosts(1).keepalive_on(), 0u);  // b's snapshot went with its stream

  const v1::HostSummary& fleet = summary.fleet();
  EXPECT_EQ(fleet.agents(), 2u);
  EXPECT_EQ(fleet.agents_connected(), 1u);
  EXPECT_EQ(fleet.events(), 8u);
  EXPECT_EQ(fleet.handshakes(), 2u);
  EXPECT_EQ(fleet.losses().kernel(), 6u);
  EXPECT_EQ(fleet.keepalive_on(), 1u);
  EXPECT_EQ(summary.history_events(), 8u);

  EXPECT_EQ(aggregator_.Summary("b").hosts_size(), 1);
  EXPECT_EQ(aggregator_.Summary("nobody").hosts_size(), 0);
}

TEST_F(AggregatorTest, DisconnectedHostsExpireWithTheirSeries) {
  uint64_t last_applied = 0;
  auto a = Connect("a", 1, &last_applied);
  auto b = Connect("b", 2, &last_applied);
  v1::Batch batch;
  batch.set_seq(1);
  *batch.add_events() = Handshake(v1::ROLE_CLIENT);
  ASSERT_TRUE(Apply(*a, batch));
  ASSERT_TRUE(Apply(*b, batch));
  aggregator_.Disconnect(*a, kNow);
  // The aggregator now holds the last reference: expiry destroyed the host while still holding
  // its lock and then unlocked freed memory (found by the TSan build, which sees absl::Mutex).
  a.reset();

  // Expiry is 60 s after the last message; b stays while connected.
  EXPECT_TRUE(aggregator_.ExpireHosts(kNow + absl::Seconds(59)).empty());
  EXPECT_EQ(
      MetricValue(Exposition(), "tcpscope_handshakes_total", {{"host", "a"}, {"role", "client"}}),
      1);
  EXPECT_EQ(aggregator_.ExpireHosts(kNow + absl::Seconds(61)), std::vector<std::string>{"a"});
  const std::string m = Exposition();
  EXPECT_EQ(m.find("host=\"a\""), std::string::npos) << m;
  EXPECT_EQ(MetricValue(m, "tcpscope_handshakes_total", {{"host", "b"}, {"role", "client"}}), 1);
  EXPECT_EQ(MetricValue(m, "tcpscope_service_hosts", {}), 1);
  EXPECT_EQ(MetricValue(m, "tcpscope_service_hosts_expired_total", {}), 1);
  ASSERT_EQ(aggregator_.Agents().size(), 1u);
  EXPECT_EQ(aggregator_.Agents()[0].host_name(), "b");

  // The host comes back as new: counting starts again and a resent batch 1 applies.
  uint64_t resume = 99;
  a = Connect("a", 1, &resume);
  EXPECT_EQ(resume, 0u);
  EXPECT_TRUE(Apply(*a, batch));
}

// What the service does at once: one ingest reactor per agent applying batches, observers
// subscribing and reading, scrapes, and the expiry timer forgetting hosts that come and go.
// Exact counts at the end; the TSan build (scripts/test --sanitize=thread) checks the locking.
TEST_F(AggregatorTest, AgentsReadersScrapesAndExpiryRunConcurrently) {
  constexpr int kAgents = 4;
  constexpr int kBatches = 400;
  class Counter : public EventSubscriber {
   public:
    void Offer(const std::shared_ptr<const PublishedBatch>& batch) override {
      events += batch->batch->events_size();
    }
    std::atomic<int> events{0};
  } everything;
  log_.Subscribe(&everything);

  std::vector<std::shared_ptr<HostState>> hosts;
  for (int i = 0; i < kAgents; ++i) {
    uint64_t last_applied = 0;
    hosts.push_back(Connect(absl::StrCat("agent-", i), 1, &last_applied));
  }
  std::atomic<int> running{kAgents};
  std::atomic<int> applied{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kAgents; ++i) {
    threads.emplace_back([&, i] {
      for (int seq = 1; seq <= kBatches; ++seq) {
        auto batch = std::make_shared<v1::Batch>();
        batch->set_seq(static_cast<uint64_t>(seq));
        *batch->add_events() = Handshake(v1::ROLE_CLIENT);
        *batch->add_events() =
            Close(v1::ROLE_SERVER, v1::CLOSE_INITIATOR_REMOTE, v1::CLOSE_REASON_FIN);
        if (seq % 10 == 0) {
          v1::Snapshot* snapshot = batch->mutable_snapshot();
          snapshot->set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(kNow)));
          // Agents 0 and 1 (2 and 3) hold the two ends of one connection: the pairing index
          // works too, and finds nothing wrong.
          v1::Connection* connection = snapshot->add_connections();
          *connection = Connection(v1::TCP_STATE_ESTABLISHED, seq % 20 == 0);
          connection->set_connection_id(static_cast<uint64_t>(i) + 1);
          const bool client = i % 2 == 0;
          const int pair = i / 2;
          v1::Endpoints* endpoints = connection->mutable_endpoints();
          endpoints->set_local_address(
              std::string({10, 0, static_cast<char>(pair), static_cast<char>(client ? 1 : 2)}));
          endpoints->set_remote_address(
              std::string({10, 0, static_cast<char>(pair), static_cast<char>(client ? 2 : 1)}));
          endpoints->set_local_port(client ? 40000 : 80);
          endpoints->set_remote_port(client ? 80 : 40000);
        }
        if (aggregator_.Apply(*hosts[static_cast<size_t>(i)], std::move(batch), kNow)) ++applied;
      }
      --running;
    });
  }
  threads.emplace_back([&] {  // observers
    while (running > 0) {
      Counter late;
      log_.Subscribe(&late);
      (void)aggregator_.Summary("");
      (void)aggregator_.Agents();
      v1::ListConnectionsRequest keepalive_on;
      keepalive_on.set_keepalive(v1::KEEPALIVE_FILTER_ON);
      (void)aggregator_.Connections(keepalive_on, kNow);
      v1::ListConnectionsRequest paired;
      paired.set_paired(true);
      (void)aggregator_.Connections(paired, kNow);
      (void)log_.stats();
      log_.Unsubscribe(&late);
    }
  });
  threads.emplace_back([&] {  // scrapes
    while (running > 0) (void)Exposition();
  });
  threads.emplace_back([&] {  // hosts that come and go, and the expiry timer
    for (int round = 0; running > 0; ++round) {
      {
        uint64_t last_applied = 0;
        auto churn = aggregator_.Connect(HelloFor(absl::StrCat("churn-", round % 3), 9), kNow,
                                         &last_applied);
        if (churn.ok()) aggregator_.Disconnect(**churn, kNow);
      }  // the aggregator holds the last reference, as after a stream ended
      (void)aggregator_.ExpireHosts(kNow + absl::Hours(1));
      aggregator_.CheckSilentHosts(kNow);  // nobody silent: exercises the locking only
    }
  });
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(applied, kAgents * kBatches);
  EXPECT_EQ(everything.events, kAgents * kBatches * 2);
  const std::string m = Exposition();
  for (int i = 0; i < kAgents; ++i) {
    const std::string host = absl::StrCat("agent-", i);
    EXPECT_EQ(MetricValue(m, "tcpscope_agent_events_total", {{"host", host}}), kBatches * 2);
    EXPECT_EQ(MetricValue(m, "tcpscope_connections", {{"host", host}, {"state", "established"}}),
              1);
  }
  EXPECT_EQ(aggregator_.Summary("").fleet().events(), kAgents * kBatches * 2u);
  v1::ListConnectionsRequest paired;
  paired.set_paired(true);
  const v1::ListConnectionsResponse pairs = aggregator_.Connections(paired, kNow);
  ASSERT_EQ(pairs.connections_size(), kAgents / 2);
  for (const v1::HostConnection& pair : pairs.connections()) {
    EXPECT_EQ(pair.pairing(), v1::PAIRING_PAIRED);
    EXPECT_EQ(pair.connection().endpoints().local_port(), 40000u) << "the client's end lists";
    EXPECT_TRUE(pair.peer().present());
  }
  log_.Unsubscribe(&everything);
}

}  // namespace
}  // namespace tcpscope::service
