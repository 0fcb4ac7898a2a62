// The eBPF agent is never silent about what it cannot see: each fault is injected for real and
// must show at the agent (/metrics, log, exit status) and at the service (losses with
// stage="kernel", the agent's source health in the Agents RPC). A tiny ring buffer and a tiny
// socket map make the kernel side drop; TCPSCOPE_TEST_RING_FAILURES (test only) makes the ring
// consumer fail as a poll error would. Host A's agent gets the fault, B's is a plain eBPF agent.
// What the agent leaves out to stay cheap must not hide anything either: an empty namespace is
// not walked again until a socket is born in it, and then at once.
// Needs root and eBPF; in CI (TCPSCOPE_REQUIRE_ROOT_TESTS=1) it must run.
#include <stdlib.h>
#include <sys/wait.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tcpscope/v1/observer.pb.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/process.h"
#include "tests/harness/sockets.h"
#include "tests/harness/tcpscope_stack.h"
#include "tests/harness/test_network.h"
#include "tests/harness/two_host_test.h"

namespace tcpscope::testing {
namespace {

constexpr const char* kA = kHostA;
constexpr const char* kB = kHostB;

int Occurrences(const std::string& text, const std::string& needle) {
  int count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

class EbpfFaultsTest : public TwoHostTest {
 protected:
  // Like TwoHostTest::Start, but only A's agent gets `a_flags` (and `a_environment`, NAME=VALUE
  // pairs) and its /metrics on a port of its own.
  void StartWithFaultyA(
      const std::vector<std::string>& a_flags,
      const std::vector<std::pair<std::string, std::string>>& a_environment = {}) {
    auto network = TwoHostNetwork::Create("faults");
    ASSERT_TRUE(network.ok()) << network.status();
    network_ = std::move(*network);
    auto stack =
        TcpscopeStack::Start(::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = std::move(*stack);
    agent_metrics_port_ = FreeTcpPort();
    std::vector<std::string> flags = {"--source=ebpf", "--snapshot_interval=200ms"};
    ASSERT_TRUE(stack_->AddAgent(kB, network_->b().path(), flags).ok());
    flags.push_back(absl::StrCat("--metrics_listen=127.0.0.1:", agent_metrics_port_));
    flags.insert(flags.end(), a_flags.begin(), a_flags.end());
    // The agent inherits the environment; nothing else runs in this process meanwhile.
    for (const auto& [name, value] : a_environment) setenv(name.c_str(), value.c_str(), 1);
    const absl::Status added = stack_->AddAgent(kA, network_->a().path(), flags);
    for (const auto& [name, value] : a_environment) unsetenv(name.c_str());
    ASSERT_TRUE(added.ok()) << added;
    ASSERT_TRUE(stack_->WaitForAgents().ok()) << stack_->Logs();
  }

  std::string ScrapeAgentA() {
    absl::StatusOr<std::string> body = HttpGet("127.0.0.1", agent_metrics_port_, "/metrics");
    return body.ok() ? *body : "";
  }

  // Polls A's agent's /metrics until `done` holds (bounded); returns the last exposition.
  std::string WaitForAgentA(const std::function<bool(const std::string&)>& done,
                            absl::Duration timeout = absl::Seconds(15)) {
    const absl::Time deadline = absl::Now() + timeout;
    std::string m = ScrapeAgentA();
    while (!done(m) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(50));
      m = ScrapeAgentA();
    }
    return m;
  }

  // A's snapshots taken and namespaces skipped, from two scrapes with no snapshot between them
  // (one is counted a moment before the other).
  std::pair<double, double> SnapshotsAndSkipsOfA() {
    for (int attempt = 0; attempt < 50; ++attempt) {
      const std::string first = ScrapeAgentA();
      const std::string second = ScrapeAgentA();
      auto counts = [](const std::string& m) {
        return std::make_pair(
            MetricValue(m, "tcpscope_agent_sock_diag_dumps_total", {}).value_or(-1),
            MetricValue(m, "tcpscope_agent_snapshot_namespaces_skipped_total", {}).value_or(-1));
      };
      if (counts(first) == counts(second)) return counts(first);
    }
    ADD_FAILURE() << "A's snapshot counters never held still between two scrapes";
    return {-1, -1};
  }

  // Host A's established ends in the service's listing, through the CLI.
  int EstablishedEndsOfA() {
    const CommandResult cli =
        RunCommand(absl::StrCat(BinaryPath("tcpscope"), " connections -o json --host=", kA,
                                " --state=established --service=127.0.0.1:", stack_->grpc_port()));
    EXPECT_EQ(cli.exit_code, 0) << cli.output;
    v1::ListConnectionsResponse listed;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(cli.output, &listed).ok())
        << cli.output;
    return listed.connections_size();
  }

  // The service's view of host A's agent, through the CLI as a user would ask.
  v1::Agent AgentStatusOfA() {
    const CommandResult cli = RunCommand(absl::StrCat(
        BinaryPath("tcpscope"), " agents -o json --service=127.0.0.1:", stack_->grpc_port()));
    EXPECT_EQ(cli.exit_code, 0) << cli.output;
    v1::ListAgentsResponse listed;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(cli.output, &listed).ok())
        << cli.output;
    for (const v1::Agent& agent : listed.agents()) {
      if (agent.host_name() == kA) return agent;
    }
    ADD_FAILURE() << "no agent for " << kA << " in " << cli.output;
    return v1::Agent();
  }

  // Every event A's agent meant to send is either produced or counted as a kernel drop:
  // `expected` events in all. Then the service got exactly what it produced, and counts as
  // lost (stage="kernel") exactly what it dropped, FIN records included.
  void ExpectEveryEventOfAAccountedFor(int expected) {
    auto accounted = [](const std::string& m) {
      return MetricSum(m, "tcpscope_agent_events_generated_total", {}) +
             MetricValue(m, "tcpscope_agent_kernel_drops_total", {{"cause", "ring_full"}})
                 .value_or(0) +
             MetricValue(m, "tcpscope_agent_kernel_drops_total", {{"cause", "socket_map_full"}})
                 .value_or(0);
    };
    std::string a = WaitForAgentA([&](const std::string& m) { return accounted(m) >= expected; });
    absl::SleepFor(absl::Milliseconds(500));  // nothing more comes
    a = ScrapeAgentA();
    EXPECT_EQ(accounted(a), expected) << a;
    const double generated = MetricSum(a, "tcpscope_agent_events_generated_total", {});
    const double kernel_drops = MetricSum(a, "tcpscope_agent_kernel_drops_total", {});
    EXPECT_EQ(MetricValue(a, "tcpscope_agent_events_dropped_total", {{"stage", "kernel"}}),
              kernel_drops);
    EXPECT_EQ(stack_->WaitForValue("tcpscope_agent_events_lost_total",
                                   {{"host", kA}, {"stage", "kernel"}}, kernel_drops),
              kernel_drops);
    EXPECT_EQ(stack_->WaitForValue("tcpscope_agent_events_total", {{"host", kA}}, generated),
              generated);
    const std::string m = stack_->Scrape();
    EXPECT_EQ(MetricSum(m, "tcpscope_handshakes_total", {{"host", kA}}) +
                  MetricSum(m, "tcpscope_closes_total", {{"host", kA}}),
              generated);
    EXPECT_EQ(AgentStatusOfA().losses().kernel(), kernel_drops);
    // B's agent, with room enough, lost nothing of the same connections.
    EXPECT_EQ(MetricSum(m, "tcpscope_agent_events_lost_total", {{"host", kB}}), 0);
    EXPECT_EQ(MetricSum(m, "tcpscope_handshakes_total", {{"host", kB}}) +
                  MetricSum(m, "tcpscope_closes_total", {{"host", kB}}),
              expected);
  }

  int agent_metrics_port_ = 0;
};

TEST_F(EbpfFaultsTest, TinyRingDropsAreCountedExactlyAndShownAsKernelLosses) {
  ASSERT_NO_FATAL_FAILURE(StartWithFaultyA({"--ebpf_ring_buffer_kib=4"}));
  // Every connection opened at once, then every client closed (A's FIN records), then every
  // server: bursts far beyond what a 4 KiB ring holds between two reads.
  constexpr int kCount = 200;
  const int port = ListenOnB(network_->b_ipv4());
  std::vector<std::pair<int, int>> connections;
  for (int i = 0; i < kCount; ++i) {
    connections.push_back(Connect(network_->b_ipv4(), port));
    ASSERT_GE(connections.back().first, 0);
  }
  for (auto [client, server] : connections) CloseFd(client);
  for (auto [client, server] : connections) AwaitEof(server);
  for (auto [client, server] : connections) CloseFd(server);
  // A: a handshake and a close per connection.
  ExpectEveryEventOfAAccountedFor(2 * kCount);
  const std::string a = ScrapeAgentA();
  // 168-byte records, 24 to a 4 KiB ring, 10 ms between reads: the bursts cannot fit.
  EXPECT_GT(MetricValue(a, "tcpscope_agent_kernel_drops_total", {{"cause", "ring_full"}}), 0) << a;
  EXPECT_EQ(MetricValue(a, "tcpscope_agent_kernel_drops_total", {{"cause", "socket_map_full"}}), 0);
  // Logged once, however many drops.
  EXPECT_EQ(Occurrences(stack_->agent(kA).Log(), "the kernel side is dropping records"), 1)
      << stack_->agent(kA).Log();
}

TEST_F(EbpfFaultsTest, TinySocketMapDropsAreCountedExactlyAndShownAsKernelLosses) {
  constexpr int kTracked = 16;
  ASSERT_NO_FATAL_FAILURE(
      StartWithFaultyA({absl::StrCat("--ebpf_max_tracked_sockets=", kTracked)}));
  constexpr int kCount = 40;
  const int port = ListenOnB(network_->b_ipv4());
  std::vector<std::pair<int, int>> connections;
  for (int i = 0; i < kCount; ++i) {
    connections.push_back(Connect(network_->b_ipv4(), port));
    ASSERT_GE(connections.back().first, 0);
  }
  // All open at once: the map holds kTracked of them; the others' handshakes are lost.
  const std::string open = WaitForAgentA([&](const std::string& m) {
    return MetricSum(m, "tcpscope_agent_events_generated_total", {}) +
               MetricSum(m, "tcpscope_agent_kernel_drops_total", {}) >=
           kCount;
  });
  EXPECT_EQ(MetricSum(open, "tcpscope_agent_events_generated_total", {}), kTracked) << open;
  EXPECT_EQ(MetricValue(open, "tcpscope_agent_kernel_drops_total", {{"cause", "socket_map_full"}}),
            kCount - kTracked);
  for (auto [client, server] : connections) CloseFd(client);
  for (auto [client, server] : connections) AwaitEof(server);
  for (auto [client, server] : connections) CloseFd(server);
  // Each untracked connection's close is either seen (the map had room again by then) or
  // counted: exact either way.
  ExpectEveryEventOfAAccountedFor(2 * kCount);
  EXPECT_EQ(
      MetricValue(ScrapeAgentA(), "tcpscope_agent_kernel_drops_total", {{"cause", "ring_full"}}),
      0);
}

TEST_F(EbpfFaultsTest, RingPollErrorsAreReportedThenTheRingIsReadAgain) {
  ASSERT_NO_FATAL_FAILURE(StartWithFaultyA({}, {{"TCPSCOPE_TEST_RING_FAILURES", "2"}}));
  // Two failures (250 ms, then 500 ms of backoff), then the ring is read again.
  const std::string a = WaitForAgentA([](const std::string& m) {
    return MetricValue(m, "tcpscope_agent_source_failures_total", {}) == 2 &&
           MetricValue(m, "tcpscope_agent_source_healthy", {}) == 1;
  });
  EXPECT_EQ(MetricValue(a, "tcpscope_agent_source_failures_total", {}), 2) << a;
  EXPECT_EQ(MetricValue(a, "tcpscope_agent_source_healthy", {}), 1) << a;
  // Events flow again, exactly.
  ASSERT_NO_FATAL_FAILURE(ShortConnections(network_->b_ipv4(), 10));
  EXPECT_EQ(
      stack_->WaitForValue("tcpscope_handshakes_total", {{"host", kA}, {"role", "client"}}, 10),
      10);
  EXPECT_EQ(AgentStatusOfA().source_health().state(), v1::SOURCE_STATE_HEALTHY);
  EXPECT_TRUE(stack_->agent(kA).Running());
  // The incident is logged once, and its end once; the service saw both.
  const std::string log = stack_->agent(kA).Log();
  EXPECT_EQ(Occurrences(log, "no events until it is read again"), 1) << log;
  EXPECT_EQ(Occurrences(log, "the eBPF ring buffer is read again"), 1) << log;
  const std::string service_log = stack_->service().Log();
  EXPECT_EQ(Occurrences(service_log, "host-a: its agent's event feed failed"), 1) << service_log;
  EXPECT_EQ(Occurrences(service_log, "host-a: its agent's event feed recovered"), 1) << service_log;
}

TEST_F(EbpfFaultsTest, ARingThatKeepsFailingEndsTheAgentNonZeroAndTheServiceSaysSo) {
  ASSERT_NO_FATAL_FAILURE(StartWithFaultyA({}, {{"TCPSCOPE_TEST_RING_FAILURES", "1000000"}}));
  // While it retries, snapshots go on and the service knows events are missing.
  const std::string a = WaitForAgentA([](const std::string& m) {
    return MetricValue(m, "tcpscope_agent_source_healthy", {}) == 0;
  });
  EXPECT_EQ(MetricValue(a, "tcpscope_agent_source_healthy", {}), 0) << a;
  const v1::Agent failing = AgentStatusOfA();
  EXPECT_EQ(failing.source_health().state(), v1::SOURCE_STATE_EVENTS_FAILED);
  EXPECT_NE(failing.source_health().problem().find("forced by TCPSCOPE_TEST_RING_FAILURES"),
            std::string::npos)
      << failing.source_health().problem();
  // Six failures with backoff of 0.25, 0.5, 1, 2 and 4 s between them: gone in about 8 s.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (stack_->agent(kA).Running() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_FALSE(stack_->agent(kA).Running()) << stack_->agent(kA).Log();
  const int status = stack_->agent(kA).Stop();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const std::string log = stack_->agent(kA).Log();
  EXPECT_EQ(Occurrences(log, "no events until it is read again"), 1) << log;
  EXPECT_EQ(Occurrences(log, "failed 6 times in a row; giving up"), 1) << log;
  // Gone, and the service's last word on it is still that its events had failed.
  const v1::Agent gone = AgentStatusOfA();
  EXPECT_FALSE(gone.connected());
  EXPECT_EQ(gone.source_health().state(), v1::SOURCE_STATE_EVENTS_FAILED);
}

TEST_F(EbpfFaultsTest, AnEmptyNamespaceIsNotWalkedUntilASocketIsBornInIt) {
  ASSERT_NO_FATAL_FAILURE(StartWithFaultyA({}));
  // Nothing in A's namespace: once a walk a second after the attach has found it empty, every
  // snapshot (each 200 ms) skips it.
  WaitForAgentA([](const std::string& m) {
    return MetricValue(m, "tcpscope_agent_snapshot_namespaces_skipped_total", {}) >= 3;
  });
  const auto [snapshots0, skipped0] = SnapshotsAndSkipsOfA();
  ASSERT_GE(skipped0, 3);
  absl::SleepFor(absl::Seconds(1));
  const auto [snapshots1, skipped1] = SnapshotsAndSkipsOfA();
  EXPECT_GE(snapshots1 - snapshots0, 3);
  EXPECT_EQ(skipped1 - skipped0, snapshots1 - snapshots0);
  EXPECT_EQ(EstablishedEndsOfA(), 0);

  // A connect() from A is a birth there: the next snapshot walks the namespace and has the end.
  const int port = ListenOnB(network_->b_ipv4());
  ASSERT_GE(Connect(network_->b_ipv4(), port).first, 0);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (EstablishedEndsOfA() < 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(EstablishedEndsOfA(), 1);
  // Not empty any more: walked at every snapshot.
  const auto [snapshots2, skipped2] = SnapshotsAndSkipsOfA();
  absl::SleepFor(absl::Seconds(1));
  const auto [snapshots3, skipped3] = SnapshotsAndSkipsOfA();
  EXPECT_GE(snapshots3 - snapshots2, 3);
  EXPECT_EQ(skipped3, skipped2);
}

TEST_F(EbpfFaultsTest, BadFaultSettingsAreRefused) {
  for (const char* value : {"0", "-1", "many", "1000001"}) {
    const CommandResult result =
        RunCommand(absl::StrCat("TCPSCOPE_TEST_RING_FAILURES=", value, " ",
                                BinaryPath("tcpscope-agent"), " --source=ebpf 2>&1"));
    EXPECT_EQ(result.exit_code, 2) << value << ": " << result.output;
    EXPECT_NE(result.output.find("TCPSCOPE_TEST_RING_FAILURES"), std::string::npos)
        << result.output;
  }
  for (const char* flag :
       {"--ebpf_ring_buffer_kib=3", "--ebpf_ring_buffer_kib=6", "--ebpf_max_tracked_sockets=15"}) {
    const CommandResult result =
        RunCommand(absl::StrCat(BinaryPath("tcpscope-agent"), " ", flag, " 2>&1"));
    EXPECT_EQ(result.exit_code, 2) << flag << ": " << result.output;
    EXPECT_NE(result.output.find(flag), std::string::npos) << result.output;
  }
}

}  // namespace
}  // namespace tcpscope::testing
