// Proves deploy/ against the real thing (issue 6): a real Prometheus (Debian's, on loopback)
// scrapes the real service, fed by an eBPF agent on each of two hosts (namespaces made by the
// test), and loads deploy/prometheus/alerts.yml; after a scripted scenario every PromQL expression
// of every Grafana dashboard panel and template variable and of every alert rule, read from the
// files themselves, returns data, with exact values where the scenario fixes them, and each alert
// is pending or firing exactly when the scenario calls for it. tests/observability_queries.py
// (check) evaluates; this test makes the traffic and says what must hold. Needs root and eBPF.
//
// The per-pod panels and alerts (tcpscope_workload_*) need a workload: the scenario runs in a
// cgroup that looks like a Kubernetes container (FakeKubernetesContainer below), so that every
// one of its sockets has real workload series, attributed by the agent from the cgroup path as
// on a node. No container runtime runs here, so names stay empty: the namespace and pod
// variables may be empty (the plan says why), and the workload is the container outside
// Kubernetes named by the first 12 characters of its id.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/substitute.h"
#include "gtest/gtest.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/process.h"
#include "tests/harness/sockets.h"
#include "tests/harness/two_host_test.h"

namespace tcpscope::testing {
namespace {

constexpr const char* kA = kHostA;
constexpr const char* kB = kHostB;

std::string Env(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value == nullptr || *value == '\0' ? fallback : value;
}

// Where cgroup v2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host).
absl::StatusOr<std::string> Cgroup2Mount() {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
    const std::vector<std::string> halves = absl::StrSplit(line, " - ");
    if (halves.size() != 2 || !absl::StartsWith(halves[1], "cgroup2 ")) continue;
    const std::vector<std::string> fields = absl::StrSplit(halves[0], ' ');
    if (fields.size() >= 5) return fields[4];
  }
  return absl::NotFoundError("no cgroup2 mount in /proc/self/mountinfo");
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream file(path);
  file << text;
  file.flush();
  if (!file) return absl::ErrnoToStatus(errno, absl::StrCat("writing ", path));
  return absl::OkStatus();
}

// The test process as a Kubernetes container, as far as the kernel can tell: moved into a
// cgroup v2 directory named as the kubelet's cgroupfs driver names a besteffort pod's container
// (kubepods/besteffort/pod<uid>/<64-hex container id>). From then on every socket of the
// scenario belongs to it: client connects and closes run in its context, server ends and
// handshakes are attributed through their owner. Both hosts' ends are this one process's, so
// both hosts get series of the same container. The agent reads the pod uid and container id
// from the path; the names need a container runtime (Docker, containerd), which this test does
// not start, so the workload is namespace="", pod="", container=the id's first 12 characters.
class FakeKubernetesContainer {
 public:
  static absl::StatusOr<std::unique_ptr<FakeKubernetesContainer>> Enter() {
    auto container = std::unique_ptr<FakeKubernetesContainer>(new FakeKubernetesContainer());
    absl::StatusOr<std::string> mount = Cgroup2Mount();
    if (!mount.ok()) return mount.status();
    container->mount_ = *mount;
    std::ifstream self("/proc/self/cgroup");
    std::string line;
    while (std::getline(self, line)) {
      if (absl::StartsWith(line, "0::")) container->original_ = line.substr(3);
    }
    if (container->original_.empty())
      return absl::NotFoundError("no cgroup v2 line in /proc/self/cgroup");
    // Per process, so that runs in parallel worktrees do not share a pod.
    container->pod_uid_ = absl::StrFormat("7e570000-0000-4000-8000-%012x", getpid());
    container->id_ = absl::StrFormat("7e57%08x%052d", getpid(), 0);
    std::string path = container->mount_;
    for (const std::string& part : {std::string("kubepods"), std::string("besteffort"),
                                    "pod" + container->pod_uid_, container->id_}) {
      path = absl::StrCat(path, "/", part);
      if (mkdir(path.c_str(), 0755) == 0) {
        container->created_.push_back(path);
      } else if (errno != EEXIST) {
        return absl::ErrnoToStatus(errno, absl::StrCat("mkdir ", path));
      }
    }
    if (absl::Status status = WriteFile(path + "/cgroup.procs", absl::StrCat(getpid()));
        !status.ok()) {
      return status;
    }
    return container;
  }

  ~FakeKubernetesContainer() {
    if (!original_.empty()) {
      (void)WriteFile(absl::StrCat(mount_, original_, "/cgroup.procs"), absl::StrCat(getpid()));
    }
    for (auto it = created_.rbegin(); it != created_.rend(); ++it) rmdir(it->c_str());
  }

  const std::string& id() const { return id_; }
  // The `container` label of its workload series: no runtime names it here.
  std::string label() const { return id_.substr(0, 12); }
  const std::string& mount() const { return mount_; }

 private:
  FakeKubernetesContainer() = default;
  std::string mount_;
  std::string original_;  // the process's cgroup before, relative to the mount
  std::string pod_uid_;
  std::string id_;
  std::vector<std::string> created_;  // directories made here, outermost first
};

class ObservabilityTest : public TwoHostTest {
 protected:
  void TearDown() override {
    container_.reset();  // back to its own cgroup before anything is stopped
    if (prometheus_ != nullptr) {
      prometheus_->Stop(absl::Seconds(5));
      if (HasFailure()) std::cerr << "--- prometheus\n" << prometheus_->Log();
    }
    duplicate_agent_.reset();
    if (!work_dir_.empty()) std::filesystem::remove_all(work_dir_);
    TwoHostTest::TearDown();
  }

  // The network, the service (its agents reach it through proxy_, which the test can cut) and a
  // Prometheus scraping it every second; agents come later, so Prometheus sees the fleet empty.
  void StartServiceAndPrometheus() {
    auto network = TwoHostNetwork::Create("obs");
    ASSERT_TRUE(network.ok()) << network.status();
    network_ = std::move(*network);
    auto stack = TcpscopeStack::Start("observability",
                                      {"--idle_risk_after=2s", "--close_wait_risk_after=1s"});
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = std::move(*stack);
    auto proxy = TcpProxy::Start(stack_->grpc_port());
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = std::move(*proxy);
    stack_->set_agent_service_port(proxy_->port());

    const std::string prometheus = Env("TCPSCOPE_PROMETHEUS", "/usr/bin/prometheus");
    ASSERT_EQ(access(prometheus.c_str(), X_OK), 0)
        << prometheus << " is missing: scripts/setup installs Debian's prometheus";
    std::string dir_template = ::testing::TempDir() + "/observability-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template.data()), nullptr) << strerror(errno);
    work_dir_ = dir_template;
    std::ofstream(work_dir_ + "/prometheus.yml") << absl::Substitute(
        R"(global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $0/deploy/prometheus/alerts.yml
scrape_configs:
  - job_name: tcpscope-service
    static_configs:
      - targets: ["127.0.0.1:$1"]
)",
        Env("TCPSCOPE_SOURCE_DIR", "."), stack_->metrics_port());
    prometheus_port_ = FreeTcpPort();
    auto process = Subprocess::Start(
        {prometheus, "--config.file=" + work_dir_ + "/prometheus.yml",
         "--storage.tsdb.path=" + work_dir_ + "/data",
         absl::StrCat("--web.listen-address=127.0.0.1:", prometheus_port_), "--log.level=warn"},
        ::testing::TempDir() + "/observability-prometheus.log");
    ASSERT_TRUE(process.ok()) << process.status();
    prometheus_ = std::move(*process);
  }

  void StartAgents() {
    // --cgroup_root: where the agent resolves cgroup ids to paths (this host's cgroup2 mount).
    absl::StatusOr<std::string> cgroups = Cgroup2Mount();
    ASSERT_TRUE(cgroups.ok()) << cgroups.status();
    const std::vector<std::string> flags = {"--source=ebpf",
                                            "--snapshot_interval=200ms",
                                            "--max_reconnect_backoff=300ms",
                                            "--max_buffered_batches=4",
                                            "--drain_timeout=500ms",
                                            "--cgroup_root=" + *cgroups};
    ASSERT_TRUE(stack_->AddAgent(kA, network_->a().path(), flags).ok());
    ASSERT_TRUE(stack_->AddAgent(kB, network_->b().path(), flags).ok());
    ASSERT_TRUE(stack_->WaitForAgents().ok()) << stack_->Logs();
  }

  // Runs observability_queries.py check with `plan` (JSON) until it holds or its timeout passes.
  void Check(const std::string& name, const std::string& plan) {
    const std::string path = absl::StrCat(work_dir_, "/plan-", ++checks_, ".json");
    std::ofstream(path) << plan;
    const std::string source = Env("TCPSCOPE_SOURCE_DIR", ".");
    const CommandResult result =
        RunCommand(absl::StrCat(Env("TCPSCOPE_PYTHON", "/usr/bin/python3"), " ", source,
                                "/tests/observability_queries.py check --deploy=", source,
                                "/deploy --prometheus=http://127.0.0.1:", prometheus_port_,
                                " --plan=", path, " --verbose 2>&1"));
    std::cerr << result.output;
    EXPECT_EQ(result.exit_code, 0) << name << ": see the report above";
  }

  // Waits until Prometheus has scraped `query` (a PromQL expression) at `value`.
  void AwaitInPrometheus(const std::string& query, double value) {
    const std::string escaped = absl::CEscape(query);  // a JSON string too
    Check(query, absl::Substitute(R"({"name": "Prometheus has $0 = $1", "timeout_seconds": 15,
                                      "values": [{"query": "$0", "value": $1}]})",
                                  escaped, value));
  }

  std::optional<double> ServiceValue(const std::string& name, const Labels& labels, double value) {
    return stack_->WaitForValue(name, labels, value);
  }

  std::unique_ptr<FakeKubernetesContainer> container_;
  std::unique_ptr<Subprocess> prometheus_;
  std::unique_ptr<Subprocess> duplicate_agent_;
  std::string work_dir_;
  int prometheus_port_ = 0;
  int checks_ = 0;
};

TEST_F(ObservabilityTest, EveryDashboardPanelAndAlertRuleHoldsAgainstARealPrometheus) {
  ASSERT_NO_FATAL_FAILURE(StartServiceAndPrometheus());

  // The service is up and knows no host: only TcpscopeNoAgents' condition holds.
  Check("no agents yet", R"json({
    "name": "service up, no agents", "timeout_seconds": 20,
    "rules_with_data": {"TcpscopeNoAgents": {}},
    "rules_without_data": ["TcpscopeKeepaliveTimeoutsRising", "TcpscopeHandshakeFailureRatioHigh",
                           "TcpscopeCloseWaitAccumulating", "TcpscopeHalfOpenConnections",
                           "TcpscopeAgentDown", "TcpscopeServiceDown", "TcpscopeEventsLost",
                           "TcpscopeWorkloadCloseWaitAccumulating",
                           "TcpscopeWorkloadHalfOpenConnections",
                           "TcpscopeWorkloadHandshakeFailures"],
    "rule_states": {"TcpscopeNoAgents": ["pending"], "TcpscopeAgentDown": ["inactive"],
                    "TcpscopeServiceDown": ["inactive"],
                    "TcpscopeHalfOpenConnections": ["inactive"],
                    "TcpscopeWorkloadHalfOpenConnections": ["inactive"]}})json");
  ASSERT_NO_FATAL_FAILURE(StartAgents());
  // Prometheus holds both hosts with zero losses before anything is lost.
  AwaitInPrometheus("sum(tcpscope_agent_up)", 2);
  // Two hosts, two stages each (kernel, agent).
  AwaitInPrometheus("count(tcpscope_agent_events_lost_total == 0)", 4);

  // From here on the scenario's sockets are a container's (the service, Prometheus and the
  // agents, started before, stay in the test's own cgroup).
  auto container = FakeKubernetesContainer::Enter();
  ASSERT_TRUE(container.ok()) << container.status()
                              << ": the per-pod panels need a cgroup v2 mount to make a container";
  container_ = std::move(*container);

  // Losses: the service's replies stop (its acks never arrive), so each agent's four-batch buffer
  // fills with snapshots and drops its oldest batch, the one with these two connections' events.
  // The service applied them already and learns of the loss from the next batch.
  proxy_->PassReplies(false);
  ASSERT_NO_FATAL_FAILURE(ShortConnections(network_->b_ipv4(), 2));
  const std::string lost = stack_->WaitFor([](const std::string& m) {
    return MetricValue(m, "tcpscope_agent_events_lost_total", {{"host", kA}, {"stage", "agent"}})
                   .value_or(0) > 0 &&
           MetricValue(m, "tcpscope_agent_events_lost_total", {{"host", kB}, {"stage", "agent"}})
                   .value_or(0) > 0;
  });
  EXPECT_GT(MetricSum(lost, "tcpscope_agent_events_lost_total", {{"stage", "agent"}}), 0);
  proxy_->Cut();
  proxy_->PassReplies(true);
  ASSERT_TRUE(stack_->WaitForAgents().ok()) << stack_->Logs();

  // A second agent claims host-a's name: the service refuses it (duplicate_host) at each retry.
  auto duplicate = Subprocess::Start(
      {BinaryPath("tcpscope-agent"), absl::StrCat("--service=127.0.0.1:", stack_->grpc_port()),
       absl::StrCat("--host_name=", kA), "--source=sockdiag", "--netns=" + network_->a().path(),
       "--metrics_listen=", "--max_reconnect_backoff=300ms"},
      ::testing::TempDir() + "/observability-duplicate-agent.log");
  ASSERT_TRUE(duplicate.ok()) << duplicate.status();
  duplicate_agent_ = std::move(*duplicate);
  AwaitInPrometheus(R"(count(tcpscope_service_rejected_total{reason="duplicate_host"} > 0))", 1);
  duplicate_agent_->Kill();

  // 3 short connections; 8 connects refused by B, the first seen by Prometheus on its own (a
  // counter series starts with its first event, and rates need a rise).
  ASSERT_NO_FATAL_FAILURE(ShortConnections(network_->b_ipv4(), 3));
  EXPECT_EQ(ErrnoOf(ConnectFrom(network_->a(), network_->b_ipv4(), 1).status()), ECONNREFUSED);
  AwaitInPrometheus(R"(sum(tcpscope_handshake_failures_total{host="host-a"}))", 1);
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(ErrnoOf(ConnectFrom(network_->a(), network_->b_ipv4(), 1).status()), ECONNREFUSED);
  }
  // A long IPv6 connection with keepalive at A, and one that B closes and A never does.
  ASSERT_NO_FATAL_FAILURE(OpenLongAndCloseWaitIpv6());

  // Two keepalive timeouts at A, one at a time so that Prometheus sees the counter rise: a
  // connection with keepalive (1 s idle, 2 probes 1 s apart) whose path from A is blackholed,
  // first over IPv4, then over IPv6 (the two IPv6 connections above stay quiet meanwhile).
  const Labels a_timeouts = {{"host", kA}, {"role", "client"}};
  auto [probed4, probed4_server] = Connect(network_->b_ipv4(), ListenOnB(network_->b_ipv4()));
  ASSERT_GE(probed4, 0);
  EnableKeepalive(probed4, 1, 1, 2);
  ASSERT_TRUE(network_->BlackholeFromA(network_->b_ipv4()).ok());
  EXPECT_EQ(ServiceValue("tcpscope_keepalive_timeouts_total", a_timeouts, 1), 1);
  AwaitInPrometheus("sum(tcpscope_keepalive_timeouts_total)", 1);
  auto [probed6, probed6_server] = Connect(network_->b_ipv6(), ListenOnB(network_->b_ipv6()));
  ASSERT_GE(probed6, 0);
  EnableKeepalive(probed6, 1, 1, 2);
  ASSERT_TRUE(network_->BlackholeFromA(network_->b_ipv6()).ok());
  EXPECT_EQ(ServiceValue("tcpscope_keepalive_timeouts_total", a_timeouts, 2), 2);
  EXPECT_EQ(ServiceValue("tcpscope_connections_at_risk",
                         {{"host", kA}, {"reason", "close_wait_stale"}}, 1),
            1);
  // A's kernel killed both probed ends without a word to B (the path is blackholed): B's two
  // server ends are half-open, and the service says so while B's agent still reports them.
  EXPECT_EQ(
      ServiceValue("tcpscope_connections_half_open", {{"host", kB}, {"reason", "peer_closed"}}, 2),
      2);

  // B's agent goes away: host-b stays known with tcpscope_agent_up 0; its snapshot gauges go.
  ASSERT_EQ(stack_->agent(kB).Stop(), 0);
  EXPECT_EQ(ServiceValue("tcpscope_agent_up", {{"host", kB}}, 0), 0);

  // Every panel and variable has data ($host: host-a; $namespace and $pod: All); the scenario's
  // numbers are exact: A holds 1 established (keepalive on), 1 CLOSE_WAIT (stale) and 5
  // TIME_WAIT (A closed the 5 short connections first); 9 client handshakes, 8 refused, 2
  // keepalive timeouts after 4 probes. B's two half-open ends were found once each; with B's
  // agent gone their gauges went, and A has none (B's agent stopped moments ago, sooner than the
  // service's --peer_down_after, so A's connections to B are not peer_host_down yet): the
  // half-open gauge is 0 for every reason and the half-open alerts have nothing to say.
  //
  // Workloads: every socket of the scenario is the container's ($0 below), so its series carry
  // A's numbers (the 5 TIME_WAIT ends too, which no file holds: the process that closed them,
  // from the eBPF program's FIN record, names them) and the host-level CLOSE_WAIT and handshake
  // alerts, which count only what no workload holds, stay quiet while their TcpscopeWorkload
  // twins name the container. No runtime names it, so no series has a pod (names are never
  // guessed) and the namespace and pod variables are empty.
  Check("after the scenario", absl::Substitute(R"json({
    "name": "after the scenario", "timeout_seconds": 20, "every_panel_has_data": true,
    "variables": {"host": "host-a", "namespace": ".*", "pod": ".*"},
    "may_be_empty": {
      "variable \\$$(namespace|pod)$$":
          "names need a container runtime, which this test does not run"},
    "rules_with_data": {
      "TcpscopeKeepaliveTimeoutsRising": {"host": "host-a"},
      "TcpscopeAgentDown": {"host": "host-b"},
      "TcpscopeEventsLost": {"host": "host-a", "stage": "agent"},
      "TcpscopeWorkloadCloseWaitAccumulating": {"host": "host-a", "container": "$0"},
      "TcpscopeWorkloadHandshakeFailures": {"host": "host-a", "container": "$0",
                                            "reason": "refused"}},
    "rules_without_data": ["TcpscopeNoAgents", "TcpscopeServiceDown",
                           "TcpscopeHalfOpenConnections", "TcpscopeHandshakeFailureRatioHigh",
                           "TcpscopeCloseWaitAccumulating", "TcpscopeWorkloadHalfOpenConnections"],
    "rule_states": {
      "TcpscopeKeepaliveTimeoutsRising": ["firing"], "TcpscopeEventsLost": ["firing"],
      "TcpscopeHandshakeFailureRatioHigh": ["inactive"],
      "TcpscopeCloseWaitAccumulating": ["inactive"], "TcpscopeAgentDown": ["pending"],
      "TcpscopeNoAgents": ["inactive"], "TcpscopeServiceDown": ["inactive"],
      "TcpscopeHalfOpenConnections": ["inactive"],
      "TcpscopeWorkloadCloseWaitAccumulating": ["pending"],
      "TcpscopeWorkloadHandshakeFailures": ["pending"],
      "TcpscopeWorkloadHalfOpenConnections": ["inactive"]},
    "values": [
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "CLOSE_WAIT by pod",
       "labels": {"host": "host-a", "container": "$0"}, "value": 1},
      {"dashboard": "tcpscope-host.json", "panel": "CLOSE_WAIT by pod",
       "labels": {"host": "host-a", "container": "$0", "workload": "$0"}, "value": 1},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "At-risk connections by pod",
       "labels": {"container": "$0", "reason": "close_wait_stale"}, "value": 1},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "Half-open connections by pod",
       "labels": {"host": "host-a", "container": "$0"}, "value": 0},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "Connections by pod and state",
       "labels": {"host": "host-a", "container": "$0", "state": "established"}, "value": 1},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "Connections by pod and state",
       "labels": {"host": "host-a", "container": "$0", "state": "close_wait"}, "value": 1},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "Connections by pod and state",
       "labels": {"host": "host-a", "container": "$0", "state": "time_wait"}, "value": 5},
      {"query": "sum by (reason) (tcpscope_workload_handshake_failures_total{container=\"$0\"})",
       "labels": {"reason": "refused"}, "value": 8},
      {"query": "sum(tcpscope_workload_keepalive_timeouts_total{container=\"$0\"})", "value": 2},
      {"query": "sum by (reason) (tcpscope_workload_closes_total{container=\"$0\"})",
       "labels": {"reason": "keepalive_timeout"}, "value": 2},
      {"query": "count(tcpscope_workload_connections{pod!=\"\"}) or vector(0)", "value": 0},
      {"query": "sum by (port, reason) (tcpscope_port_handshake_failures_total{host=\"host-a\"})",
       "labels": {"port": "1", "reason": "refused"}, "value": 8},
      {"query": "sum by (reason) (tcpscope_port_closes_total{host=\"host-a\"})",
       "labels": {"reason": "keepalive_timeout"}, "value": 2},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "Connections by state",
       "labels": {"state": "established"}, "value": 1},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "Connections by state",
       "labels": {"state": "close_wait"}, "value": 1},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "Connections by state",
       "labels": {"state": "time_wait"}, "value": 5},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "Established", "value": 1},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "CLOSE_WAIT", "value": 1},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "At risk", "value": 1},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "At-risk connections by reason",
       "labels": {"reason": "close_wait_stale"}, "value": 1},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "At-risk connections by reason",
       "labels": {"reason": "idle_no_keepalive"}, "value": 0},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "At-risk connections by reason",
       "labels": {"reason": "keepalive_probing"}, "value": 0},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "Hosts with at-risk connections",
       "labels": {"host": "host-a", "reason": "close_wait_stale"}, "value": 1},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "Half-open connections by reason",
       "labels": {"reason": "peer_closed"}, "value": 0},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "Half-open connections by reason",
       "labels": {"reason": "peer_rebooted"}, "value": 0},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "Half-open connections by reason",
       "labels": {"reason": "peer_host_down"}, "value": 0},
      {"dashboard": "tcpscope-fleet-overview.json", "panel": "Half-open detections",
       "labels": {"reason": "peer_rebooted"}, "value": 0},
      {"dashboard": "tcpscope-host.json", "panel": "Half-open connections by reason",
       "labels": {"host": "host-a", "reason": "peer_host_down"}, "value": 0},
      {"query": "sum(tcpscope_half_open_detected_total{host=\"host-b\",reason=\"peer_closed\"})",
       "value": 2},
      {"query": "count(tcpscope_half_open_detected_total)", "value": 1},
      {"dashboard": "tcpscope-fleet-overview.json",
       "panel": "Keepalive on established connections", "labels": {"keepalive": "on"}, "value": 1},
      {"dashboard": "tcpscope-fleet-overview.json",
       "panel": "Keepalive on established connections", "labels": {"keepalive": "off"}, "value": 0},
      {"dashboard": "tcpscope-host.json", "panel": "Connections by state",
       "labels": {"host": "host-a", "state": "close_wait"}, "value": 1},
      {"dashboard": "tcpscope-host.json", "panel": "Agents connected", "value": 1},
      {"dashboard": "tcpscope-health.json", "panel": "Agents connected", "value": 1},
      {"dashboard": "tcpscope-health.json", "panel": "Agents disconnected", "value": 1},
      {"dashboard": "tcpscope-health.json", "panel": "Hosts known", "value": 2},
      {"dashboard": "tcpscope-health.json", "panel": "Agents",
       "labels": {"host": "host-b"}, "value": 0},
      {"query": "sum by (reason) (tcpscope_handshake_failures_total{host=\"host-a\"})",
       "labels": {"reason": "refused"}, "value": 8},
      {"query": "sum(tcpscope_handshake_failures_total)", "value": 8},
      {"query": "sum(tcpscope_handshakes_total{host=\"host-a\",role=\"client\"})", "value": 9},
      {"query": "sum(tcpscope_handshakes_total{host=\"host-b\",role=\"server\"})", "value": 9},
      {"query": "sum(tcpscope_keepalive_timeouts_total{host=\"host-a\",role=\"client\"})",
       "value": 2},
      {"query": "sum(tcpscope_keepalive_probes_total{host=\"host-a\"})", "value": 4},
      {"query": "sum(tcpscope_closes_total{host=\"host-a\",reason=\"keepalive_timeout\"})",
       "value": 2},
      {"query": "sum(tcpscope_connection_lifetime_seconds_bucket{host=\"host-a\",le=\"1\"})",
       "value": 5}]})json",
                                               container_->label()));

  // The service dies: Prometheus's scrape fails and every tcpscope series goes stale at once.
  // TcpscopeServiceDown's condition holds; the agent alerts, guarded by the service, stay quiet.
  stack_->KillService();
  Check("service down", R"json({
    "name": "service down", "timeout_seconds": 15,
    "rules_with_data": {"TcpscopeServiceDown": {}},
    "rules_without_data": ["TcpscopeAgentDown", "TcpscopeNoAgents",
                           "TcpscopeHalfOpenConnections", "TcpscopeWorkloadCloseWaitAccumulating",
                           "TcpscopeWorkloadHalfOpenConnections"],
    "rule_states": {"TcpscopeServiceDown": ["pending"], "TcpscopeAgentDown": ["inactive"],
                    "TcpscopeNoAgents": ["inactive"],
                    "TcpscopeHalfOpenConnections": ["inactive"]}})json");
}

}  // namespace
}  // namespace tcpscope::testing
