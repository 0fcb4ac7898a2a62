// Aggregation into metric values: events counted once per batch, resends ignored, snapshot
// gauges replaced and removed with the host.
#include "service/aggregator.h"

#include <sstream>

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

  ServiceMetrics metrics_;
  EventHub hub_;
  Aggregator aggregator_{&metrics_, &hub_};
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
  EXPECT_TRUE(aggregator_.Apply(*host, batch, kNow));

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
  EXPECT_TRUE(aggregator_.Apply(*host, batch, kNow));
  EXPECT_FALSE(aggregator_.Apply(*host, batch, kNow));
  aggregator_.Disconnect(*host, kNow);

  // The same agent instance reconnects: it learns what was applied and resends batch 1 anyway.
  host = Connect("a", 1, &last_applied);
  EXPECT_EQ(last_applied, 1u);
  EXPECT_FALSE(aggregator_.Apply(*host, batch, kNow));
  batch.set_seq(2);
  EXPECT_TRUE(aggregator_.Apply(*host, batch, kNow));
  EXPECT_EQ(
      MetricValue(Exposition(), "tcpscope_handshakes_total", {{"host", "a"}, {"role", "client"}}),
      2);
  aggregator_.Disconnect(*host, kNow);

  // A restarted agent (new instance) starts again from 1.
  host = Connect("a", 2, &last_applied);
  EXPECT_EQ(last_applied, 0u);
  batch.set_seq(1);
  EXPECT_TRUE(aggregator_.Apply(*host, batch, kNow));
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
  aggregator_.Apply(*host, batch, kNow);
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
  aggregator_.Apply(*host, batch, kNow);
  m = Exposition();
  EXPECT_EQ(state("established"), 0);
  EXPECT_EQ(state("listen"), 0);

  aggregator_.Disconnect(*host, kNow);
  m = Exposition();
  EXPECT_EQ(state("established"), std::nullopt);
  EXPECT_EQ(MetricValue(m, "tcpscope_connections_keepalive", {{"host", "a"}, {"keepalive", "on"}}),
            std::nullopt);
  EXPECT_EQ(MetricValue(m, "tcpscope_agent_up", {{"host", "a"}}), 0);
  EXPECT_TRUE(aggregator_.Connections({}).empty());
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
  aggregator_.Apply(*a, batch, kNow);
  aggregator_.Apply(*b, batch, kNow);
  EXPECT_EQ(aggregator_.Connections({}).size(), 4u);
  v1::ListConnectionsRequest request;
  request.set_host("b");
  EXPECT_EQ(aggregator_.Connections(request).size(), 2u);
  request.set_state(v1::TCP_STATE_TIME_WAIT);
  EXPECT_EQ(aggregator_.Connections(request).size(), 1u);
  request.Clear();
  request.set_port(80);
  EXPECT_EQ(aggregator_.Connections(request).size(), 2u);
}

}  // namespace
}  // namespace tcpscope::service
