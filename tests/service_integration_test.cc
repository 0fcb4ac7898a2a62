// What the service makes of real connections, end to end (issue 4): every SPEC metric with its
// exact value after a scripted scenario, at-risk gauges that rise and fall, host series that
// expire, and live events that reach `tcpscope events --follow` within a second. Two hosts
// (namespaces made by the test), an eBPF agent each, one service. Needs root and eBPF.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/process.h"
#include "tests/harness/two_host_test.h"

namespace tcpscope::testing {
namespace {

constexpr const char* kA = kHostA;
constexpr const char* kB = kHostB;

// Every metric family of SPEC.md's table, checked against the SPEC itself when it is beside
// the repository (../shared/SPEC.md, as in CI).
const std::vector<std::string>& SpecMetrics() {
  static const auto* names = new std::vector<std::string>{"tcpscope_handshakes_total",
                                                          "tcpscope_handshake_failures_total",
                                                          "tcpscope_handshake_duration_seconds",
                                                          "tcpscope_closes_total",
                                                          "tcpscope_connection_lifetime_seconds",
                                                          "tcpscope_keepalive_probes_total",
                                                          "tcpscope_keepalive_timeouts_total",
                                                          "tcpscope_connections",
                                                          "tcpscope_connections_keepalive",
                                                          "tcpscope_connections_at_risk",
                                                          "tcpscope_agent_up",
                                                          "tcpscope_agent_events_total",
                                                          "tcpscope_agent_events_lost_total"};
  return *names;
}

class ServiceTest : public TwoHostTest {
 protected:
  void Start(const std::vector<std::string>& service_flags) {
    TwoHostTest::Start({"--source=ebpf", "--snapshot_interval=200ms"}, service_flags);
  }

  std::optional<double> WaitFor(const std::string& name, const Labels& labels, double value,
                                absl::Duration timeout = absl::Seconds(15)) {
    return stack_->WaitForValue(name, labels, value, timeout);
  }
};

TEST(SpecMetricsTest, ListMatchesTheSpec) {
  const char* source = std::getenv("TCPSCOPE_SOURCE_DIR");
  std::ifstream spec(std::string(source == nullptr ? "." : source) + "/../shared/SPEC.md");
  if (!spec) GTEST_SKIP() << "SKIPPED: ../shared/SPEC.md is not beside the repository";
  std::stringstream text;
  text << spec.rdbuf();
  std::set<std::string> in_spec;
  std::istringstream lines(text.str());
  for (std::string line; std::getline(lines, line);) {
    if (!absl::StartsWith(line, "| `tcpscope_")) continue;
    const size_t end = line.find('`', 3);
    in_spec.insert(line.substr(3, end - 3));
  }
  EXPECT_EQ(in_spec, std::set<std::string>(SpecMetrics().begin(), SpecMetrics().end()));
}

// The scenario, A -> B:
//   3 short IPv4 connections (A closes first), 1 connect refused by B,
//   1 long IPv6 connection with keepalive on at A (idle 600 s: never probes here),
//   1 IPv6 connection that B closes and A never does (A stays in CLOSE_WAIT),
//   1 IPv4 connection with keepalive at A (2 s idle, 3 probes 1 s apart) whose path from A is
//     then blackholed: 3 probes, a keepalive timeout at A, while B's end stays established.
TEST_F(ServiceTest, EverySpecMetricHasItsExactValue) {
  ASSERT_NO_FATAL_FAILURE(Start({"--idle_risk_after=3s", "--close_wait_risk_after=2s"}));
  ASSERT_NO_FATAL_FAILURE(ShortConnections(network_->b_ipv4(), 3));
  EXPECT_EQ(ErrnoOf(ConnectFrom(network_->a(), network_->b_ipv4(), 1).status()), ECONNREFUSED);

  ASSERT_NO_FATAL_FAILURE(OpenLongAndCloseWaitIpv6());

  const int v4_port = ListenOnB(network_->b_ipv4());
  auto [probed_client, probed_server] = Connect(network_->b_ipv4(), v4_port);
  ASSERT_GE(probed_client, 0);
  EnableKeepalive(probed_client, 2, 1, 3);
  ASSERT_TRUE(network_->BlackholeFromA(network_->b_ipv4()).ok());
  EXPECT_EQ(WaitFor("tcpscope_keepalive_timeouts_total", {{"host", kA}, {"role", "client"}}, 1), 1);
  // B's two idle established ends pass --idle_risk_after; A's CLOSE_WAIT passes its threshold.
  EXPECT_EQ(
      WaitFor("tcpscope_connections_at_risk", {{"host", kB}, {"reason", "idle_no_keepalive"}}, 2),
      2);
  EXPECT_EQ(
      WaitFor("tcpscope_connections_at_risk", {{"host", kA}, {"reason", "close_wait_stale"}}, 1),
      1);
  absl::SleepFor(absl::Milliseconds(600));  // nothing late or twice
  const std::string m = stack_->Scrape();

  struct Expected {
    std::string name;
    Labels labels;
    double value;
  };
  const std::vector<Expected> expected = {
      {"tcpscope_handshakes_total", {{"host", kA}, {"role", "client"}}, 6},
      {"tcpscope_handshakes_total", {{"host", kB}, {"role", "server"}}, 6},
      {"tcpscope_handshake_failures_total", {{"host", kA}, {"reason", "refused"}}, 1},
      {"tcpscope_handshake_duration_seconds_count", {{"host", kA}, {"role", "client"}}, 6},
      {"tcpscope_handshake_duration_seconds_count", {{"host", kB}, {"role", "server"}}, 6},
      {"tcpscope_closes_total",
       {{"host", kA}, {"role", "client"}, {"initiator", "local"}, {"reason", "fin"}},
       3},
      {"tcpscope_closes_total",
       {{"host", kA}, {"role", "client"}, {"initiator", "local"}, {"reason", "keepalive_timeout"}},
       1},
      {"tcpscope_closes_total",
       {{"host", kB}, {"role", "server"}, {"initiator", "remote"}, {"reason", "fin"}},
       3},
      // B's end of the CLOSE_WAIT connection: B closed first; its FIN_WAIT2 remainder is a
      // kernel mini socket, the connection end itself is over.
      {"tcpscope_closes_total",
       {{"host", kB}, {"role", "server"}, {"initiator", "local"}, {"reason", "fin"}},
       1},
      {"tcpscope_connection_lifetime_seconds_count", {{"host", kA}, {"role", "client"}}, 4},
      {"tcpscope_connection_lifetime_seconds_count", {{"host", kB}, {"role", "server"}}, 4},
      // The keepalive-timeout connection lived over 2 s; the short ones under 1 s.
      {"tcpscope_connection_lifetime_seconds_bucket",
       {{"host", kA}, {"role", "client"}, {"le", "1"}},
       3},
      {"tcpscope_keepalive_probes_total", {{"host", kA}}, 3},
      {"tcpscope_keepalive_timeouts_total", {{"host", kA}, {"role", "client"}}, 1},
      {"tcpscope_connections", {{"host", kA}, {"state", "established"}}, 1},
      {"tcpscope_connections", {{"host", kA}, {"state", "close_wait"}}, 1},
      {"tcpscope_connections", {{"host", kA}, {"state", "time_wait"}}, 3},  // the short ones
      {"tcpscope_connections", {{"host", kB}, {"state", "established"}}, 2},
      {"tcpscope_connections", {{"host", kB}, {"state", "fin_wait2"}}, 1},
      {"tcpscope_connections", {{"host", kB}, {"state", "listen"}}, 3},
      {"tcpscope_connections_keepalive", {{"host", kA}, {"keepalive", "on"}}, 1},
      {"tcpscope_connections_keepalive", {{"host", kA}, {"keepalive", "off"}}, 0},
      {"tcpscope_connections_keepalive", {{"host", kB}, {"keepalive", "on"}}, 0},
      {"tcpscope_connections_keepalive", {{"host", kB}, {"keepalive", "off"}}, 2},
      {"tcpscope_connections_at_risk", {{"host", kA}, {"reason", "idle_no_keepalive"}}, 0},
      {"tcpscope_connections_at_risk", {{"host", kA}, {"reason", "keepalive_probing"}}, 0},
      {"tcpscope_connections_at_risk", {{"host", kA}, {"reason", "close_wait_stale"}}, 1},
      {"tcpscope_connections_at_risk", {{"host", kB}, {"reason", "idle_no_keepalive"}}, 2},
      {"tcpscope_connections_at_risk", {{"host", kB}, {"reason", "keepalive_probing"}}, 0},
      {"tcpscope_connections_at_risk", {{"host", kB}, {"reason", "close_wait_stale"}}, 0},
      {"tcpscope_agent_up", {{"host", kA}}, 1},
      {"tcpscope_agent_up", {{"host", kB}}, 1},
      // A: 6 handshakes + 1 failure + 4 closes + 3 probes + 1 timeout. B: 6 + 4 closes.
      {"tcpscope_agent_events_total", {{"host", kA}}, 15},
      {"tcpscope_agent_events_total", {{"host", kB}}, 10},
  };
  std::set<std::string> covered;
  for (const Expected& e : expected) {
    EXPECT_EQ(MetricValue(m, e.name, e.labels), e.value)
        << e.name << absl::StrJoin(e.labels, ",", absl::PairFormatter("="));
    for (const std::string& family : SpecMetrics()) {
      if (absl::StartsWith(e.name, family)) covered.insert(family);
    }
  }
  for (const char* host : {kA, kB}) {
    for (const char* stage : {"kernel", "agent"}) {
      EXPECT_EQ(
          MetricValue(m, "tcpscope_agent_events_lost_total", {{"host", host}, {"stage", stage}}), 0)
          << host << " " << stage;
    }
  }
  covered.insert("tcpscope_agent_events_lost_total");
  EXPECT_EQ(covered.size(), SpecMetrics().size());
  // Nothing else was counted: the totals equal the series above.
  EXPECT_EQ(MetricSum(m, "tcpscope_handshakes_total", {}), 12);
  EXPECT_EQ(MetricSum(m, "tcpscope_handshake_failures_total", {}), 1);
  EXPECT_EQ(MetricSum(m, "tcpscope_closes_total", {}), 8);
  EXPECT_EQ(MetricSum(m, "tcpscope_keepalive_timeouts_total", {}), 1);
  EXPECT_EQ(MetricSum(m, "tcpscope_connections", {{"host", kA}}), 5);
  EXPECT_EQ(MetricSum(m, "tcpscope_connections", {{"host", kB}}), 6);
  if (HasFailure()) std::cerr << m;
}

TEST_F(ServiceTest, AtRiskGaugesRiseAndFall) {
  ASSERT_NO_FATAL_FAILURE(Start({"--idle_risk_after=2s", "--close_wait_risk_after=2s"}));
  const Labels a_idle = {{"host", kA}, {"reason", "idle_no_keepalive"}};
  const Labels b_idle = {{"host", kB}, {"reason", "idle_no_keepalive"}};
  const Labels a_probing = {{"host", kA}, {"reason", "keepalive_probing"}};
  const Labels a_close_wait = {{"host", kA}, {"reason", "close_wait_stale"}};

  // Idle without keepalive: both ends become at risk; keepalive on A's end takes it out;
  // closing takes out B's.
  auto [client, server] = OneConnection();
  ASSERT_GE(client, 0);
  EXPECT_EQ(Value("tcpscope_connections_at_risk", a_idle), 0);
  EXPECT_EQ(WaitFor("tcpscope_connections_at_risk", a_idle, 1), 1);
  EXPECT_EQ(WaitFor("tcpscope_connections_at_risk", b_idle, 1), 1);
  EnableKeepalive(client, 600, 60, 9);
  EXPECT_EQ(WaitFor("tcpscope_connections_at_risk", a_idle, 0), 0);
  EXPECT_EQ(Value("tcpscope_connections_at_risk", b_idle), 1);
  CloseFd(client);
  CloseFd(server);
  EXPECT_EQ(WaitFor("tcpscope_connections_at_risk", b_idle, 0), 0);

  // Probing: the peer stops answering; the probes go out unanswered until the path is back and
  // the next probe is answered.
  auto [probed, probed_server] = Connect(network_->b_ipv4(), listen_port_);
  ASSERT_GE(probed, 0);
  EnableKeepalive(probed, 1, 1, 30);
  ASSERT_TRUE(network_->BlackholeFromA(network_->b_ipv4()).ok());
  EXPECT_EQ(WaitFor("tcpscope_connections_at_risk", a_probing, 1), 1);
  ASSERT_TRUE(network_->UnblackholeFromA(network_->b_ipv4()).ok());
  EXPECT_EQ(WaitFor("tcpscope_connections_at_risk", a_probing, 0), 0);
  EXPECT_EQ(Value("tcpscope_keepalive_timeouts_total", {{"host", kA}, {"role", "client"}}),
            std::nullopt);
  CloseFd(probed);
  CloseFd(probed_server);

  // CLOSE_WAIT: B closes, A's application does not; closing it ends the risk.
  auto [waiting, closing] = Connect(network_->b_ipv4(), listen_port_);
  ASSERT_GE(waiting, 0);
  CloseFd(closing);
  EXPECT_EQ(WaitFor("tcpscope_connections", {{"host", kA}, {"state", "close_wait"}}, 1), 1);
  EXPECT_EQ(Value("tcpscope_connections_at_risk", a_close_wait), 0);
  EXPECT_EQ(WaitFor("tcpscope_connections_at_risk", a_close_wait, 1), 1);
  CloseFd(waiting);
  EXPECT_EQ(WaitFor("tcpscope_connections_at_risk", a_close_wait, 0), 0);
}

TEST_F(ServiceTest, DisconnectedHostSeriesExpire) {
  ASSERT_NO_FATAL_FAILURE(Start({"--host_expiry=3s"}));
  ASSERT_NO_FATAL_FAILURE(ShortConnections(network_->b_ipv4(), 2));
  EXPECT_EQ(
      WaitFor("tcpscope_closes_total",
              {{"host", kB}, {"role", "server"}, {"initiator", "remote"}, {"reason", "fin"}}, 2),
      2);
  const absl::Time stopped = absl::Now();
  ASSERT_EQ(stack_->agent(kB).Stop(), 0);
  // Down at once: up is 0, snapshot gauges go; the counters stay until the expiry.
  EXPECT_EQ(WaitFor("tcpscope_agent_up", {{"host", kB}}, 0), 0);
  std::string m = stack_->Scrape();
  EXPECT_EQ(MetricValue(m, "tcpscope_connections", {{"host", kB}, {"state", "established"}}),
            std::nullopt);
  EXPECT_EQ(MetricValue(m, "tcpscope_handshakes_total", {{"host", kB}, {"role", "server"}}), 2);
  m = stack_->WaitFor([](const std::string& m) { return !absl::StrContains(m, "host=\"host-b\""); },
                      absl::Seconds(10));
  const absl::Duration gone_after = absl::Now() - stopped;
  EXPECT_FALSE(absl::StrContains(m, "host=\"host-b\"")) << m;
  EXPECT_GE(gone_after, absl::Seconds(3));
  EXPECT_EQ(MetricValue(m, "tcpscope_handshakes_total", {{"host", kA}, {"role", "client"}}), 2);
  EXPECT_EQ(MetricValue(m, "tcpscope_service_hosts_expired_total", {}), 1);
  EXPECT_EQ(MetricValue(m, "tcpscope_service_hosts", {}), 1);
}

TEST_F(ServiceTest, FollowDeliversEventsWithinOneSecondOfTheKernel) {
  ASSERT_NO_FATAL_FAILURE(Start({}));
  ASSERT_TRUE(stack_->WatchEvents().ok());
  absl::SleepFor(absl::Milliseconds(300));  // the watcher subscribes
  const int port = ListenOnB(network_->b_ipv4());
  constexpr int kConnections = 5;
  absl::Duration worst;
  for (int i = 0; i < kConnections; ++i) {
    auto [client, server] = Connect(network_->b_ipv4(), port);
    ASSERT_GE(client, 0);
    const int client_port = *LocalPort(client);
    // The client's handshake event carries the kernel's time of the transition.
    std::optional<absl::Time> kernel_time;
    absl::Time seen;
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (!kernel_time.has_value() && absl::Now() < deadline) {
      for (const v1::HostEvent& entry : stack_->WatchedEvents()) {
        const v1::Event& event = entry.event();
        if (entry.host() == kA && event.has_handshake() &&
            event.endpoints().local_port() == static_cast<uint32_t>(client_port)) {
          kernel_time = absl::FromUnixNanos(static_cast<int64_t>(event.time_unix_ns()));
          seen = absl::Now();
        }
      }
      if (!kernel_time.has_value()) absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_TRUE(kernel_time.has_value()) << "no handshake event for port " << client_port;
    const absl::Duration latency = seen - *kernel_time;
    EXPECT_LT(latency, absl::Seconds(1)) << "connection " << i;
    worst = std::max(worst, latency);
    CloseFd(client);
    CloseFd(server);
  }
  std::cerr << "worst kernel-to-CLI latency over " << kConnections
            << " connections: " << absl::FormatDuration(worst) << "\n";
}

}  // namespace
}  // namespace tcpscope::testing
