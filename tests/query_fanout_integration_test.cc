// Queries fan out across replicas, with the real binaries and no root: three tcpscope-service
// replicas (--peers), hosts streaming to different replicas over the real Ingest protocol (a
// minimal agent written here, so every count is known exactly), and the real `tcpscope` CLI
// asked through each replica in turn. Every replica answers for the whole fleet, exactly the
// sum of the replicas' local parts; with one replica SIGKILLed the answer through another is
// partial (stderr names the dead replica, exit code 3); restarted, the answer is whole again.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tcpscope/v1/ingest.grpc.pb.h"
#include "tcpscope/v1/observer.grpc.pb.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/process.h"
#include "tests/harness/sockets.h"

namespace tcpscope::testing {
namespace {

constexpr int kReplicas = 3;
constexpr int kExitPartial = 3;

// One host's agent: a hello and its batches on one Ingest stream, kept open until destroyed.
class FakeAgent {
 public:
  static absl::StatusOr<std::unique_ptr<FakeAgent>> Connect(int port, const std::string& host,
                                                            const std::vector<v1::Batch>& batches) {
    std::unique_ptr<FakeAgent> agent(new FakeAgent);
    agent->stub_ = v1::Ingest::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    // Longer than the test: the stream stays open until the agent is destroyed.
    agent->context_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(3)));
    agent->stream_ = agent->stub_->Stream(&agent->context_);
    v1::AgentMessage hello;
    hello.mutable_hello()->set_host_name(host);
    hello.mutable_hello()->set_agent_version("fake");
    hello.mutable_hello()->set_boot_id("boot-" + host);
    hello.mutable_hello()->set_instance_id(1);
    hello.mutable_hello()->set_source(v1::SOURCE_KIND_SOCK_DIAG);
    v1::ServiceMessage reply;
    if (!agent->stream_->Write(hello) || !agent->stream_->Read(&reply) || !reply.has_hello_ack()) {
      return absl::UnavailableError(absl::StrCat(host, ": no hello-ack from port ", port));
    }
    for (const v1::Batch& batch : batches) {
      v1::AgentMessage message;
      *message.mutable_batch() = batch;
      if (!agent->stream_->Write(message)) return absl::UnavailableError("write failed");
      do {
        if (!agent->stream_->Read(&reply)) {
          return absl::UnavailableError(absl::StrCat(host, ": batch ", batch.seq(), " not acked"));
        }
      } while (!reply.has_ack() || reply.ack().seq() < batch.seq());
    }
    return agent;
  }

  // Sends one more batch and waits for its ack.
  absl::Status Send(const v1::Batch& batch) {
    v1::AgentMessage message;
    *message.mutable_batch() = batch;
    if (!stream_->Write(message)) return absl::UnavailableError("write failed");
    v1::ServiceMessage reply;
    do {
      if (!stream_->Read(&reply)) return absl::UnavailableError("not acked");
    } while (!reply.has_ack() || reply.ack().seq() < batch.seq());
    return absl::OkStatus();
  }

  ~FakeAgent() {
    context_.TryCancel();
    (void)stream_->Finish();
  }

 private:
  FakeAgent() = default;
  std::unique_ptr<v1::Ingest::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ServiceMessage>> stream_;
};

std::string Address(int a, int b) {
  return std::string({10, 0, static_cast<char>(a), static_cast<char>(b)});
}

// What a host sends: `ends` established client ends and a handshake event for each, at `times`.
struct HostPlan {
  std::string host;
  int replica;  // index of its home
  int host_number;
  std::vector<uint64_t> times;  // one handshake each; the snapshot has as many ends
};

v1::Batch BatchOf(const HostPlan& plan, uint64_t seq, uint64_t snapshot_ns) {
  v1::Batch batch;
  batch.set_seq(seq);
  v1::Snapshot* snapshot = batch.mutable_snapshot();
  snapshot->set_time_unix_ns(snapshot_ns);
  for (size_t i = 0; i < plan.times.size(); ++i) {
    v1::Endpoints endpoints;
    endpoints.set_local_address(Address(plan.replica + 1, plan.host_number));
    endpoints.set_local_port(static_cast<uint32_t>(40000 + i));
    endpoints.set_remote_address(Address(99, 99));
    endpoints.set_remote_port(80);
    v1::Event* event = batch.add_events();
    event->set_time_unix_ns(plan.times[i]);
    event->set_role(v1::ROLE_CLIENT);
    *event->mutable_endpoints() = endpoints;
    event->mutable_handshake();
    v1::Connection* end = snapshot->add_connections();
    end->set_connection_id(1000 + i);
    end->set_role(v1::ROLE_CLIENT);
    end->set_state(v1::TCP_STATE_ESTABLISHED);
    *end->mutable_endpoints() = endpoints;
  }
  return batch;
}

class QueryFanoutIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<std::string> peers;
    for (int i = 0; i < kReplicas; ++i) {
      grpc_ports_.push_back(FreeTcpPort());
      metrics_ports_.push_back(FreeTcpPort());
      peers.push_back(Replica(i));
    }
    peers_ = absl::StrJoin(peers, ",");
    for (int i = 0; i < kReplicas; ++i) {
      services_.emplace_back();
      const absl::Status started = StartReplica(i);
      ASSERT_TRUE(started.ok()) << started << "\n" << Logs();
    }
    ASSERT_TRUE(AwaitRing().ok()) << Logs();
  }

  // Waits until every replica answers pings from every other: their channels are connected
  // (a query to a peer whose channel is still backing off after it was unreachable is not
  // held: it is answered partial at once).
  absl::Status AwaitRing() {
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    for (int i = 0; i < kReplicas; ++i) {
      while (true) {
        const auto metrics = HttpGet("127.0.0.1", metrics_ports_[i], "/metrics");
        if (metrics.ok() &&
            MetricValue(*metrics, "tcpscope_service_replica_peers_up", {}) == kReplicas - 1) {
          break;
        }
        if (absl::Now() > deadline) {
          return absl::DeadlineExceededError(absl::StrCat("replica ", i, " sees peers down"));
        }
        absl::SleepFor(absl::Milliseconds(100));
      }
    }
    return absl::OkStatus();
  }

  std::string Replica(int i) const { return absl::StrCat("127.0.0.1:", grpc_ports_[i]); }

  absl::Status StartReplica(int i) {
    auto service = Subprocess::Start(
        {BinaryPath("tcpscope-service"), absl::StrCat("--grpc_listen=", Replica(i)),
         absl::StrCat("--metrics_listen=127.0.0.1:", metrics_ports_[i]),
         absl::StrCat("--peers=", peers_), absl::StrCat("--advertise=", Replica(i)),
         "--replica_down_after=1s"},
        absl::StrCat(::testing::TempDir(), "/fanout-replica", i, "-", starts_++, ".log"));
    if (!service.ok()) return service.status();
    services_[i] = std::move(*service);
    // Listening: its health answers.
    auto channel = grpc::CreateChannel(Replica(i), grpc::InsecureChannelCredentials());
    if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(10)))) {
      return absl::DeadlineExceededError(
          absl::StrCat("replica ", i, " not listening after 10 s; its process ",
                       services_[i]->Running() ? "runs" : "has exited"));
    }
    return absl::OkStatus();
  }

  struct Cli {
    int exit_code;
    std::string out;
    std::string err;
  };
  Cli RunCli(int replica, const std::string& args) {
    const std::string err_path =
        absl::StrCat(::testing::TempDir(), "/fanout-cli-", getpid(), ".err");
    const CommandResult result =
        RunCommand(absl::StrCat(BinaryPath("tcpscope"), " ", args, " -o json --timeout=10s",
                                " --service=", Replica(replica), " 2>", err_path));
    std::string err = RunCommand(absl::StrCat("cat ", err_path)).output;
    return {result.exit_code, result.output, err};
  }

  template <typename Message>
  Message Parse(const std::string& json) {
    Message message;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &message).ok()) << json;
    return message;
  }

  // Replica i's own part of the summary (the marker a fanning-out replica sends its peers).
  v1::SummaryResponse LocalSummary(int i) {
    auto stub =
        v1::Observer::NewStub(grpc::CreateChannel(Replica(i), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.AddMetadata("tcpscope-scope", "local");
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    v1::SummaryResponse response;
    EXPECT_TRUE(stub->Summary(&context, {}, &response).ok());
    return response;
  }
  v1::ListConnectionsResponse LocalConnections(int i) {
    auto stub =
        v1::Observer::NewStub(grpc::CreateChannel(Replica(i), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.AddMetadata("tcpscope-scope", "local");
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    v1::ListConnectionsResponse response;
    EXPECT_TRUE(stub->ListConnections(&context, {}, &response).ok());
    return response;
  }

  std::string Logs() {
    std::string logs;
    for (int i = 0; i < kReplicas; ++i) {
      if (services_[i]) absl::StrAppend(&logs, "--- replica ", i, "\n", services_[i]->Log());
    }
    return logs;
  }

  std::vector<int> grpc_ports_;
  std::vector<int> metrics_ports_;
  std::string peers_;
  int starts_ = 0;
  std::vector<std::unique_ptr<Subprocess>> services_;
};

TEST_F(QueryFanoutIntegrationTest, AnyReplicaAnswersForTheFleetAndSaysWhenPartial) {
  const uint64_t base = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now() - absl::Minutes(1)));
  // Event times interleave across replicas, so that the last N come from several.
  const std::vector<HostPlan> plans = {
      {"h1-a", 0, 1, {base + 1, base + 11, base + 21}},
      {"h1-b", 0, 2, {base + 5}},
      {"h2-a", 1, 1, {base + 2, base + 12, base + 30, base + 31}},
      {"h3-a", 2, 1, {base + 3, base + 13}},
      {"h3-b", 2, 2, {base + 4, base + 14, base + 24}},
      {"h3-c", 2, 3, {base + 25}},
  };
  const uint64_t snapshot_ns = base + 100;
  std::map<std::string, std::unique_ptr<FakeAgent>> agents;
  auto connect = [&](const HostPlan& plan) {
    auto agent =
        FakeAgent::Connect(grpc_ports_[plan.replica], plan.host, {BatchOf(plan, 1, snapshot_ns)});
    ASSERT_TRUE(agent.ok()) << agent.status() << Logs();
    agents[plan.host] = std::move(*agent);
  };
  for (const HostPlan& plan : plans) connect(plan);
  // A host that moved: 2 events applied by replica 0 (its old home, now disconnected), then 3
  // by replica 1.
  const HostPlan mover_before = {"mover", 0, 9, {base + 6, base + 7}};
  const HostPlan mover_after = {"mover", 1, 9, {base + 40, base + 41, base + 42}};
  {
    auto old_home =
        FakeAgent::Connect(grpc_ports_[0], "mover", {BatchOf(mover_before, 1, snapshot_ns)});
    ASSERT_TRUE(old_home.ok()) << old_home.status();
  }
  // Its next snapshot is a later one, as an agent's is: a tuple owner orders the two homes'
  // fragments by snapshot time (their streams are not ordered with each other), and with equal
  // times the old home's, arriving last, was seen to replace the new one's (one end missing).
  auto new_home = FakeAgent::Connect(grpc_ports_[1], "mover",
                                     {BatchOf(mover_after, 2, snapshot_ns + 1'000'000'000)});
  ASSERT_TRUE(new_home.ok()) << new_home.status();

  uint64_t total_events = mover_before.times.size() + mover_after.times.size();
  uint64_t total_ends = mover_after.times.size();
  std::vector<uint64_t> all_times = mover_before.times;
  all_times.insert(all_times.end(), mover_after.times.begin(), mover_after.times.end());
  for (const HostPlan& plan : plans) {
    total_events += plan.times.size();
    total_ends += plan.times.size();
    all_times.insert(all_times.end(), plan.times.begin(), plan.times.end());
  }
  std::sort(all_times.begin(), all_times.end());
  std::vector<uint64_t> newest(all_times.end() - 5, all_times.end());
  const size_t hosts = plans.size() + 1;

  // The replicas' local parts: disjoint, summing to the fleet (the mover's old home keeps its
  // 2 events, and no longer lists its connections).
  // Each end is listed by its tuple's owner, which gets it from the host's home within a
  // replica link's linger (milliseconds): bounded wait for all of them.
  uint64_t local_events = 0;
  int local_connections = 0;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(5);;) {
    local_events = 0;
    local_connections = 0;
    for (int i = 0; i < kReplicas; ++i) {
      local_events += LocalSummary(i).fleet().events();
      local_connections += LocalConnections(i).connections_size();
    }
    if (local_connections == static_cast<int>(total_ends) || absl::Now() > deadline) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(local_events, total_events);
  EXPECT_EQ(local_connections, static_cast<int>(total_ends));

  auto expect_whole_fleet = [&](int replica) {
    SCOPED_TRACE(absl::StrCat("through replica ", replica));
    Cli cli = RunCli(replica, "agents");
    EXPECT_EQ(cli.exit_code, 0) << cli.err;
    EXPECT_EQ(cli.err.find("partial"), std::string::npos) << cli.err;
    const auto listed = Parse<v1::ListAgentsResponse>(cli.out);
    ASSERT_EQ(listed.agents_size(), static_cast<int>(hosts)) << cli.out;
    for (const v1::Agent& agent : listed.agents()) {
      EXPECT_TRUE(agent.connected()) << agent.host_name();
      if (agent.host_name() == "mover") {
        EXPECT_EQ(agent.events(), 5u);
      }
    }

    cli = RunCli(replica, "summary");
    EXPECT_EQ(cli.exit_code, 0) << cli.err;
    const auto summary = Parse<v1::SummaryResponse>(cli.out);
    EXPECT_EQ(summary.fleet().agents(), hosts);
    EXPECT_EQ(summary.fleet().agents_connected(), hosts);
    EXPECT_EQ(summary.fleet().events(), total_events);
    EXPECT_EQ(summary.fleet().handshakes(), total_events);
    ASSERT_EQ(summary.fleet().connections_by_state_size(), 1);
    EXPECT_EQ(summary.fleet().connections_by_state(0).name(), "established");
    EXPECT_EQ(summary.fleet().connections_by_state(0).value(), total_ends);
    EXPECT_EQ(summary.hosts_size(), static_cast<int>(hosts));
    EXPECT_EQ(summary.history_events(), total_events);
    EXPECT_EQ(summary.history_oldest_unix_ns(), base + 1);

    cli = RunCli(replica, "connections");
    EXPECT_EQ(cli.exit_code, 0) << cli.err;
    const auto connections = Parse<v1::ListConnectionsResponse>(cli.out);
    EXPECT_EQ(connections.connections_size(), static_cast<int>(total_ends));
    for (int i = 1; i < connections.connections_size(); ++i) {
      EXPECT_LE(connections.connections(i - 1).host(), connections.connections(i).host());
    }

    cli = RunCli(replica, "events --last=5");
    EXPECT_EQ(cli.exit_code, 0) << cli.err;
    std::vector<uint64_t> times;
    for (absl::string_view line : absl::StrSplit(cli.out, '\n', absl::SkipEmpty())) {
      times.push_back(Parse<v1::HostEvent>(std::string(line)).event().time_unix_ns());
    }
    EXPECT_EQ(times, newest);
  };
  for (int i = 0; i < kReplicas; ++i) expect_whole_fleet(i);

  // Following through replica 0: the fleet's last 2, then live events from hosts on other
  // replicas.
  auto follower =
      Subprocess::Start({BinaryPath("tcpscope"), "events", "--follow", "--last=2", "-o", "json",
                         absl::StrCat("--service=", Replica(0))},
                        absl::StrCat(::testing::TempDir(), "/fanout-follow-", getpid(), ".log"));
  ASSERT_TRUE(follower.ok()) << follower.status();
  auto wait_for_log = [&](const std::string& text) {
    const absl::Time until = absl::Now() + absl::Seconds(10);
    while ((*follower)->Log().find(text) == std::string::npos && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    return (*follower)->Log().find(text) != std::string::npos;
  };
  const auto time_text = [](uint64_t ns) { return absl::StrCat("\"time_unix_ns\":\"", ns, "\""); };
  EXPECT_TRUE(wait_for_log(time_text(base + 42))) << (*follower)->Log();
  // History and live events meet once every replica gave its history: a live event now is
  // after it.
  absl::SleepFor(absl::Milliseconds(500));
  v1::Batch live_two = BatchOf({"h2-a", 1, 1, {base + 50}}, 2, snapshot_ns);
  live_two.clear_snapshot();
  ASSERT_TRUE(agents["h2-a"]->Send(live_two).ok());
  v1::Batch live_three = BatchOf({"h3-a", 2, 1, {base + 51}}, 2, snapshot_ns);
  live_three.clear_snapshot();
  ASSERT_TRUE(agents["h3-a"]->Send(live_three).ok());
  EXPECT_TRUE(wait_for_log(time_text(base + 50))) << (*follower)->Log();
  EXPECT_TRUE(wait_for_log(time_text(base + 51))) << (*follower)->Log();
  EXPECT_EQ((*follower)->Log().find(time_text(base + 40)), std::string::npos);  // only the last 2
  EXPECT_NE((*follower)->Log().find(time_text(base + 41)), std::string::npos);
  // Replica 2's history dies with it (h3-a's live event); replica 1's stays.
  total_events += 1;
  newest = {base + 31, base + 40, base + 41, base + 42, base + 50};

  // Replica 2 dies: through replica 0, the answer misses its hosts and says so.
  services_[2]->Kill();
  const std::string dead = Replica(2);
  for (const char* command : {"agents", "summary", "connections", "events --last=5"}) {
    SCOPED_TRACE(command);
    const Cli cli = RunCli(0, command);
    EXPECT_EQ(cli.exit_code, kExitPartial) << cli.err;
    EXPECT_NE(cli.err.find(absl::StrCat("tcpscope: partial answer: replica ", dead,
                                        " did not answer (UNAVAILABLE")),
              std::string::npos)
        << cli.err;
  }
  EXPECT_TRUE(wait_for_log(absl::StrCat("tcpscope: partial answer: replica ", dead)))
      << (*follower)->Log();
  const int follower_status = (*follower)->Stop();
  EXPECT_TRUE(WIFEXITED(follower_status) && WEXITSTATUS(follower_status) == kExitPartial)
      << follower_status << (*follower)->Log();

  const Cli partial = RunCli(1, "summary");
  EXPECT_EQ(partial.exit_code, kExitPartial) << partial.err;
  const auto summary = Parse<v1::SummaryResponse>(partial.out);
  EXPECT_EQ(summary.fleet().agents(), 4u);  // h1-a, h1-b, h2-a, mover
  EXPECT_EQ(summary.fleet().events(), 3u + 1 + 4 + 1 + 5);
  ASSERT_EQ(summary.unanswered_replicas_size(), 1);
  EXPECT_EQ(summary.unanswered_replicas(0).replica(), dead);
  const std::string metrics = HttpGet("127.0.0.1", metrics_ports_[0], "/metrics").value_or("");
  for (const char* rpc : {"ListAgents", "Summary", "ListConnections"}) {
    EXPECT_EQ(MetricValue(metrics, "tcpscope_service_partial_answers_total", {{"rpc", rpc}}), 1)
        << rpc;
  }
  // The followed stream and `events --last=5`.
  EXPECT_EQ(MetricValue(metrics, "tcpscope_service_partial_answers_total", {{"rpc", "GetEvents"}}),
            2);

  // Back, with its hosts: whole again once the peers reconnected (their backoff is at most 1 s).
  for (const HostPlan& plan : plans) {
    if (plan.replica == 2) agents.erase(plan.host);
  }
  const absl::Status restarted = StartReplica(2);
  ASSERT_TRUE(restarted.ok()) << restarted << "\n" << Logs();
  ASSERT_TRUE(AwaitRing().ok()) << Logs();
  for (const HostPlan& plan : plans) {
    if (plan.replica == 2) connect(plan);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  Cli cli = RunCli(0, "summary");
  while (cli.exit_code != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
    cli = RunCli(0, "summary");
  }
  // The restarted replica owns its tuples again once the others see it back (their next ping)
  // and send it their hosts' ends: until then a listing lacks those.
  for (Cli listing = RunCli(0, "connections");
       Parse<v1::ListConnectionsResponse>(listing.out).connections_size() !=
           static_cast<int>(total_ends) &&
       absl::Now() < deadline;
       listing = RunCli(0, "connections")) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_EQ(cli.exit_code, 0) << cli.err << Logs();
  const auto whole = Parse<v1::SummaryResponse>(cli.out);
  EXPECT_EQ(whole.fleet().agents(), hosts);
  EXPECT_EQ(whole.fleet().events(), total_events);
  EXPECT_TRUE(whole.unanswered_replicas().empty());
  for (int i = 0; i < kReplicas; ++i) expect_whole_fleet(i);
  if (HasFailure()) ADD_FAILURE() << Logs();
}

}  // namespace
}  // namespace tcpscope::testing
