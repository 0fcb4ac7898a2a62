// At-least-once delivery, exactly-once counting, with the real binaries (issue 5): connections
// made while the service is dead (SIGKILL, then restarted), across cuts of the agent-service
// path and across lost acknowledgements are each counted exactly once; a full agent buffer
// drops the oldest batches and the service learns exactly how many events went. Two hosts
// (namespaces made by the test) with an eBPF agent each; needs root.
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tcpscope/v1/observer.pb.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/process.h"
#include "tests/harness/two_host_test.h"

namespace tcpscope::testing {
namespace {

constexpr const char* kA = kHostA;
constexpr const char* kB = kHostB;

const Labels kClientFin = {
    {"host", kA}, {"role", "client"}, {"initiator", "local"}, {"reason", "fin"}};
const Labels kServerFin = {
    {"host", kB}, {"role", "server"}, {"initiator", "remote"}, {"reason", "fin"}};

// utime + stime of a process, in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // Fields after the command (which may hold spaces) start after the last ')'.
  const std::vector<std::string> fields = absl::StrSplit(text.substr(text.rfind(')') + 2), ' ');
  if (fields.size() < 13) return -1;
  double utime = 0, stime = 0;
  (void)absl::SimpleAtod(fields[11], &utime);
  (void)absl::SimpleAtod(fields[12], &stime);
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

class DeliveryTest : public TwoHostTest {
 protected:
  std::vector<std::string> AgentFlags(std::vector<std::string> extra = {}) {
    std::vector<std::string> flags = {"--source=ebpf", "--snapshot_interval=200ms",
                                      "--max_reconnect_backoff=300ms"};
    flags.insert(flags.end(), extra.begin(), extra.end());
    return flags;
  }

  // Both ends of `count` short connections are counted exactly: nothing lost, nothing twice.
  void ExpectExactly(int count) {
    EXPECT_EQ(stack_->WaitForValue("tcpscope_closes_total", kClientFin, count), count);
    EXPECT_EQ(stack_->WaitForValue("tcpscope_closes_total", kServerFin, count), count);
    absl::SleepFor(absl::Seconds(1));  // anything late or resent would show by now
    const std::string m = stack_->Scrape();
    EXPECT_EQ(MetricValue(m, "tcpscope_handshakes_total", {{"host", kA}, {"role", "client"}}),
              count);
    EXPECT_EQ(MetricValue(m, "tcpscope_handshakes_total", {{"host", kB}, {"role", "server"}}),
              count);
    EXPECT_EQ(MetricValue(m, "tcpscope_closes_total", kClientFin), count);
    EXPECT_EQ(MetricValue(m, "tcpscope_closes_total", kServerFin), count);
    EXPECT_EQ(MetricSum(m, "tcpscope_closes_total", {}), 2.0 * count);
    EXPECT_EQ(MetricSum(m, "tcpscope_agent_events_total", {}), 4.0 * count);
    EXPECT_EQ(MetricSum(m, "tcpscope_agent_events_lost_total", {}), 0);
    if (HasFailure()) std::cerr << m;
  }

  // Waits until the proxy has accepted `count` connections in all (the agents reconnected).
  void AwaitProxyAccepted(int count) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (proxy_->accepted() < count && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    ASSERT_EQ(proxy_->accepted(), count);
  }
};

TEST_F(DeliveryTest, ConnectionsMadeWhileTheServiceIsDeadAreCountedExactlyAfterItsRestart) {
  ASSERT_NO_FATAL_FAILURE(Start(AgentFlags()));
  ASSERT_NO_FATAL_FAILURE(ShortConnections(network_->b_ipv4(), 5));
  ASSERT_EQ(stack_->WaitForValue("tcpscope_closes_total", kServerFin, 5), 5);
  absl::SleepFor(absl::Milliseconds(500));  // acknowledged: the agents hold nothing of these
  stack_->KillService();
  constexpr int kWhileDead = 20;
  ASSERT_NO_FATAL_FAILURE(ShortConnections(network_->b_ipv4(), kWhileDead));
  // A waiting agent uses no CPU to speak of: backing off (300 ms cap here) and taking its
  // snapshots (every 200 ms here, each dumping its namespace), it spends under 5 % of a core; a
  // reconnect loop that spun would take all of one. (The agent before workload identity measured
  // 2.8-3.3 % here in an empty namespace, the bound's old 3 % within noise of it.)
  const double before = CpuSeconds(stack_->agent(kA).pid());
  absl::SleepFor(absl::Seconds(3));
  const double waiting = CpuSeconds(stack_->agent(kA).pid()) - before;
  EXPECT_LT(waiting, 0.15);
  std::cerr << "agent CPU while the service was down: " << waiting << " s in 3 s\n";
  ASSERT_TRUE(stack_->RestartService().ok());
  // The new service process starts from zero: it must count exactly what it did not see.
  ExpectExactly(kWhileDead);
}

TEST_F(DeliveryTest, CutsOfTheAgentServicePathLoseNothingAndCountNothingTwice) {
  ASSERT_NO_FATAL_FAILURE(Start(AgentFlags(), {}, /*through_proxy=*/true));
  constexpr int kRounds = 3;
  constexpr int kPerRound = 10;
  for (int round = 0; round < kRounds; ++round) {
    ASSERT_NO_FATAL_FAILURE(AwaitProxyAccepted(2 * (round + 1)));
    ASSERT_NO_FATAL_FAILURE(ShortConnections(network_->b_ipv4(), kPerRound));
    // Right away, while batches may be unsent, in flight, or applied but not acknowledged.
    EXPECT_EQ(proxy_->Cut(), 2) << "round " << round;
  }
  ExpectExactly(kRounds * kPerRound);
  EXPECT_EQ(proxy_->accepted(), 2 * (kRounds + 1));
}

TEST_F(DeliveryTest, LostAcknowledgementsDoNotCountTwice) {
  ASSERT_NO_FATAL_FAILURE(Start(AgentFlags(), {}, /*through_proxy=*/true));
  proxy_->PassReplies(false);  // the service applies, its acks never arrive
  constexpr int kCount = 10;
  ASSERT_NO_FATAL_FAILURE(ShortConnections(network_->b_ipv4(), kCount));
  ASSERT_EQ(stack_->WaitForValue("tcpscope_closes_total", kServerFin, kCount), kCount);
  ASSERT_EQ(stack_->WaitForValue("tcpscope_closes_total", kClientFin, kCount), kCount);
  EXPECT_EQ(proxy_->Cut(), 2);
  proxy_->PassReplies(true);
  // The agents reconnect still holding every batch; the hello-ack tells them what was applied.
  ASSERT_NO_FATAL_FAILURE(AwaitProxyAccepted(4));
  ExpectExactly(kCount);
}

TEST_F(DeliveryTest, AFullBufferDropsTheOldestAndTheServiceLearnsExactlyHowMany) {
  ASSERT_NO_FATAL_FAILURE(Start(AgentFlags({"--max_buffered_batches=3"})));
  stack_->KillService();
  // One connection every 150 ms: each close lands in batches of its own (the agent flushes
  // every 25 ms), so the three-batch buffer overflows many times.
  constexpr int kCount = 12;
  const int port = ListenOnB(network_->b_ipv4());
  for (int i = 0; i < kCount; ++i) {
    auto [client, server] = Connect(network_->b_ipv4(), port);
    ASSERT_GE(client, 0);
    CloseFd(client);
    AwaitEof(server);
    CloseFd(server);
    absl::SleepFor(absl::Milliseconds(150));
  }
  ASSERT_TRUE(stack_->RestartService().ok());
  // A saw 2 events per connection (handshake, close), B as many: each is applied or lost.
  std::string m = stack_->WaitFor([&](const std::string& m) {
    for (const char* host : {kA, kB}) {
      const double applied =
          MetricValue(m, "tcpscope_agent_events_total", {{"host", host}}).value_or(0);
      const double lost =
          MetricValue(m, "tcpscope_agent_events_lost_total", {{"host", host}, {"stage", "agent"}})
              .value_or(0);
      if (applied + lost != 2 * kCount) return false;
    }
    return true;
  });
  absl::SleepFor(absl::Seconds(1));
  m = stack_->Scrape();
  for (const char* host : {kA, kB}) {
    const double applied =
        MetricValue(m, "tcpscope_agent_events_total", {{"host", host}}).value_or(-1);
    const double lost =
        MetricValue(m, "tcpscope_agent_events_lost_total", {{"host", host}, {"stage", "agent"}})
            .value_or(-1);
    EXPECT_EQ(applied + lost, 2 * kCount) << host << ": applied " << applied << ", lost " << lost;
    EXPECT_GT(lost, 0) << host;
    EXPECT_EQ(
        MetricValue(m, "tcpscope_agent_events_lost_total", {{"host", host}, {"stage", "kernel"}}),
        0);
  }
  // `tcpscope agents` shows the same losses.
  const CommandResult cli = RunCommand(absl::StrCat(
      BinaryPath("tcpscope"), " agents -o json --service=127.0.0.1:", stack_->grpc_port()));
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  v1::ListAgentsResponse agents;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(cli.output, &agents).ok()) << cli.output;
  ASSERT_EQ(agents.agents_size(), 2);
  for (const v1::Agent& agent : agents.agents()) {
    EXPECT_EQ(static_cast<double>(agent.losses().agent()),
              MetricValue(m, "tcpscope_agent_events_lost_total",
                          {{"host", agent.host_name()}, {"stage", "agent"}}))
        << agent.host_name();
  }
  if (HasFailure()) std::cerr << m;
}

}  // namespace
}  // namespace tcpscope::testing
