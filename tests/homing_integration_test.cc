// Agent homing across a tier of replicas, with the real binaries (issue 14): two plain
// tcpscope-service replicas on loopback, one eBPF agent watching a namespace made by the test,
// started with --service=B,A and a host name whose rendezvous ranking puts A first. It homes on
// A; A is killed (SIGKILL) and the agent moves to B within --failover_after and a little, where
// every connection made meanwhile is counted exactly once; A comes back on the same port and the
// agent returns to it, again counting each connection once. Needs root (the namespace, eBPF).
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/rendezvous.h"
#include "gtest/gtest.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/netns.h"
#include "tests/harness/sockets.h"
#include "tests/harness/tcpscope_stack.h"
#include "tests/harness/test_network.h"
#include "tests/harness/two_host_test.h"

namespace tcpscope::testing {
namespace {

constexpr absl::Duration kFailoverAfter = absl::Seconds(2);

class HomingIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override { TCPSCOPE_REQUIRE_ROOT(); }

  void TearDown() override {
    if (listener_ >= 0) close(listener_);
    if (HasFailure()) {
      std::cerr << "---- agent metrics\n" << AgentMetrics();
      if (a_) std::cerr << "==== replica A\n" << a_->Logs();
      if (b_) std::cerr << "==== replica B (no agent of its own)\n" << b_->Logs();
    }
  }

  std::string AgentMetrics() const {
    absl::StatusOr<std::string> body = HttpGet("127.0.0.1", agent_metrics_port_, "/metrics");
    return body.ok() ? *body : "";
  }

  // Polls the agent's /metrics until the series has `value` (bounded); returns the last value.
  std::optional<double> AwaitAgentValue(const std::string& name, const Labels& labels, double value,
                                        absl::Duration timeout) const {
    const absl::Time deadline = absl::Now() + timeout;
    std::optional<double> seen = MetricValue(AgentMetrics(), name, labels);
    while (seen != value && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(50));
      seen = MetricValue(AgentMetrics(), name, labels);
    }
    return seen;
  }

  // `count` connections inside the namespace on loopback: the client sends a byte and closes
  // first, the server closes after seeing EOF.
  void ShortConnections(int count) {
    for (int i = 0; i < count; ++i) {
      auto client = ConnectFrom(*netns_, "127.0.0.1", listen_port_);
      ASSERT_TRUE(client.ok()) << client.status();
      auto server = AcceptOne(listener_);
      ASSERT_TRUE(server.ok()) << server.status();
      ASSERT_EQ(send(*client, "x", 1, 0), 1);
      close(*client);
      AwaitEof(*server);
      close(*server);
    }
  }

  // Replica `stack` counted exactly `count` of those connections of the host (both ends).
  void ExpectCounted(TcpscopeStack& stack, int count) {
    const Labels client_fin = {
        {"host", host_}, {"role", "client"}, {"initiator", "local"}, {"reason", "fin"}};
    const Labels server_fin = {
        {"host", host_}, {"role", "server"}, {"initiator", "remote"}, {"reason", "fin"}};
    EXPECT_EQ(stack.WaitForValue("tcpscope_closes_total", client_fin, count), count);
    EXPECT_EQ(stack.WaitForValue("tcpscope_closes_total", server_fin, count), count);
    absl::SleepFor(absl::Seconds(1));  // anything late or resent would show by now
    const std::string m = stack.Scrape();
    EXPECT_EQ(MetricValue(m, "tcpscope_handshakes_total", {{"host", host_}, {"role", "client"}}),
              count);
    EXPECT_EQ(MetricValue(m, "tcpscope_handshakes_total", {{"host", host_}, {"role", "server"}}),
              count);
    EXPECT_EQ(MetricSum(m, "tcpscope_closes_total", {{"host", host_}}), 2.0 * count);
    EXPECT_EQ(MetricSum(m, "tcpscope_agent_events_total", {{"host", host_}}), 4.0 * count);
    EXPECT_EQ(MetricSum(m, "tcpscope_agent_events_lost_total", {}), 0);
  }

  std::unique_ptr<TestNetns> netns_;
  std::unique_ptr<TcpscopeStack> a_, b_;
  std::string host_;
  int agent_metrics_port_ = 0;
  int listener_ = -1;
  int listen_port_ = 0;
};

TEST_F(HomingIntegrationTest, FailsOverWhenItsReplicaDiesAndReturnsWhenItIsBack) {
  auto netns = TestNetns::Create("homing");
  ASSERT_TRUE(netns.ok()) << netns.status();
  netns_ = std::move(*netns);
  auto a = TcpscopeStack::Start("HomingReplicaA");
  ASSERT_TRUE(a.ok()) << a.status();
  a_ = std::move(*a);
  auto b = TcpscopeStack::Start("HomingReplicaB");
  ASSERT_TRUE(b.ok()) << b.status();
  b_ = std::move(*b);
  const std::string replica_a = absl::StrCat("127.0.0.1:", a_->grpc_port());
  const std::string replica_b = absl::StrCat("127.0.0.1:", b_->grpc_port());
  for (int i = 0; host_.empty(); ++i) {
    const std::string host = absl::StrCat("homing-", i);
    if (RendezvousRanking(host, {replica_a, replica_b}).front() == replica_a) host_ = host;
  }
  auto listener = ListenIn(*netns_, "127.0.0.1", 0);
  ASSERT_TRUE(listener.ok()) << listener.status();
  listener_ = *listener;
  listen_port_ = *LocalPort(listener_);

  agent_metrics_port_ = FreeTcpPort();
  ASSERT_TRUE(a_->AddAgent(host_, netns_->path(),
                           {absl::StrCat("--service=", replica_b, ",", replica_a), "--source=ebpf",
                            "--snapshot_interval=500ms",
                            absl::StrCat("--failover_after=", absl::FormatDuration(kFailoverAfter)),
                            "--max_reconnect_backoff=300ms",
                            absl::StrCat("--metrics_listen=127.0.0.1:", agent_metrics_port_)})
                  .ok());
  ASSERT_TRUE(a_->WaitForAgents().ok());
  EXPECT_EQ(
      AwaitAgentValue("tcpscope_agent_home_info", {{"replica", replica_a}}, 1, absl::Seconds(5)),
      1);

  // 1. At home on A.
  ShortConnections(3);
  ExpectCounted(*a_, 3);
  // Everything acknowledged, so that what B gets next is exactly what A never applied.
  ASSERT_EQ(AwaitAgentValue("tcpscope_agent_buffered_batches", {}, 0, absl::Seconds(10)), 0);

  // 2. A dies; connections made meanwhile are counted at B, once.
  a_->KillService();
  const absl::Time killed = absl::Now();
  ShortConnections(5);
  EXPECT_EQ(b_->WaitForValue("tcpscope_agent_up", {{"host", host_}}, 1, absl::Seconds(15)), 1);
  const absl::Duration to_b = absl::Now() - killed;
  std::cerr << "homed on B " << absl::FormatDuration(to_b) << " after A's SIGKILL (failover_after "
            << absl::FormatDuration(kFailoverAfter) << ")\n";
  EXPECT_LE(to_b, kFailoverAfter + absl::Seconds(3));
  ExpectCounted(*b_, 5);
  std::string m = AgentMetrics();
  EXPECT_EQ(MetricValue(m, "tcpscope_agent_home_info", {{"replica", replica_b}}), 1);
  EXPECT_EQ(MetricValue(m, "tcpscope_agent_home_info", {{"replica", replica_a}}), std::nullopt);
  EXPECT_EQ(MetricValue(m, "tcpscope_agent_home_changes_total", {{"reason", "failover"}}), 1);

  // 3. A is back on the same port: the agent returns, and counts each new connection once
  // there (B keeps what it had).
  ASSERT_TRUE(a_->RestartService().ok());
  const absl::Time restarted = absl::Now();
  EXPECT_EQ(AwaitAgentValue("tcpscope_agent_home_changes_total", {{"reason", "return"}}, 1,
                            absl::Seconds(15)),
            1);
  EXPECT_EQ(a_->WaitForValue("tcpscope_agent_up", {{"host", host_}}, 1, absl::Seconds(15)), 1);
  std::cerr << "back on A " << absl::FormatDuration(absl::Now() - restarted)
            << " after its restart\n";
  ShortConnections(2);
  ExpectCounted(*a_, 2);
  ExpectCounted(*b_, 5);
  m = AgentMetrics();
  EXPECT_EQ(MetricValue(m, "tcpscope_agent_home_info", {{"replica", replica_a}}), 1);
  EXPECT_EQ(MetricValue(m, "tcpscope_agent_home_changes_total", {{"reason", "failover"}}), 1);
  EXPECT_EQ(MetricValue(m, "tcpscope_agent_home_changes_total", {{"reason", "resolve"}}), 0);
}

}  // namespace
}  // namespace tcpscope::testing
