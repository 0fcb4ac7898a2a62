// Aggregation into metric values: events counted once per batch, resends ignored, snapshot
// gauges replaced and removed with the host.
#include "service/aggregator.h"

#include <atomic>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/shared_origins.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "service/fleet_queries.h"
#include "service/workload_metrics.h"
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
    prometheus::TextSerializer().Serialize(out, metrics_.Collect());
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
    return queries_.Connections(request, kNow).connections_size();
  }

  ServiceMetrics metrics_;
  EventLog log_{1000};
  Aggregator aggregator_{&metrics_, &log_, Options()};
  FleetQueries queries_{&aggregator_};

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
  ASSERT_EQ(queries_.Agents().size(), 1u);
  EXPECT_FALSE(queries_.Agents()[0].connected());
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
  const v1::ListConnectionsResponse risky = queries_.Connections(request, kNow);
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
  ASSERT_EQ(queries_.Agents().size(), 1u);
  EXPECT_EQ(queries_.Agents()[0].at_risk(), 3u);

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

  const v1::SummaryResponse summary = queries_.Summary("");
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

  EXPECT_EQ(queries_.Summary("b").hosts_size(), 1);
  EXPECT_EQ(queries_.Summary("nobody").hosts_size(), 0);
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
  ASSERT_EQ(queries_.Agents().size(), 1u);
  EXPECT_EQ(queries_.Agents()[0].host_name(), "b");

  // The host comes back as new: counting starts again and a resent batch 1 applies.
  uint64_t resume = 99;
  a = Connect("a", 1, &resume);
  EXPECT_EQ(resume, 0u);
  EXPECT_TRUE(Apply(*a, batch));
}

// Workload series: a fleet host with pods, capped at two pods and two ports per host.
class WorkloadSeriesTest : public ::testing::Test {
 protected:
  static constexpr const char* kId =
      "3f2a9c0d1e4b5a6978c0d1e2f3a4b5c6d7e8f90123456789abcdef0123456789";

  static v1::Origin Pod(const std::string& pod, const std::string& container) {
    v1::Origin origin;
    origin.set_pod_namespace("shop");
    origin.set_pod(pod);
    origin.set_container_name(container);
    origin.set_container_id(kId);
    origin.set_runtime(v1::CONTAINER_RUNTIME_CONTAINERD);
    return origin;
  }
  static v1::Origin Docker(const std::string& name) {
    v1::Origin origin;
    origin.set_container_name(name);
    origin.set_container_id(kId);
    origin.set_runtime(v1::CONTAINER_RUNTIME_DOCKER);
    return origin;
  }

  static v1::Connection End(const v1::Origin& origin, v1::TcpState state, absl::Time since = kNow) {
    v1::Connection connection = Connection(state, false);
    *connection.mutable_origin() = origin;
    connection.set_state_since_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(since)));
    return connection;
  }

  static v1::Event Failure(const v1::Origin& origin, uint32_t port,
                           v1::HandshakeFailureReason reason) {
    v1::Event event;
    event.set_role(v1::ROLE_CLIENT);
    *event.mutable_origin() = origin;
    event.mutable_endpoints()->set_local_port(40000);
    event.mutable_endpoints()->set_remote_port(port);
    event.mutable_handshake_failed()->set_reason(reason);
    return event;
  }

  std::string Exposition() {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, metrics_.Collect());
    return out.str();
  }

  std::shared_ptr<HostState> Connect(const std::string& host) {
    uint64_t last_applied = 0;
    auto state = aggregator_.Connect(HelloFor(host, 1), kNow, &last_applied);
    EXPECT_TRUE(state.ok()) << state.status();
    return state.ok() ? *state : nullptr;
  }

  void Apply(HostState& host, v1::Batch batch, absl::Time now) {
    batch.set_seq(++seq_[&host]);
    if (batch.has_snapshot()) {
      batch.mutable_snapshot()->set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(now)));
    }
    ASSERT_TRUE(aggregator_.Apply(host, std::make_shared<v1::Batch>(batch), now));
  }

  // web-0 and web-1 take the two pod slots; the Docker container "redis", pod db-0 and a
  // container known by its id only are summed into pod="other"; host processes have no series.
  v1::Batch FleetSnapshot(bool with_web1) {
    v1::Batch batch;
    v1::Snapshot* snapshot = batch.mutable_snapshot();
    *snapshot->add_connections() = End(Pod("web-0", "web"), v1::TCP_STATE_ESTABLISHED);
    *snapshot->add_connections() = End(Pod("web-0", "web"), v1::TCP_STATE_ESTABLISHED);
    *snapshot->add_connections() = End(Pod("web-0", "envoy"), v1::TCP_STATE_ESTABLISHED);
    // CLOSE_WAIT for a minute: at risk (close_wait_stale).
    *snapshot->add_connections() =
        End(Pod("web-0", "web"), v1::TCP_STATE_CLOSE_WAIT, kNow - absl::Minutes(1));
    if (with_web1) {
      *snapshot->add_connections() = End(Pod("web-1", "web"), v1::TCP_STATE_ESTABLISHED);
      *snapshot->add_connections() = End(Pod("web-1", "web"), v1::TCP_STATE_TIME_WAIT);
    }
    *snapshot->add_connections() = End(Docker("redis"), v1::TCP_STATE_SYN_SENT);
    *snapshot->add_connections() = End(Pod("db-0", "postgres"), v1::TCP_STATE_ESTABLISHED);
    *snapshot->add_connections() =
        End(Pod("db-0", "postgres"), v1::TCP_STATE_CLOSE_WAIT, kNow - absl::Minutes(1));
    v1::Origin id_only;
    id_only.set_container_id("0123456789abcdef0123");
    *snapshot->add_connections() = End(id_only, v1::TCP_STATE_NEW_SYN_RECV);
    for (int i = 0; i < 3; ++i) {
      v1::Origin host_process;
      host_process.set_pid(100);
      host_process.set_command("sshd");
      *snapshot->add_connections() = End(host_process, v1::TCP_STATE_ESTABLISHED);
    }
    return batch;
  }

  static AggregatorOptions Options() {
    AggregatorOptions options;
    options.at_risk.close_wait_after = absl::Seconds(30);
    options.host_expiry = absl::Seconds(60);
    options.max_pods_per_host = 2;
    options.max_ports_per_host = 2;
    return options;
  }

  ServiceMetrics metrics_;
  EventLog log_{1000};
  Aggregator aggregator_{&metrics_, &log_, Options()};
  FleetQueries queries_{&aggregator_};
  std::map<const HostState*, uint64_t> seq_;
};

testing::Labels W(const std::string& ns, const std::string& pod, const std::string& container,
                  const std::string& label, const std::string& value) {
  testing::Labels labels = {
      {"host", "a"}, {"namespace", ns}, {"pod", pod}, {"container", container}};
  if (!label.empty()) labels[label] = value;
  return labels;
}

TEST(WorkloadOfTest, PodContainerOrHostProcess) {
  v1::Origin origin;
  origin.set_pid(7);
  EXPECT_FALSE(WorkloadOf(origin).has_value());  // a host process
  origin.set_container_id("0123456789abcdef0123");
  origin.set_container_name("redis");
  std::optional<WorkloadView> view = WorkloadOf(origin);
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->container, "redis");
  EXPECT_TRUE(view->pod.empty());
  // A Kubernetes container (pod uid) whose pod names are not known: told apart by its id, since
  // its name ("app") is unique only inside its pod.
  origin.set_container_name("app");
  origin.set_pod_uid("2f1c");
  view = WorkloadOf(origin);
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->container, "0123456789ab");
  origin.set_pod_namespace("shop");
  origin.set_pod("web-0");
  view = WorkloadOf(origin);
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->pod_namespace, "shop");
  EXPECT_EQ(view->pod, "web-0");
  EXPECT_EQ(view->container, "app");
}

TEST_F(WorkloadSeriesTest, SnapshotGaugesPerWorkloadWithTheRestInOther) {
  auto host = Connect("a");
  Apply(*host, FleetSnapshot(/*with_web1=*/true), kNow);
  const std::string m = Exposition();
  auto state = [&](const std::string& ns, const std::string& pod, const std::string& container,
                   const std::string& s) {
    return MetricValue(m, "tcpscope_workload_connections", W(ns, pod, container, "state", s));
  };
  EXPECT_EQ(state("shop", "web-0", "web", "established"), 2);
  EXPECT_EQ(state("shop", "web-0", "web", "close_wait"), 1);
  EXPECT_EQ(state("shop", "web-0", "web", "syn_sent"), 0);  // every state, zeros included
  EXPECT_EQ(state("shop", "web-0", "envoy", "established"), 1);
  EXPECT_EQ(state("shop", "web-1", "web", "established"), 1);
  EXPECT_EQ(state("shop", "web-1", "web", "time_wait"), 1);
  // The third pod on: redis (outside Kubernetes), db-0 and the id-only container.
  EXPECT_EQ(state("", "other", "", "established"), 1);
  EXPECT_EQ(state("", "other", "", "syn_sent"), 1);
  EXPECT_EQ(state("", "other", "", "syn_recv"), 1);
  EXPECT_EQ(state("", "other", "", "close_wait"), 1);
  EXPECT_EQ(state("", "other", "", "time_wait"), 0);
  EXPECT_EQ(state("", "", "redis", "syn_sent"), std::nullopt);
  EXPECT_EQ(state("shop", "db-0", "postgres", "established"), std::nullopt);
  // Every end of a workload is counted once: the host's established ends less the host's own.
  EXPECT_EQ(MetricSum(m, "tcpscope_workload_connections", {{"state", "established"}}),
            *MetricValue(m, "tcpscope_connections", {{"host", "a"}, {"state", "established"}}) - 3);
  EXPECT_EQ(MetricSum(m, "tcpscope_workload_connections", {}), 10);
  // At risk: the stale CLOSE_WAITs, one in web-0, one in other; no zero series for reasons
  // that never happened.
  EXPECT_EQ(MetricValue(m, "tcpscope_workload_connections_at_risk",
                        W("shop", "web-0", "web", "reason", "close_wait_stale")),
            1);
  EXPECT_EQ(MetricValue(m, "tcpscope_workload_connections_at_risk",
                        W("", "other", "", "reason", "close_wait_stale")),
            1);
  EXPECT_EQ(MetricSum(m, "tcpscope_workload_connections_at_risk", {}), 2);
  EXPECT_EQ(MetricValue(m, "tcpscope_workload_connections_at_risk",
                        W("shop", "web-0", "web", "reason", "idle_no_keepalive")),
            std::nullopt);
  // Host-level families unchanged.
  EXPECT_EQ(MetricValue(m, "tcpscope_connections", {{"host", "a"}, {"state", "established"}}), 8);

  // Disconnected: the gauges go (counters would stay until the host expires).
  aggregator_.Disconnect(*host, kNow);
  EXPECT_EQ(MetricSum(Exposition(), "tcpscope_workload_connections", {}), 0);
  EXPECT_EQ(Exposition().find("tcpscope_workload_connections{"), std::string::npos);
}

TEST_F(WorkloadSeriesTest, EventCountersPerWorkloadAndPort) {
  auto host = Connect("a");
  Apply(*host, FleetSnapshot(/*with_web1=*/true), kNow);
  v1::Batch batch;
  *batch.add_events() = Failure(Pod("web-0", "web"), 5432, v1::HANDSHAKE_FAILURE_REFUSED);
  *batch.add_events() = Failure(Pod("web-0", "web"), 5432, v1::HANDSHAKE_FAILURE_REFUSED);
  *batch.add_events() = Failure(Docker("redis"), 6379, v1::HANDSHAKE_FAILURE_REFUSED);
  *batch.add_events() = Failure(v1::Origin(), 80, v1::HANDSHAKE_FAILURE_TIMEOUT);  // host process
  // A server's close: its port is the local one, a third port: "other".
  v1::Event close =
      Close(v1::ROLE_SERVER, v1::CLOSE_INITIATOR_REMOTE, v1::CLOSE_REASON_RESET_RECEIVED);
  *close.mutable_origin() = Pod("web-1", "web");
  close.mutable_endpoints()->set_local_port(8080);
  close.mutable_endpoints()->set_remote_port(51000);
  *batch.add_events() = close;
  // A client's close: the remote port, 5432.
  close = Close(v1::ROLE_CLIENT, v1::CLOSE_INITIATOR_LOCAL, v1::CLOSE_REASON_FIN);
  *close.mutable_origin() = Pod("db-0", "postgres");
  close.mutable_endpoints()->set_local_port(51001);
  close.mutable_endpoints()->set_remote_port(5432);
  *batch.add_events() = close;
  v1::Event timeout;
  timeout.set_role(v1::ROLE_CLIENT);
  *timeout.mutable_origin() = Pod("web-0", "web");
  timeout.mutable_keepalive_timeout()->set_probes_sent(9);
  *batch.add_events() = timeout;
  Apply(*host, batch, kNow);

  const std::string m = Exposition();
  EXPECT_EQ(MetricValue(m, "tcpscope_workload_handshake_failures_total",
                        W("shop", "web-0", "web", "reason", "refused")),
            2);
  EXPECT_EQ(MetricValue(m, "tcpscope_workload_handshake_failures_total",
                        W("", "other", "", "reason", "refused")),
            1);
  EXPECT_EQ(MetricSum(m, "tcpscope_workload_handshake_failures_total", {}), 3);  // not the host's
  EXPECT_EQ(MetricValue(m, "tcpscope_workload_closes_total",
                        W("shop", "web-1", "web", "reason", "reset_received")),
            1);
  EXPECT_EQ(MetricValue(m, "tcpscope_workload_closes_total", W("", "other", "", "reason", "fin")),
            1);
  EXPECT_EQ(MetricValue(m, "tcpscope_workload_keepalive_timeouts_total",
                        W("shop", "web-0", "web", "", "")),
            1);
  auto port = [&](const std::string& family, const std::string& number, const std::string& reason) {
    return MetricValue(m, family, {{"host", "a"}, {"port", number}, {"reason", reason}});
  };
  EXPECT_EQ(port("tcpscope_port_handshake_failures_total", "5432", "refused"), 2);
  EXPECT_EQ(port("tcpscope_port_handshake_failures_total", "6379", "refused"), 1);
  EXPECT_EQ(port("tcpscope_port_handshake_failures_total", "other", "timeout"), 1);
  EXPECT_EQ(port("tcpscope_port_closes_total", "other", "reset_received"), 1);
  EXPECT_EQ(port("tcpscope_port_closes_total", "5432", "fin"), 1);
  EXPECT_EQ(MetricSum(m, "tcpscope_port_handshake_failures_total", {}),
            MetricSum(m, "tcpscope_handshake_failures_total", {{"host", "a"}}));
  EXPECT_EQ(MetricSum(m, "tcpscope_port_closes_total", {}),
            MetricSum(m, "tcpscope_closes_total", {{"host", "a"}}));
}

TEST_F(WorkloadSeriesTest, IdlePodsAndPortsFreeTheirSlotsAndExpiredHostsLeaveNothing) {
  auto host = Connect("a");
  Apply(*host, FleetSnapshot(/*with_web1=*/true), kNow);
  v1::Batch failures;
  *failures.add_events() = Failure(Pod("web-1", "web"), 5432, v1::HANDSHAKE_FAILURE_REFUSED);
  Apply(*host, failures, kNow);
  // web-1 has no end from now on; the others keep theirs.
  Apply(*host, FleetSnapshot(/*with_web1=*/false), kNow + absl::Seconds(30));
  std::string m = Exposition();
  EXPECT_EQ(MetricValue(m, "tcpscope_workload_connections",
                        W("shop", "web-1", "web", "state", "established")),
            0);

  EXPECT_TRUE(aggregator_.ExpireHosts(kNow + absl::Seconds(59)).empty());
  EXPECT_EQ(MetricValue(Exposition(), "tcpscope_workload_connections",
                        W("shop", "web-1", "web", "state", "established")),
            0);
  EXPECT_TRUE(aggregator_.ExpireHosts(kNow + absl::Seconds(61)).empty());  // connected
  m = Exposition();
  EXPECT_EQ(m.find("pod=\"web-1\""), std::string::npos) << m;
  EXPECT_EQ(m.find("port=\"5432\""), std::string::npos) << m;
  EXPECT_EQ(MetricValue(m, "tcpscope_workload_connections",
                        W("shop", "web-0", "web", "state", "established")),
            2);

  // The freed slot goes to the next pod seen: redis, the first of the snapshot in "other".
  Apply(*host, FleetSnapshot(/*with_web1=*/false), kNow + absl::Seconds(62));
  m = Exposition();
  EXPECT_EQ(
      MetricValue(m, "tcpscope_workload_connections", W("", "", "redis", "state", "syn_sent")), 1);
  EXPECT_EQ(
      MetricValue(m, "tcpscope_workload_connections", W("", "other", "", "state", "syn_sent")), 0);
  EXPECT_EQ(
      MetricValue(m, "tcpscope_workload_connections", W("", "other", "", "state", "established")),
      1);  // db-0

  // The host goes: gauges at once, everything else with the host.
  aggregator_.Disconnect(*host, kNow + absl::Seconds(62));
  EXPECT_EQ(aggregator_.ExpireHosts(kNow + absl::Seconds(123)), std::vector<std::string>{"a"});
  m = Exposition();
  EXPECT_EQ(m.find("host=\"a\""), std::string::npos) << m;
}

TEST_F(WorkloadSeriesTest, APodsContainersBeyondEightAreSummedInOther) {
  auto host = Connect("a");
  v1::Batch batch;
  for (int i = 0; i < 10; ++i) {
    *batch.mutable_snapshot()->add_connections() =
        End(Pod("web-0", absl::StrCat("c", i)), v1::TCP_STATE_ESTABLISHED);
  }
  Apply(*host, batch, kNow);
  const std::string m = Exposition();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(MetricValue(m, "tcpscope_workload_connections",
                          W("shop", "web-0", absl::StrCat("c", i), "state", "established")),
              1);
  }
  EXPECT_EQ(MetricValue(m, "tcpscope_workload_connections",
                        W("shop", "web-0", "c8", "state", "established")),
            std::nullopt);
  EXPECT_EQ(
      MetricValue(m, "tcpscope_workload_connections", W("", "other", "", "state", "established")),
      2);
}

// Each paired end names its peer (host, state, process, container, pod) in every listing; a
// half-open end is counted for its pod, and its event carries the peer's origin.
TEST_F(WorkloadSeriesTest, PeersAreNamedAndHalfOpenEndsCountedForTheirPod) {
  auto a = Connect("a");
  auto b = Connect("b");
  auto end = [](const v1::Origin& origin, bool client) {
    v1::Connection connection = End(origin, v1::TCP_STATE_ESTABLISHED);
    connection.set_connection_id(client ? 11 : 22);
    connection.set_role(client ? v1::ROLE_CLIENT : v1::ROLE_SERVER);
    v1::Endpoints* endpoints = connection.mutable_endpoints();
    endpoints->set_local_address(std::string({10, 0, 0, static_cast<char>(client ? 1 : 2)}));
    endpoints->set_remote_address(std::string({10, 0, 0, static_cast<char>(client ? 2 : 1)}));
    endpoints->set_local_port(client ? 40000 : 5432);
    endpoints->set_remote_port(client ? 5432 : 40000);
    return connection;
  };
  v1::Origin web = Pod("web-0", "web");
  web.set_pid(77);
  web.set_command("gunicorn");
  v1::Origin db = Pod("db-0", "postgres");
  db.set_pid(88);
  db.set_command("postgres");
  v1::Batch snapshot_a;
  *snapshot_a.mutable_snapshot()->add_connections() = end(web, true);
  v1::Batch snapshot_b;
  *snapshot_b.mutable_snapshot()->add_connections() = end(db, false);
  Apply(*a, snapshot_a, kNow);
  Apply(*b, snapshot_b, kNow);

  const v1::ListConnectionsResponse all = queries_.Connections({}, kNow);
  ASSERT_EQ(all.connections_size(), 2);
  for (const v1::HostConnection& entry : all.connections()) {
    EXPECT_EQ(entry.pairing(), v1::PAIRING_PAIRED);
    ASSERT_TRUE(entry.has_peer()) << entry.host();
    EXPECT_TRUE(entry.peer().present());
    const bool is_a = entry.host() == "a";
    EXPECT_EQ(entry.peer().host(), is_a ? "b" : "a");
    EXPECT_EQ(entry.peer().connection().origin().pod(), is_a ? "db-0" : "web-0");
    EXPECT_EQ(entry.peer().connection().origin().command(), is_a ? "postgres" : "gunicorn");
    EXPECT_EQ(entry.peer().connection().origin().pid(), is_a ? 88u : 77u);
  }
  // Workload filters: one end, or with --paired either end.
  v1::ListConnectionsRequest request;
  request.set_pod("db-0");
  v1::ListConnectionsResponse listed = queries_.Connections(request, kNow);
  ASSERT_EQ(listed.connections_size(), 1);
  EXPECT_EQ(listed.connections(0).host(), "b");
  request.set_paired(true);
  listed = queries_.Connections(request, kNow);
  ASSERT_EQ(listed.connections_size(), 1);
  EXPECT_EQ(listed.connections(0).host(), "a");  // the client's end lists the pair
  request.set_pod("");
  request.set_process("88");
  EXPECT_EQ(queries_.Connections(request, kNow).connections_size(), 1);
  request.set_process("89");
  EXPECT_EQ(queries_.Connections(request, kNow).connections_size(), 0);
  // --host=b --paired walks b's view only, and still lists the pair from a's end (the
  // client's), with b's end as its peer.
  request.set_process("");
  request.set_host("b");
  listed = queries_.Connections(request, kNow);
  ASSERT_EQ(listed.connections_size(), 1);
  EXPECT_EQ(listed.connections(0).host(), "a");
  EXPECT_EQ(listed.connections(0).connection().connection_id(), 11u);
  EXPECT_EQ(listed.connections(0).peer().host(), "b");
  EXPECT_EQ(listed.connections(0).peer().connection().connection_id(), 22u);
  EXPECT_TRUE(listed.connections(0).peer().present());
  request.set_host("a");
  listed = queries_.Connections(request, kNow);
  ASSERT_EQ(listed.connections_size(), 1);
  EXPECT_EQ(listed.connections(0).host(), "a");

  // b's end resets (its close event), a's end never hears: half-open at a's next snapshot past
  // the grace.
  v1::Batch close_b;
  v1::Event* close = close_b.add_events();
  *close = Close(v1::ROLE_SERVER, v1::CLOSE_INITIATOR_LOCAL, v1::CLOSE_REASON_RESET_SENT);
  close->set_connection_id(22);
  close->set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(kNow + absl::Seconds(1))));
  *close->mutable_origin() = db;
  *close->mutable_endpoints() = end(db, false).endpoints();
  Apply(*b, close_b, kNow + absl::Seconds(1));
  Apply(*b, v1::Batch(), kNow + absl::Seconds(1));
  Apply(*a, snapshot_a, kNow + absl::Seconds(10));
  std::string m = Exposition();
  EXPECT_EQ(MetricValue(m, "tcpscope_workload_connections_half_open",
                        W("shop", "web-0", "web", "reason", "peer_closed")),
            1);
  EXPECT_EQ(
      MetricValue(m, "tcpscope_connections_half_open", {{"host", "a"}, {"reason", "peer_closed"}}),
      1);
  std::vector<v1::Event> findings;
  for (const auto& published : log_.Subscribe(nullptr).batches) {
    for (const v1::Event& event : published->batch->events()) {
      if (event.has_half_open()) findings.push_back(event);
    }
  }
  log_.Unsubscribe(nullptr);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].origin().pod(), "web-0");
  EXPECT_EQ(findings[0].half_open().peer_host(), "b");
  EXPECT_EQ(findings[0].half_open().peer_origin().pod(), "db-0");
  EXPECT_EQ(findings[0].half_open().peer_origin().container_name(), "postgres");
  EXPECT_EQ(findings[0].half_open().peer_origin().pid(), 88u);
  // A lost peer is still named.
  v1::ListConnectionsRequest on_a;
  on_a.set_host("a");
  const v1::ListConnectionsResponse after = queries_.Connections(on_a, kNow);
  ASSERT_EQ(after.connections_size(), 1);
  EXPECT_FALSE(after.connections(0).peer().present());
  EXPECT_EQ(after.connections(0).peer().connection().origin().pod(), "db-0");

  // a's end goes: the half-open gauge falls to 0.
  v1::Batch empty_a;
  empty_a.mutable_snapshot();
  Apply(*a, empty_a, kNow + absl::Seconds(20));
  m = Exposition();
  EXPECT_EQ(MetricValue(m, "tcpscope_workload_connections_half_open",
                        W("shop", "web-0", "web", "reason", "peer_closed")),
            0);
  EXPECT_EQ(MetricValue(m, "tcpscope_workload_connections",
                        W("shop", "web-0", "web", "state", "established")),
            0);
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
        batch->mutable_events(1)->mutable_origin()->set_container_name(absl::StrCat("c", seq % 5));
        batch->mutable_events(1)->mutable_endpoints()->set_local_port(seq % 7);
        if (seq % 10 == 0) {
          v1::Snapshot* snapshot = batch->mutable_snapshot();
          snapshot->set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(kNow)));
          // Agents 0 and 1 (2 and 3) hold the two ends of one connection: the pairing index
          // works too, and finds nothing wrong.
          v1::Connection* connection = snapshot->add_connections();
          *connection = Connection(v1::TCP_STATE_ESTABLISHED, seq % 20 == 0);
          connection->set_connection_id(static_cast<uint64_t>(i) + 1);
          // Workload series, counted by the aggregator and (half-open) by the pairing index.
          connection->mutable_origin()->set_pod_namespace("shop");
          connection->mutable_origin()->set_pod(absl::StrCat("web-", seq % 3));
          connection->mutable_origin()->set_container_name("web");
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
      (void)queries_.Summary("");
      (void)queries_.Agents();
      v1::ListConnectionsRequest keepalive_on;
      keepalive_on.set_keepalive(v1::KEEPALIVE_FILTER_ON);
      (void)queries_.Connections(keepalive_on, kNow);
      v1::ListConnectionsRequest paired;
      paired.set_paired(true);
      (void)queries_.Connections(paired, kNow);
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
    // The expiry timer runs an hour ahead, so idle slots go and come back: no exact count.
    EXPECT_LE(MetricSum(m, "tcpscope_workload_closes_total", {{"host", host}}), kBatches);
    EXPECT_LE(MetricSum(m, "tcpscope_port_closes_total", {{"host", host}}), kBatches);
  }
  EXPECT_EQ(queries_.Summary("").fleet().events(), kAgents * kBatches * 2u);
  v1::ListConnectionsRequest paired;
  paired.set_paired(true);
  const v1::ListConnectionsResponse pairs = queries_.Connections(paired, kNow);
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

namespace tcpscope::service {
namespace {

// The events of a batch that carries a snapshot reach the history apart from the snapshot,
// with the origins they refer to.
TEST_F(AggregatorTest, EventsBesideASnapshotKeepTheirOriginsInTheHistory) {
  uint64_t last_applied = 0;
  auto host = Connect("a", 1, &last_applied);
  v1::Batch batch;
  batch.set_seq(1);
  batch.add_origins()->set_command("nginx");
  v1::Event event = Handshake(v1::ROLE_SERVER);
  event.set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(kNow)));
  event.set_origin_ref(1);
  *batch.add_events() = event;
  batch.mutable_snapshot()->set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(kNow)));
  *batch.mutable_snapshot()->add_connections() = Connection(v1::TCP_STATE_ESTABLISHED, false);
  EXPECT_TRUE(Apply(*host, batch));
  const EventLog::History history = log_.Subscribe(nullptr);
  ASSERT_EQ(history.batches.size(), 1u);
  const v1::Batch& kept = *history.batches[0]->batch;
  EXPECT_FALSE(kept.has_snapshot());
  ASSERT_EQ(kept.events_size(), 1);
  EXPECT_EQ(EventOrigin(kept, kept.events(0)).command(), "nginx");
}

}  // namespace
}  // namespace tcpscope::service
