// End to end with the real binaries: real connections in a namespace the test creates, watched
// by tcpscope-agent (--netns), counted by tcpscope-service, read back through /metrics, promtool
// and the CLI. Needs root for the namespace; skips loudly without it.
#include <unistd.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tcpscope/v1/observer.pb.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/netns.h"
#include "tests/harness/process.h"
#include "tests/harness/sockets.h"
#include "tests/harness/tcpscope_stack.h"

namespace tcpscope::testing {
namespace {

constexpr char kHost[] = "skeleton-a";
constexpr int kConnections = 20;
constexpr int kKeepalive = 7;

class SkeletonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TCPSCOPE_REQUIRE_ROOT();
    auto netns = TestNetns::Create("skel");
    ASSERT_TRUE(netns.ok()) << netns.status();
    netns_ = std::move(*netns);
    auto stack = TcpscopeStack::Start("skeleton");
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = std::move(*stack);
    // The polling source: the path every later source builds on.
    ASSERT_TRUE(
        stack_->AddAgent(kHost, netns_->path(), {"--source=sockdiag", "--snapshot_interval=200ms"})
            .ok());
  }

  void TearDown() override {
    if (HasFailure() && stack_) std::cerr << stack_->Logs();
  }

  std::string Scrape() { return stack_->Scrape(); }
  std::string WaitFor(const std::function<bool(const std::string&)>& done) {
    return stack_->WaitFor(done);
  }

  std::optional<double> Gauge(const std::string& exposition, const std::string& name,
                              const std::string& label, const std::string& value) {
    return MetricValue(exposition, name, {{"host", kHost}, {label, value}});
  }

  std::optional<double> State(const std::string& exposition, const std::string& state) {
    return Gauge(exposition, "tcpscope_connections", "state", state);
  }

  std::unique_ptr<TestNetns> netns_;
  std::unique_ptr<TcpscopeStack> stack_;
};

TEST_F(SkeletonTest, CountsExactlyTheConnectionsOfTheNamespace) {
  // The agent's baseline snapshot: the namespace is empty.
  std::string metrics =
      WaitFor([&](const std::string& m) { return State(m, "established") == 0.0; });
  ASSERT_EQ(State(metrics, "established"), 0.0) << metrics;
  ASSERT_EQ(MetricValue(metrics, "tcpscope_agent_up", {{"host", kHost}}), 1.0);

  std::optional<ConnectionSet> connections;
  ASSERT_TRUE(netns_
                  ->RunInside([&] {
                    auto set = ConnectionSet::Open(kConnections, kKeepalive);
                    ASSERT_TRUE(set.ok()) << set.status();
                    connections.emplace(std::move(*set));
                  })
                  .ok());
  ASSERT_TRUE(connections.has_value());

  // Both ends of every connection live in the namespace.
  metrics =
      WaitFor([&](const std::string& m) { return State(m, "established") == 2.0 * kConnections; });
  EXPECT_EQ(State(metrics, "established"), 2.0 * kConnections) << metrics;
  EXPECT_EQ(State(metrics, "listen"), 1.0);
  EXPECT_EQ(Gauge(metrics, "tcpscope_connections_keepalive", "keepalive", "on"), kKeepalive);
  EXPECT_EQ(Gauge(metrics, "tcpscope_connections_keepalive", "keepalive", "off"),
            2.0 * kConnections - kKeepalive);
  EXPECT_EQ(Gauge(metrics, "tcpscope_handshakes_total", "role", "client"), kConnections);
  EXPECT_EQ(Gauge(metrics, "tcpscope_handshakes_total", "role", "server"), kConnections);

  // Later snapshots of the same connections count nothing again.
  absl::SleepFor(absl::Seconds(1));
  metrics = Scrape();
  EXPECT_EQ(Gauge(metrics, "tcpscope_handshakes_total", "role", "client"), kConnections);
  EXPECT_EQ(Gauge(metrics, "tcpscope_handshakes_total", "role", "server"), kConnections);
  EXPECT_EQ(MetricValue(metrics, "tcpscope_agent_events_total", {{"host", kHost}}),
            2.0 * kConnections);

  // The exposition passes Prometheus's own linter.
  const std::string exposition_file = ::testing::TempDir() + "/skeleton-metrics.txt";
  RunCommand(absl::StrCat("cat > ", exposition_file, " <<'EOF'\n", metrics, "EOF\n"));
  const CommandResult lint =
      RunCommand(absl::StrCat("promtool check metrics < ", exposition_file, " 2>&1"));
  EXPECT_EQ(lint.exit_code, 0) << lint.output;

  // The CLI lists the same connections.
  const CommandResult cli = RunCommand(absl::StrCat(
      BinaryPath("tcpscope"), " connections -o json --service=127.0.0.1:", stack_->grpc_port(),
      " --host=", kHost));
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  v1::ListConnectionsResponse listed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(cli.output, &listed).ok()) << cli.output;
  int established = 0, keepalive_on = 0, clients = 0;
  for (const v1::HostConnection& entry : listed.connections()) {
    const v1::Connection& c = entry.connection();
    EXPECT_EQ(entry.host(), kHost);
    if (c.state() != v1::TCP_STATE_ESTABLISHED) continue;
    const bool ours =
        c.endpoints().local_port() == static_cast<uint32_t>(connections->listen_port()) ||
        c.endpoints().remote_port() == static_cast<uint32_t>(connections->listen_port());
    if (!ours) continue;
    ++established;
    if (c.keepalive().enabled()) ++keepalive_on;
    if (c.role() == v1::ROLE_CLIENT) ++clients;
  }
  EXPECT_EQ(established, 2 * kConnections);
  EXPECT_EQ(keepalive_on, kKeepalive);
  EXPECT_EQ(clients, kConnections);

  // Clients close first: they wait in FIN_WAIT2, the servers in CLOSE_WAIT.
  connections->CloseClients();
  metrics = WaitFor([&](const std::string& m) {
    return State(m, "close_wait") == kConnections && State(m, "fin_wait2") == kConnections;
  });
  EXPECT_EQ(State(metrics, "close_wait"), kConnections) << metrics;
  EXPECT_EQ(State(metrics, "fin_wait2"), kConnections);
  EXPECT_EQ(State(metrics, "established"), 0.0);

  // Then the servers: clients go to TIME_WAIT, servers disappear.
  connections->CloseServers();
  metrics = WaitFor([&](const std::string& m) {
    return State(m, "close_wait") == 0.0 && State(m, "last_ack") == 0.0 &&
           State(m, "time_wait") == kConnections;
  });
  EXPECT_EQ(State(metrics, "time_wait"), kConnections) << metrics;
  EXPECT_EQ(State(metrics, "established"), 0.0);
  EXPECT_EQ(Gauge(metrics, "tcpscope_connections_keepalive", "keepalive", "on"), 0.0);
  EXPECT_EQ(
      MetricValue(metrics, "tcpscope_closes_total",
                  {{"host", kHost}, {"role", "client"}, {"initiator", "local"}, {"reason", "fin"}}),
      kConnections);
  EXPECT_EQ(MetricValue(
                metrics, "tcpscope_closes_total",
                {{"host", kHost}, {"role", "server"}, {"initiator", "remote"}, {"reason", "fin"}}),
            kConnections);
  EXPECT_EQ(MetricSum(metrics, "tcpscope_closes_total", {{"host", kHost}}), 2.0 * kConnections);

  // The agent stops cleanly; the host's snapshot series go and agent_up drops to 0.
  EXPECT_EQ(stack_->agent(kHost).Stop(), 0);
  metrics = WaitFor([&](const std::string& m) {
    return MetricValue(m, "tcpscope_agent_up", {{"host", kHost}}) == 0.0;
  });
  EXPECT_EQ(MetricValue(metrics, "tcpscope_agent_up", {{"host", kHost}}), 0.0);
  EXPECT_EQ(State(metrics, "established"), std::nullopt);
  EXPECT_EQ(Gauge(metrics, "tcpscope_connections_keepalive", "keepalive", "on"), std::nullopt);
  EXPECT_EQ(stack_->service().Stop(), 0);
}

}  // namespace
}  // namespace tcpscope::testing
