// A replica's kill -9 under load, with the real binaries (issue 14): three tcpscope-service
// replicas on loopback, two eBPF agents in namespaces made by the test (--service listing all
// three, --failover_after=2s), host names chosen so that A is homed on the replica killed and B
// on another, a real Prometheus scraping all three, and connections A -> B made continuously
// (~20/s, counted by the test). The replica is killed: A rehomes within --failover_after plus a
// snapshot interval; every connection is counted by the replicas, twice at most for the batches
// in flight at the kill; PromQL sums per host hold all of them but what the killed replica
// counted after its last scrape (gone with it, measured and bounded); half-open detection works
// on the two replicas left (peer_host_down for A's end); the replica comes back on its port, A
// returns, and every later connection adds exactly one. Needs root (namespaces, eBPF) and
// Debian's prometheus.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/substitute.h"
#include "absl/time/clock.h"
#include "common/rendezvous.h"
#include "gtest/gtest.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/netns.h"
#include "tests/harness/process.h"
#include "tests/harness/sockets.h"
#include "tests/harness/tcpscope_stack.h"
#include "tests/harness/test_network.h"
#include "tests/harness/two_host_test.h"

namespace tcpscope::testing {
namespace {

constexpr absl::Duration kFailoverAfter = absl::Seconds(2);
constexpr absl::Duration kSnapshot = absl::Seconds(1);
constexpr absl::Duration kPeerDownAfter = absl::Seconds(5);
constexpr absl::Duration kScrape = absl::Seconds(1);
// Slack of every deadline: process start, gRPC connects, this test's polling.
constexpr absl::Duration kSlack = absl::Seconds(2);
constexpr absl::Duration kConnectionPeriod = absl::Milliseconds(50);  // ~20 connections/s
// Connections counted twice at most across a failover: those in the batches the killed replica
// applied but whose acks it never sent (the one or two in flight; README, "Failover").
constexpr double kInFlightBound = 4;

std::string Env(const char* name, const std::string& fallback) {
  const char* value = getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

std::string UrlEncode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, absl::StrFormat("%%%02X", c));
    }
  }
  return out;
}

// Connections A -> B made one after another on a thread until Stop(): each a handshake, a byte,
// the client's close and the server's after EOF. Counts those completed.
class ConnectionLoop {
 public:
  ConnectionLoop(const TwoHostNetwork& network, int listener, int port)
      : thread_([this, &network, listener, port] { Run(network, listener, port); }) {}
  ~ConnectionLoop() { Stop(); }
  int Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    return made_.load();
  }
  int made() const { return made_.load(); }
  // Connections completed in (since, until].
  int MadeBetween(absl::Time since, absl::Time until) {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int>(std::count_if(completed_.begin(), completed_.end(),
                                          [&](absl::Time t) { return t > since && t <= until; }));
  }
  std::string error() {
    std::lock_guard<std::mutex> lock(mutex_);
    return error_;
  }

 private:
  void Run(const TwoHostNetwork& network, int listener, int port) {
    // Bounded: 60 s of connections at most, whatever the test does.
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    absl::Time next = absl::Now();
    while (!stop_.load() && absl::Now() < give_up) {
      auto client = ConnectFrom(network.a(), network.b_ipv4(), port);
      if (!client.ok()) return Fail(client.status().ToString());
      auto server = AcceptOne(listener);
      if (!server.ok()) {
        close(*client);
        return Fail(server.status().ToString());
      }
      const bool sent = send(*client, "x", 1, 0) == 1;
      close(*client);
      AwaitEof(*server);
      close(*server);
      if (!sent) return Fail(absl::StrCat("send: ", strerror(errno)));
      {
        std::lock_guard<std::mutex> lock(mutex_);
        completed_.push_back(absl::Now());
      }
      made_.fetch_add(1);
      next += kConnectionPeriod;
      absl::SleepFor(next - absl::Now());
    }
  }
  void Fail(const std::string& error) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = error;
  }

  std::atomic<bool> stop_{false};
  std::atomic<int> made_{0};
  std::mutex mutex_;
  std::string error_;
  std::vector<absl::Time> completed_;
  std::thread thread_;
};

class ReplicaFailoverTest : public TwoHostTest {
 protected:
  void TearDown() override {
    loop_.reset();
    if (prometheus_ != nullptr) {
      prometheus_->Stop(absl::Seconds(5));
      if (HasFailure()) std::cerr << "--- prometheus\n" << prometheus_->Log();
    }
    if (HasFailure()) {
      std::cerr << "--- agent " << host_a_ << " metrics\n" << AgentMetrics(agent_a_port_);
    }
    TwoHostTest::TearDown();
    if (!work_dir_.empty()) std::filesystem::remove_all(work_dir_);
  }

  TcpscopeStack& Replica(int i) { return i == 0 ? *stack_ : *others_[i - 1]; }

  // Three replicas; host names whose rankings put A on replica 0 (then 2, then 1) and B on 1.
  void StartTier() {
    std::vector<int> ports;
    for (int i = 0; i < 3; ++i) {
      ports.push_back(FreeTcpPort());
      replica_addresses_.push_back(absl::StrCat("127.0.0.1:", ports.back()));
    }
    const std::vector<std::string>& r = replica_addresses_;
    for (int i = 0; host_a_.empty() || host_b_.empty(); ++i) {
      ASSERT_LT(i, 10000) << "no host names with the wanted rankings";
      const std::string name = absl::StrCat("failover-", i);
      const std::vector<std::string> ranking = RendezvousRanking(name, r);
      if (host_a_.empty() && ranking == std::vector<std::string>{r[0], r[2], r[1]}) host_a_ = name;
      if (host_b_.empty() && ranking.front() == r[1]) host_b_ = name;
    }
    for (int i = 0; i < 3; ++i) {
      auto stack = TcpscopeStack::Start(
          absl::StrCat("ReplicaFailover-replica", i),
          {absl::StrCat("--peers=", absl::StrJoin(r, ",")), "--advertise=" + r[i],
           "--replica_down_after=1s", "--half_open_grace=1s",
           absl::StrCat("--peer_down_after=", absl::FormatDuration(kPeerDownAfter))},
          ports[i]);
      ASSERT_TRUE(stack.ok()) << stack.status();
      if (i == 0) {
        stack_ = std::move(*stack);
      } else {
        others_.push_back(std::move(*stack));
      }
    }
    for (int i = 0; i < 3; ++i) {
      ASSERT_EQ(Replica(i).WaitForValue("tcpscope_service_replica_peers_up", {}, 2), 2)
          << Replica(i).Logs();
    }
  }

  void StartPrometheus() {
    const std::string prometheus = Env("TCPSCOPE_PROMETHEUS", "/usr/bin/prometheus");
    ASSERT_EQ(access(prometheus.c_str(), X_OK), 0)
        << prometheus << " is missing: scripts/setup installs Debian's prometheus";
    std::string dir_template = ::testing::TempDir() + "/replica-failover-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template.data()), nullptr) << strerror(errno);
    work_dir_ = dir_template;
    std::vector<std::string> targets;
    for (int i = 0; i < 3; ++i) {
      targets.push_back(absl::StrCat("\"127.0.0.1:", Replica(i).metrics_port(), "\""));
    }
    std::ofstream(work_dir_ + "/prometheus.yml") << absl::Substitute(
        R"(global:
  scrape_interval: $0s
  scrape_timeout: $0s
scrape_configs:
  - job_name: tcpscope-service
    static_configs:
      - targets: [$1]
)",
        absl::ToInt64Seconds(kScrape), absl::StrJoin(targets, ","));
    prometheus_port_ = FreeTcpPort();
    auto process = Subprocess::Start(
        {prometheus, "--config.file=" + work_dir_ + "/prometheus.yml",
         "--storage.tsdb.path=" + work_dir_ + "/data",
         absl::StrCat("--web.listen-address=127.0.0.1:", prometheus_port_), "--log.level=warn"},
        ::testing::TempDir() + "/replica-failover-prometheus.log");
    ASSERT_TRUE(process.ok()) << process.status();
    prometheus_ = std::move(*process);
  }

  std::vector<std::string> AgentFlags(int metrics_port) const {
    return {absl::StrCat("--service=", absl::StrJoin(replica_addresses_, ",")),
            "--source=ebpf",
            absl::StrCat("--snapshot_interval=", absl::FormatDuration(kSnapshot)),
            absl::StrCat("--failover_after=", absl::FormatDuration(kFailoverAfter)),
            "--max_reconnect_backoff=300ms",
            absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port)};
  }

  static std::string AgentMetrics(int port) {
    absl::StatusOr<std::string> body = HttpGet("127.0.0.1", port, "/metrics");
    return body.ok() ? *body : "";
  }

  // Polls an agent's /metrics until the series has `value` (bounded); returns the last value.
  static std::optional<double> AwaitAgentValue(int port, const std::string& name,
                                               const Labels& labels, double value,
                                               absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    std::optional<double> seen = MetricValue(AgentMetrics(port), name, labels);
    while (seen != value && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
      seen = MetricValue(AgentMetrics(port), name, labels);
    }
    return seen;
  }

  // An instant PromQL query's single value, or nullopt (no data or an error).
  std::optional<double> PromQL(const std::string& query) const {
    absl::StatusOr<std::string> body =
        HttpGet("127.0.0.1", prometheus_port_, "/api/v1/query?query=" + UrlEncode(query));
    if (!body.ok()) return std::nullopt;
    static const std::regex kValue(R"re("value":\[[0-9.e+]+,"([^"]+)"\])re");
    std::smatch match;
    if (!std::regex_search(*body, match, kValue)) return std::nullopt;
    return std::stod(match[1]);
  }

  // Polls PromQL until `query` is `value` (bounded); returns the last value.
  std::optional<double> AwaitPromQL(const std::string& query, double value,
                                    absl::Duration timeout = absl::Seconds(20)) const {
    const absl::Time deadline = absl::Now() + timeout;
    std::optional<double> seen = PromQL(query);
    while (seen != value && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(200));
      seen = PromQL(query);
    }
    return seen;
  }

  // A host's handshakes as Prometheus holds them: every replica's series now, plus the killed
  // replica's last scraped values of its first life (its series went stale at the kill, and
  // its restart counts from zero).
  std::string HandshakesQuery(const std::string& host) const {
    return absl::Substitute(
        "sum(tcpscope_handshakes_total{host=\"$0\"}) + "
        "(sum(last_over_time(tcpscope_handshakes_total{host=\"$0\",instance=\"127.0.0.1:$1\"}"
        "[10m] @ $2)) or vector(0))",
        host, killed_metrics_port_, KillTime());
  }

  // The kill's time for PromQL's @ modifier, to the millisecond.
  std::string KillTime() const {
    return absl::StrFormat("%.3f", absl::ToDoubleSeconds(killed_at_ - absl::UnixEpoch()));
  }

  // Waits until both agents hold nothing unacknowledged and Prometheus has scraped since.
  void AwaitDelivered() {
    for (int port : {agent_a_port_, agent_b_port_}) {
      ASSERT_EQ(AwaitAgentValue(port, "tcpscope_agent_buffered_batches", {}, 0, absl::Seconds(15)),
                0);
    }
    absl::SleepFor(kSnapshot + 3 * kScrape);
  }

  std::unique_ptr<Subprocess> prometheus_;
  std::unique_ptr<ConnectionLoop> loop_;
  std::string work_dir_;
  std::string host_a_, host_b_;
  int prometheus_port_ = 0;
  int agent_a_port_ = 0, agent_b_port_ = 0;
  int killed_metrics_port_ = 0;
  absl::Time killed_at_;
};

TEST_F(ReplicaFailoverTest, KillNineOfAHomeUnderLoadCountsEveryConnectionAndHalfOpenStillWorks) {
  auto network = TwoHostNetwork::Create("failover");
  ASSERT_TRUE(network.ok()) << network.status();
  network_ = std::move(*network);
  ASSERT_NO_FATAL_FAILURE(StartTier());
  ASSERT_NO_FATAL_FAILURE(StartPrometheus());
  const std::vector<std::string>& r = replica_addresses_;
  std::cerr << "host " << host_a_ << " ranks " << r[0] << ", " << r[2] << ", " << r[1] << "; host "
            << host_b_ << " is homed on " << r[1] << "\n";

  agent_a_port_ = FreeTcpPort();
  agent_b_port_ = FreeTcpPort();
  ASSERT_TRUE(Replica(0).AddAgent(host_a_, network_->a().path(), AgentFlags(agent_a_port_)).ok());
  ASSERT_TRUE(Replica(1).AddAgent(host_b_, network_->b().path(), AgentFlags(agent_b_port_)).ok());
  ASSERT_TRUE(Replica(0).WaitForAgents().ok()) << Replica(0).Logs();
  ASSERT_TRUE(Replica(1).WaitForAgents().ok()) << Replica(1).Logs();
  ASSERT_EQ(AwaitPromQL("count(up == 1)", 3), 3);

  // A long connection whose A end must be found half-open later, on the tier without replica 0.
  auto [long_client, long_server] = OneConnection();
  ASSERT_GE(long_client, 0);
  const int port = listen_port_;
  ASSERT_EQ(
      AwaitPromQL(absl::Substitute("sum(tcpscope_handshakes_total{host=\"$0\"})", host_b_), 1), 1);

  // 1. Connections A -> B, continuously; replica 0 (A's home) is killed meanwhile.
  loop_ = std::make_unique<ConnectionLoop>(*network_, listener_, port);
  absl::SleepFor(absl::Seconds(3));
  killed_metrics_port_ = Replica(0).metrics_port();
  // What replica 0 counted of A, read by this test just before the kill. What it counted
  // between this scrape and the kill is lost with it: the connections made meanwhile (a slow
  // build, ASan, stretches the window), and one still in flight at the scrape.
  const int made_before_scrape = loop_->made();
  const double counted_by_killed =
      MetricSum(Replica(0).Scrape(), "tcpscope_handshakes_total", {{"host", host_a_}});
  Replica(0).KillService();
  killed_at_ = absl::Now();
  const int made_before_kill = loop_->made();
  const int unscraped_at_most = made_before_kill - made_before_scrape + 1;
  EXPECT_EQ(AwaitAgentValue(agent_a_port_, "tcpscope_agent_home_info", {{"replica", r[2]}}, 1,
                            kFailoverAfter + kSnapshot + absl::Seconds(10)),
            1);
  EXPECT_EQ(Replica(2).WaitForValue("tcpscope_agent_up", {{"host", host_a_}}, 1), 1);
  const absl::Duration rehomed = absl::Now() - killed_at_;
  std::cerr << "rehomed on " << r[2] << " " << absl::FormatDuration(rehomed)
            << " after the SIGKILL of " << r[0] << " (failover_after "
            << absl::FormatDuration(kFailoverAfter) << ", snapshot interval "
            << absl::FormatDuration(kSnapshot) << "); " << made_before_kill
            << " connections made before it\n";
  EXPECT_LE(rehomed, kFailoverAfter + kSnapshot + kSlack);
  absl::SleepFor(absl::Seconds(3));
  const int made_away = loop_->Stop();
  EXPECT_EQ(loop_->error(), "");
  ASSERT_GT(made_away, made_before_kill);

  // Every connection counted: A's client handshakes on replica 0 until the kill and on its new
  // home after it, B's server handshakes on B's home; plus the long connection's.
  ASSERT_NO_FATAL_FAILURE(AwaitDelivered());
  const double want = made_away + 1;
  const double counted_by_new_home =
      MetricSum(Replica(2).Scrape(), "tcpscope_handshakes_total", {{"host", host_a_}});
  const double twice = counted_by_killed + counted_by_new_home - want;
  EXPECT_GE(twice, -unscraped_at_most)
      << "connections lost across the failover (at most " << unscraped_at_most
      << " may fall between this test's last scrape of the killed replica and the kill)";
  EXPECT_LE(twice, kInFlightBound) << "counted twice beyond the in-flight bound";
  // Prometheus: every replica's series now, plus the killed replica's last scraped values. It
  // lacks what the killed replica counted after its last scrape: never scraped, gone with it.
  const std::optional<double> a_total = PromQL(HandshakesQuery(host_a_));
  const std::optional<double> b_total =
      PromQL(absl::Substitute("sum(tcpscope_handshakes_total{host=\"$0\"})", host_b_));
  const std::optional<double> killed_scraped = PromQL(absl::Substitute(
      "sum(last_over_time(tcpscope_handshakes_total{host=\"$0\",instance=\"127.0.0.1:$1\"}[10m] "
      "@ $2))",
      host_a_, killed_metrics_port_, KillTime()));
  // When Prometheus last scraped the killed replica: what A's agent delivered after that (its
  // connections completed since, and those of the second before, still on their way) is all
  // that Prometheus can lack.
  const std::optional<double> last_scrape = PromQL(absl::Substitute(
      "max(timestamp(tcpscope_handshakes_total{host=\"$0\",instance=\"127.0.0.1:$1\"} @ $2))",
      host_a_, killed_metrics_port_, KillTime()));
  ASSERT_TRUE(last_scrape.has_value());
  const absl::Time scraped_at = absl::UnixEpoch() + absl::Seconds(*last_scrape);
  const int made_since_scrape = loop_->MadeBetween(scraped_at - absl::Seconds(1), killed_at_);
  const std::optional<double> increase = PromQL(absl::Substitute(
      "sum by (host) (increase(tcpscope_handshakes_total{host=\"$0\"}[5m]))", host_a_));
  std::cerr << "connections made: " << made_away << " (+1 long). " << host_a_
            << "'s handshakes: the killed replica counted " << counted_by_killed
            << " (Prometheus scraped " << killed_scraped.value_or(-1) << " of them), the new home "
            << counted_by_new_home << ": counted twice " << twice << "; PromQL total "
            << a_total.value_or(-1) << " (increase() over 5m " << increase.value_or(-1)
            << "), unscraped at the kill " << counted_by_killed - killed_scraped.value_or(0)
            << " (last scrape " << absl::FormatDuration(killed_at_ - scraped_at)
            << " before the kill; " << made_since_scrape
            << " connections made from the second before it to the kill). " << host_b_
            << "'s handshakes in PromQL: " << b_total.value_or(-1) << "\n";
  EXPECT_EQ(b_total, want);
  ASSERT_TRUE(a_total.has_value());
  EXPECT_LE(*a_total, want + kInFlightBound);
  EXPECT_GE(*a_total, want - made_since_scrape - 1);
  EXPECT_EQ(*a_total, killed_scraped.value_or(0) + counted_by_new_home);

  // 2. Half-open detection on the two replicas left: B's host goes down (its agent killed, its
  // packets to A lost); A's end of the long connection is peer_host_down, on A's new home.
  Replica(1).agent(host_b_).Kill();
  ASSERT_TRUE(network_->BlackholeFromB(network_->a_ipv4()).ok());
  const absl::Time b_down = absl::Now();
  EXPECT_EQ(Replica(2).WaitForValue("tcpscope_connections_half_open",
                                    {{"host", host_a_}, {"reason", "peer_host_down"}}, 1,
                                    kPeerDownAfter + 2 * kSnapshot + kSlack + absl::Seconds(3)),
            1);
  std::cerr << "peer_host_down for " << host_a_ << "'s end on " << r[2] << " "
            << absl::FormatDuration(absl::Now() - b_down) << " after B went down (peer_down_after "
            << absl::FormatDuration(kPeerDownAfter) << ")\n";
  EXPECT_EQ(AwaitPromQL(absl::Substitute(
                            "max(tcpscope_connections_half_open{host=\"$0\",reason=\"peer_host_"
                            "down\"})",
                            host_a_),
                        1),
            1);
  ASSERT_TRUE(network_->UnblackholeFromB(network_->a_ipv4()).ok());
  ASSERT_TRUE(Replica(1).AddAgent(host_b_, network_->b().path(), AgentFlags(agent_b_port_)).ok());
  EXPECT_EQ(Replica(1).WaitForValue("tcpscope_agent_up", {{"host", host_b_}}, 1), 1);

  // 3. Replica 0 back on its port: A returns to it; connections go on and still add up.
  ASSERT_TRUE(Replica(0).RestartService().ok());
  const absl::Time restarted = absl::Now();
  EXPECT_EQ(AwaitAgentValue(agent_a_port_, "tcpscope_agent_home_changes_total",
                            {{"reason", "return"}}, 1, kFailoverAfter + absl::Seconds(15)),
            1);
  EXPECT_EQ(Replica(0).WaitForValue("tcpscope_agent_up", {{"host", host_a_}}, 1), 1);
  std::cerr << "back on " << r[0] << " " << absl::FormatDuration(absl::Now() - restarted)
            << " after its restart\n";
  loop_ = std::make_unique<ConnectionLoop>(*network_, listener_, port);
  absl::SleepFor(absl::Seconds(3));
  const int made_back = loop_->Stop();
  EXPECT_EQ(loop_->error(), "");
  ASSERT_GT(made_back, 0);
  ASSERT_NO_FATAL_FAILURE(AwaitDelivered());
  const double a_after = PromQL(HandshakesQuery(host_a_)).value_or(-1);
  const double b_after =
      PromQL(absl::Substitute("sum(tcpscope_handshakes_total{host=\"$0\"})", host_b_)).value_or(-1);
  std::cerr << "after the return, " << made_back << " more connections: PromQL handshakes of "
            << host_a_ << " " << a_after << ", of " << host_b_ << " " << b_after << "\n";
  EXPECT_EQ(a_after, *a_total + made_back);  // the return counts nothing twice
  EXPECT_EQ(b_after, want + made_back);
  const std::string agent = AgentMetrics(agent_a_port_);
  EXPECT_EQ(MetricValue(agent, "tcpscope_agent_home_info", {{"replica", r[0]}}), 1);
  EXPECT_EQ(MetricValue(agent, "tcpscope_agent_home_changes_total", {{"reason", "failover"}}), 1);
  EXPECT_EQ(MetricSum(agent, "tcpscope_agent_events_dropped_total", {}), 0);
}

}  // namespace
}  // namespace tcpscope::testing
