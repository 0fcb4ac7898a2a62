// Exact events from the kernel, end to end: two hosts (namespaces joined by a veth pair, made by
// the test), an agent per namespace, one service; every count is asserted exactly through the
// service's /metrics. Needs root and eBPF; in CI (TCPSCOPE_REQUIRE_ROOT_TESTS=1) it must run.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tcpscope/v1/observer.pb.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/netns.h"
#include "tests/harness/process.h"
#include "tests/harness/tcpscope_stack.h"
#include "tests/harness/test_network.h"
#include "tests/harness/two_host_test.h"

namespace tcpscope::testing {
namespace {

constexpr const char* kA = kHostA;
constexpr const char* kB = kHostB;

class EbpfTest : public TwoHostTest {
 protected:
  // `source` is the agents' --source.
  void Start(const std::string& source = "ebpf") {
    TwoHostTest::Start({"--source=" + source, "--snapshot_interval=200ms"});
  }

  // `a_role`: the role A's ends report ("unknown" from dumps that never saw them connecting).
  void ExpectShortConnectionCounts(int count, const std::string& a_role = "client") {
    const Labels a_client_fin = {
        {"host", kA}, {"role", a_role}, {"initiator", "local"}, {"reason", "fin"}};
    const Labels b_server_fin = {
        {"host", kB}, {"role", "server"}, {"initiator", "remote"}, {"reason", "fin"}};
    EXPECT_EQ(stack_->WaitForValue("tcpscope_closes_total", a_client_fin, count), count);
    EXPECT_EQ(stack_->WaitForValue("tcpscope_closes_total", b_server_fin, count), count);
    // Nothing arrives late or twice.
    absl::SleepFor(absl::Milliseconds(600));
    const std::string m = stack_->Scrape();
    EXPECT_EQ(MetricValue(m, "tcpscope_handshakes_total", {{"host", kA}, {"role", a_role}}), count);
    EXPECT_EQ(MetricValue(m, "tcpscope_handshakes_total", {{"host", kB}, {"role", "server"}}),
              count);
    EXPECT_EQ(MetricSum(m, "tcpscope_handshakes_total", {}), 2.0 * count);
    EXPECT_EQ(MetricValue(m, "tcpscope_closes_total", a_client_fin), count);
    EXPECT_EQ(MetricValue(m, "tcpscope_closes_total", b_server_fin), count);
    EXPECT_EQ(MetricSum(m, "tcpscope_closes_total", {}), 2.0 * count);
    EXPECT_EQ(MetricSum(m, "tcpscope_agent_events_lost_total", {}), 0.0);
    if (HasFailure()) std::cerr << m;
  }
};

TEST_F(EbpfTest, ShortConnectionsIpv4AreCountedExactlyOnBothHosts) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(ShortConnections(network_->b_ipv4(), 25));
  ExpectShortConnectionCounts(25);
  // Durations land in the histograms: one observation per handshake and close.
  const std::string m = stack_->Scrape();
  EXPECT_EQ(MetricValue(m, "tcpscope_handshake_duration_seconds_count",
                        {{"host", kA}, {"role", "client"}}),
            25);
  EXPECT_EQ(MetricValue(m, "tcpscope_connection_lifetime_seconds_count",
                        {{"host", kB}, {"role", "server"}}),
            25);
  // Short connections on a veth: every lifetime is under 1 s.
  EXPECT_EQ(MetricValue(m, "tcpscope_connection_lifetime_seconds_bucket",
                        {{"host", kA}, {"role", "client"}, {"le", "1"}}),
            25);
}

TEST_F(EbpfTest, ShortConnectionsIpv6AreCountedExactlyOnBothHosts) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_TRUE(stack_->WatchEvents().ok());
  absl::SleepFor(absl::Milliseconds(300));  // the watcher subscribes
  ASSERT_NO_FATAL_FAILURE(ShortConnections(network_->b_ipv6(), 10));
  ExpectShortConnectionCounts(10);
  // Every event names both IPv6 addresses in full.
  std::string a_address(16, '\0'), b_address(16, '\0');
  ASSERT_EQ(inet_pton(AF_INET6, network_->a_ipv6().c_str(), a_address.data()), 1);
  ASSERT_EQ(inet_pton(AF_INET6, network_->b_ipv6().c_str(), b_address.data()), 1);
  const std::vector<v1::HostEvent> events = stack_->WatchedEvents();
  EXPECT_EQ(events.size(), 40u);
  for (const v1::HostEvent& entry : events) {
    const v1::Endpoints& endpoints = entry.event().endpoints();
    const bool on_a = entry.host() == kA;
    EXPECT_EQ(endpoints.local_address(), on_a ? a_address : b_address);
    EXPECT_EQ(endpoints.remote_address(), on_a ? b_address : a_address);
    EXPECT_NE(endpoints.local_port(), 0u);
    EXPECT_NE(endpoints.remote_port(), 0u);
  }
}

TEST_F(EbpfTest, RefusedAndTimedOutConnectsAreHandshakeFailures) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_TRUE(SetSysctl(network_->a(), "net.ipv4.tcp_syn_retries", "1").ok());
  auto refused = ConnectFrom(network_->a(), network_->b_ipv4(), 1);
  EXPECT_EQ(ErrnoOf(refused.status()), ECONNREFUSED);
  auto timed_out = ConnectFrom(network_->a(), network_->unreachable_silent_ipv4(), 80);
  EXPECT_EQ(ErrnoOf(timed_out.status()), ETIMEDOUT);
  EXPECT_EQ(stack_->WaitForValue("tcpscope_handshake_failures_total",
                                 {{"host", kA}, {"reason", "timeout"}}, 1),
            1);
  const std::string m = stack_->Scrape();
  EXPECT_EQ(
      MetricValue(m, "tcpscope_handshake_failures_total", {{"host", kA}, {"reason", "refused"}}),
      1);
  EXPECT_EQ(MetricSum(m, "tcpscope_handshake_failures_total", {}), 2);
  EXPECT_EQ(MetricSum(m, "tcpscope_handshakes_total", {}), 0);
  EXPECT_EQ(MetricSum(m, "tcpscope_closes_total", {}), 0);
}

TEST_F(EbpfTest, LingerZeroAbortIsResetSentAndResetReceived) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const int port = ListenOnB(network_->b_ipv4());
  auto [client, server] = Connect(network_->b_ipv4(), port);
  ASSERT_GE(client, 0);
  const linger abort_on_close{1, 0};
  ASSERT_EQ(setsockopt(client, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof(abort_on_close)), 0);
  CloseFd(client);
  EXPECT_EQ(
      stack_->WaitForValue(
          "tcpscope_closes_total",
          {{"host", kA}, {"role", "client"}, {"initiator", "local"}, {"reason", "reset_sent"}}, 1),
      1);
  EXPECT_EQ(
      stack_->WaitForValue(
          "tcpscope_closes_total",
          {{"host", kB}, {"role", "server"}, {"initiator", "remote"}, {"reason", "reset_received"}},
          1),
      1);
  EXPECT_EQ(MetricSum(stack_->Scrape(), "tcpscope_closes_total", {}), 2);
}

// TcpExtTCPAbortOnData of `netns`, from its /proc/net/netstat.
uint64_t AbortOnDataCount(const TestNetns& netns) {
  uint64_t count = 0;
  EXPECT_TRUE(netns
                  .RunInside([&count] {
                    // thread-self: /proc/self/net is the process's namespace, not this thread's.
                    std::ifstream file("/proc/thread-self/net/netstat");
                    std::string names, values;
                    while (std::getline(file, names) && std::getline(file, values)) {
                      std::istringstream n(names), v(values);
                      std::string name, value;
                      while (n >> name && v >> value) {
                        if (name == "TCPAbortOnData") count = std::stoull(value);
                      }
                    }
                  })
                  .ok());
  return count;
}

// Data reaching an end whose application shut reading down: Linux resets that end itself
// (TcpExtTCPAbortOnData, through tcp_reset, which fires tcp_receive_reset) and then sends the
// RST. The end that sent it reports reset_sent, its peer reset_received.
TEST_F(EbpfTest, DataAfterShutdownIsResetSentByTheEndThatShutDown) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const int port = ListenOnB(network_->b_ipv4());
  auto [client, server] = Connect(network_->b_ipv4(), port);
  ASSERT_GE(client, 0);
  const uint64_t aborts_before = AbortOnDataCount(network_->b());
  ASSERT_EQ(shutdown(server, SHUT_RDWR), 0);  // B's FIN; B keeps the socket, in FIN_WAIT2
  AwaitEof(client);                           // A is in CLOSE_WAIT
  ASSERT_EQ(send(client, "x", 1, MSG_NOSIGNAL), 1);
  EXPECT_EQ(
      stack_->WaitForValue(
          "tcpscope_closes_total",
          {{"host", kB}, {"role", "server"}, {"initiator", "local"}, {"reason", "reset_sent"}}, 1),
      1);
  EXPECT_EQ(
      stack_->WaitForValue(
          "tcpscope_closes_total",
          {{"host", kA}, {"role", "client"}, {"initiator", "remote"}, {"reason", "reset_received"}},
          1),
      1);
  EXPECT_EQ(AbortOnDataCount(network_->b()) - aborts_before, 1u);
  absl::SleepFor(absl::Milliseconds(300));  // nothing more arrives
  const std::string m = stack_->Scrape();
  EXPECT_EQ(MetricSum(m, "tcpscope_closes_total", {}), 2);
  if (HasFailure()) std::cerr << m;
}

// What --record_ring captures of the kernel's records replays (--source=replay:FILE) to the
// same events as the live agent reported.
TEST_F(EbpfTest, RecordedRingReplaysToTheSameEvents) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const std::string capture = absl::StrCat(::testing::TempDir(), "/ebpf_", getpid(), ".ring");
  ASSERT_TRUE(stack_
                  ->AddAgent("recorder", network_->b().path(),
                             {"--source=ebpf", "--record_ring=" + capture})
                  .ok());
  ASSERT_TRUE(stack_->WaitForAgents().ok()) << stack_->Logs();
  const int port = ListenOnB(network_->b_ipv4());
  auto [client, server] = Connect(network_->b_ipv4(), port);
  ASSERT_GE(client, 0);
  ASSERT_EQ(shutdown(server, SHUT_RDWR), 0);
  AwaitEof(client);
  ASSERT_EQ(send(client, "x", 1, MSG_NOSIGNAL), 1);
  const Labels reset_sent = {{"role", "server"}, {"initiator", "local"}, {"reason", "reset_sent"}};
  auto on = [](const std::string& host, Labels labels) {
    labels["host"] = host;
    return labels;
  };
  EXPECT_EQ(stack_->WaitForValue("tcpscope_closes_total", on("recorder", reset_sent), 1), 1);
  absl::SleepFor(absl::Milliseconds(100));  // the capture is written out at each ring drain

  ASSERT_TRUE(stack_->AddAgent("replayed", "", {"--source=replay:" + capture}).ok());
  EXPECT_EQ(stack_->WaitForValue("tcpscope_closes_total", on("replayed", reset_sent), 1), 1);
  absl::SleepFor(absl::Milliseconds(300));
  const std::string m = stack_->Scrape();
  for (const char* host : {"recorder", "replayed"}) {
    EXPECT_EQ(MetricSum(m, "tcpscope_closes_total", {{"host", host}}), 1) << host;
    EXPECT_EQ(MetricValue(m, "tcpscope_handshakes_total", {{"host", host}, {"role", "server"}}), 1)
        << host;
  }
  if (HasFailure()) std::cerr << m;
  std::remove(capture.c_str());
}

// A genuine RST reaching an end that shut reading down stays reset_received: the kernel flags
// it the same way, and no RST of its own follows.
TEST_F(EbpfTest, ResetAfterShutdownIsStillResetReceived) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const int port = ListenOnB(network_->b_ipv4());
  auto [client, server] = Connect(network_->b_ipv4(), port);
  ASSERT_GE(client, 0);
  ASSERT_EQ(shutdown(server, SHUT_RDWR), 0);
  AwaitEof(client);
  const linger abort_on_close{1, 0};
  ASSERT_EQ(setsockopt(client, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof(abort_on_close)), 0);
  CloseFd(client);
  EXPECT_EQ(
      stack_->WaitForValue(
          "tcpscope_closes_total",
          {{"host", kB}, {"role", "server"}, {"initiator", "local"}, {"reason", "reset_received"}},
          1),
      1);
  EXPECT_EQ(
      stack_->WaitForValue(
          "tcpscope_closes_total",
          {{"host", kA}, {"role", "client"}, {"initiator", "remote"}, {"reason", "reset_sent"}}, 1),
      1);
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(MetricSum(stack_->Scrape(), "tcpscope_closes_total", {}), 2);
}

TEST_F(EbpfTest, KeepaliveProbesThenTimeoutWhenThePeerGoesSilent) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const int port = ListenOnB(network_->b_ipv4());
  auto [client, server] = Connect(network_->b_ipv4(), port);
  ASSERT_GE(client, 0);
  EnableKeepalive(client, 2, 1, 3);
  ASSERT_TRUE(network_->BlackholeFromA(network_->b_ipv4()).ok());
  // 2 s idle + 3 probes 1 s apart + the final check: about 5 s.
  const Labels timeout_close = {
      {"host", kA}, {"role", "client"}, {"initiator", "local"}, {"reason", "keepalive_timeout"}};
  EXPECT_EQ(stack_->WaitForValue("tcpscope_closes_total", timeout_close, 1, absl::Seconds(15)), 1);
  absl::SleepFor(absl::Milliseconds(500));
  const std::string m = stack_->Scrape();
  EXPECT_EQ(MetricValue(m, "tcpscope_keepalive_probes_total", {{"host", kA}}), 3);
  EXPECT_EQ(MetricValue(m, "tcpscope_keepalive_timeouts_total", {{"host", kA}, {"role", "client"}}),
            1);
  EXPECT_EQ(MetricSum(m, "tcpscope_closes_total", {{"host", kA}}), 1);
}

// Counts the watched events of `kind` from host A.
int CountEvents(const std::vector<v1::HostEvent>& events, v1::Event::KindCase kind) {
  int count = 0;
  for (const v1::HostEvent& entry : events) {
    count += entry.host() == kA && entry.event().kind_case() == kind;
  }
  return count;
}

TEST_F(EbpfTest, ProbeAnsweredByALivePeerKeepsTheConnection) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_TRUE(stack_->WatchEvents().ok());
  const int port = ListenOnB(network_->b_ipv4());
  auto [client, server] = Connect(network_->b_ipv4(), port);
  ASSERT_GE(client, 0);
  // A probe after 2 s idle; the next timer run, 1 s later, sees it answered. The next probe
  // would come 2 s after the answer: keepalive is switched off before that.
  EnableKeepalive(client, 2, 1, 3);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (CountEvents(stack_->WatchedEvents(), v1::Event::kKeepaliveAnswered) == 0 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  SetInt(client, SOL_SOCKET, SO_KEEPALIVE, 0);
  absl::SleepFor(absl::Milliseconds(500));
  const std::vector<v1::HostEvent> events = stack_->WatchedEvents();
  EXPECT_EQ(CountEvents(events, v1::Event::kKeepaliveProbe), 1);
  EXPECT_EQ(CountEvents(events, v1::Event::kKeepaliveAnswered), 1);
  EXPECT_EQ(CountEvents(events, v1::Event::kClose), 0);
  for (const v1::HostEvent& entry : events) {
    if (entry.event().has_keepalive_probe()) {
      EXPECT_EQ(entry.event().keepalive_probe().probe_number(), 1u);
      EXPECT_GE(entry.event().keepalive_probe().idle_ms(), 1900u);
    }
  }
  const std::string m = stack_->Scrape();
  EXPECT_EQ(MetricValue(m, "tcpscope_keepalive_probes_total", {{"host", kA}}), 1);
  EXPECT_EQ(MetricSum(m, "tcpscope_keepalive_timeouts_total", {}), 0);
  EXPECT_EQ(MetricValue(m, "tcpscope_connections", {{"host", kA}, {"state", "established"}}), 1);
}

// The unreachable outcome: B answers A's packets with ICMP "administratively prohibited" (an
// unreachable code) through a policy rule ahead of its local table. The kernel sends such
// errors only where forwarding is on.
void ProhibitFromA(const TwoHostNetwork& network) {
  ASSERT_TRUE(SetSysctl(network.b(), "net.ipv4.ip_forward", "1").ok());
  const std::string b = network.b().name();
  for (const std::string& command :
       {"ip -n " + b + " rule add pref 5 lookup local", "ip -n " + b + " rule del pref 0",
        "ip -n " + b + " rule add pref 1 from " + network.a_ipv4() + " lookup 100",
        "ip -n " + b + " route add prohibit " + network.b_ipv4() + " table 100"}) {
    ASSERT_EQ(RunCommand(command + " 2>&1").exit_code, 0) << command;
  }
}

const v1::Event* FindEvent(const std::vector<v1::HostEvent>& events, v1::Event::KindCase kind) {
  for (const v1::HostEvent& entry : events) {
    if (entry.host() == kA && entry.event().kind_case() == kind) return &entry.event();
  }
  return nullptr;
}

TEST_F(EbpfTest, IcmpUnreachableDuringRetransmissionsEndsWithHostUnreachable) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_TRUE(stack_->WatchEvents().ok());
  auto [client, server] = OneConnection();
  ASSERT_GE(client, 0);
  ASSERT_NO_FATAL_FAILURE(ProhibitFromA(*network_));
  SetInt(client, IPPROTO_TCP, TCP_USER_TIMEOUT, 2000);
  ASSERT_EQ(send(client, "x", 1, 0), 1);  // its retransmissions draw the ICMP errors
  const Labels close = {
      {"host", kA}, {"role", "client"}, {"initiator", "local"}, {"reason", "retransmit_timeout"}};
  EXPECT_EQ(stack_->WaitForValue("tcpscope_closes_total", close, 1, absl::Seconds(15)), 1);
  absl::SleepFor(absl::Milliseconds(300));
  const std::vector<v1::HostEvent> events = stack_->WatchedEvents();
  const v1::Event* event = FindEvent(events, v1::Event::kClose);
  ASSERT_NE(event, nullptr);
  EXPECT_EQ(event->endpoints().remote_port(), static_cast<uint32_t>(listen_port_));
  EXPECT_NE(event->endpoints().local_port(), 0u);
  EXPECT_EQ(event->close().error(), EHOSTUNREACH);
  EXPECT_GE(event->close().retransmits(), 1u);
}

TEST_F(EbpfTest, KeepaliveProbesAnsweredByIcmpEndLikeATimeout) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_TRUE(stack_->WatchEvents().ok());
  auto [client, server] = OneConnection();
  ASSERT_GE(client, 0);
  ASSERT_NO_FATAL_FAILURE(ProhibitFromA(*network_));
  EnableKeepalive(client, 1, 1, 3);
  const Labels timeout_close = {
      {"host", kA}, {"role", "client"}, {"initiator", "local"}, {"reason", "keepalive_timeout"}};
  EXPECT_EQ(stack_->WaitForValue("tcpscope_closes_total", timeout_close, 1, absl::Seconds(15)), 1);
  absl::SleepFor(absl::Milliseconds(300));
  const std::vector<v1::HostEvent> events = stack_->WatchedEvents();
  EXPECT_EQ(CountEvents(events, v1::Event::kKeepaliveProbe), 3);
  EXPECT_EQ(MetricValue(stack_->Scrape(), "tcpscope_keepalive_probes_total", {{"host", kA}}), 3);
  const v1::Event* event = FindEvent(events, v1::Event::kKeepaliveTimeout);
  ASSERT_NE(event, nullptr);
  // Linux drops an ICMP error that quotes a keepalive probe: the probe's sequence number is
  // snd_una - 1, outside the window tcp_v4_err accepts (TcpExtOutOfWindowIcmps). So the
  // connection ends exactly as with a silent peer: ETIMEDOUT after the probes.
  EXPECT_EQ(event->keepalive_timeout().error(), ETIMEDOUT);
  EXPECT_EQ(event->keepalive_timeout().probes_sent(), 3u);
  EXPECT_EQ(event->keepalive_timeout().idle_s(), 1u);
  EXPECT_EQ(event->keepalive_timeout().interval_s(), 1u);
  EXPECT_EQ(event->keepalive_timeout().count(), 3u);
}

TEST_F(EbpfTest, RstAnsweringAProbeMeansThePeerRebooted) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const int port = ListenOnB(network_->b_ipv4());
  auto [client, server] = Connect(network_->b_ipv4(), port);
  ASSERT_GE(client, 0);
  ASSERT_TRUE(network_->RebootB().ok());
  // Keepalive only now, so no probe is lost while B is down.
  EnableKeepalive(client, 1, 1, 3);
  const Labels reset_close = {
      {"host", kA}, {"role", "client"}, {"initiator", "remote"}, {"reason", "keepalive_reset"}};
  EXPECT_EQ(stack_->WaitForValue("tcpscope_closes_total", reset_close, 1, absl::Seconds(10)), 1);
  const std::string m = stack_->Scrape();
  EXPECT_EQ(MetricValue(m, "tcpscope_keepalive_probes_total", {{"host", kA}}), 1);
  EXPECT_EQ(MetricSum(m, "tcpscope_closes_total", {{"host", kA}}), 1);
  EXPECT_EQ(MetricSum(m, "tcpscope_keepalive_timeouts_total", {{"host", kA}}), 0);
}

uint64_t Inode(const std::string& path) {
  struct stat info {};
  EXPECT_EQ(stat(path.c_str(), &info), 0) << path;
  return info.st_ino;
}

// Without --netns the agent watches every namespace of the kernel and tells them apart.
TEST_F(EbpfTest, EveryNamespaceByDefault) {
  auto network = TwoHostNetwork::Create("allns");
  ASSERT_TRUE(network.ok()) << network.status();
  network_ = std::move(*network);
  auto stack = TcpscopeStack::Start("EveryNamespaceByDefault");
  ASSERT_TRUE(stack.ok()) << stack.status();
  stack_ = std::move(*stack);
  ASSERT_TRUE(
      stack_->AddAgent("host-all", "", {"--source=ebpf", "--snapshot_interval=200ms"}).ok());
  ASSERT_TRUE(stack_->WaitForAgents().ok()) << stack_->Logs();
  ASSERT_TRUE(stack_->WatchEvents().ok());
  absl::SleepFor(absl::Milliseconds(300));  // the watcher subscribes

  constexpr int kCount = 6;
  const uint64_t a = Inode(network_->a().path());
  const uint64_t b = Inode(network_->b().path());
  const int port = ListenOnB(network_->b_ipv4());
  for (int i = 0; i < kCount; ++i) Connect(network_->b_ipv4(), port);

  auto count = [&](const std::vector<v1::HostEvent>& events, uint64_t netns, v1::Role role) {
    int n = 0;
    for (const v1::HostEvent& entry : events) {
      n += entry.event().has_handshake() && entry.event().origin().netns_inode() == netns &&
           entry.event().role() == role;
    }
    return n;
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  std::vector<v1::HostEvent> events;
  do {
    absl::SleepFor(absl::Milliseconds(50));
    events = stack_->WatchedEvents();
  } while (
      (count(events, a, v1::ROLE_CLIENT) < kCount || count(events, b, v1::ROLE_SERVER) < kCount) &&
      absl::Now() < deadline);
  absl::SleepFor(absl::Milliseconds(300));
  events = stack_->WatchedEvents();
  EXPECT_EQ(count(events, a, v1::ROLE_CLIENT), kCount);
  EXPECT_EQ(count(events, b, v1::ROLE_SERVER), kCount);
  EXPECT_EQ(count(events, a, v1::ROLE_SERVER), 0);
  EXPECT_EQ(count(events, b, v1::ROLE_CLIENT), 0);

  // Snapshots cover both namespaces too.
  const CommandResult cli = RunCommand(absl::StrCat(BinaryPath("tcpscope"),
                                                    " connections -o json --host=host-all "
                                                    "--state=established --service=127.0.0.1:",
                                                    stack_->grpc_port()));
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  v1::ListConnectionsResponse listed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(cli.output, &listed).ok());
  int in_a = 0, in_b = 0;
  for (const v1::HostConnection& entry : listed.connections()) {
    in_a += entry.connection().origin().netns_inode() == a;
    in_b += entry.connection().origin().netns_inode() == b;
  }
  EXPECT_EQ(in_a, kCount);
  EXPECT_EQ(in_b, kCount);
}

TEST_F(EbpfTest, SockDiagFallbackCountsLongEnoughConnections) {
  ASSERT_NO_FATAL_FAILURE(Start("sockdiag"));
  constexpr int kCount = 10;
  const int port = ListenOnB(network_->b_ipv4());
  std::vector<std::pair<int, int>> connections;
  for (int i = 0; i < kCount; ++i) connections.push_back(Connect(network_->b_ipv4(), port));
  // Long enough: both ends are seen established by a dump, then each closing state.
  EXPECT_EQ(stack_->WaitForValue("tcpscope_connections", {{"host", kA}, {"state", "established"}},
                                 kCount),
            kCount);
  for (auto [client, server] : connections) CloseFd(client);
  EXPECT_EQ(
      stack_->WaitForValue("tcpscope_connections", {{"host", kB}, {"state", "close_wait"}}, kCount),
      kCount);
  for (auto [client, server] : connections) CloseFd(server);
  // No dump saw A's ends connecting and no listener of A holds their ports: their role is not
  // known (B's are accepted by its listener).
  ExpectShortConnectionCounts(kCount, "unknown");
}

}  // namespace
}  // namespace tcpscope::testing
