// Half-open connections end to end: the service pairs the two ends of a connection reported by
// two agents and says when one end is ESTABLISHED while the other is gone: its host rebooted
// (namespace B replaced, agent back with a new boot id), its end closed with the FIN lost (B's
// packets to A blackholed), or its host went silent (agent killed, B blackholed). And, under
// 1000 healthy connections and a minute of churn, never says so wrongly. Two hosts (namespaces
// made by the test), an eBPF agent each, one service; and the same findings with a tier of three
// replicas, A's agent homed on the first, B's on the second and the connection's tuple owned by
// the third, so that the ends meet and the finding goes home across replicas. Needs root and
// eBPF.
#include <netinet/in.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/rendezvous.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "service/pair_index.h"
#include "tcpscope/v1/observer.grpc.pb.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/process.h"
#include "tests/harness/two_host_test.h"

namespace tcpscope::testing {
namespace {

constexpr const char* kA = kHostA;
constexpr const char* kB = kHostB;

constexpr absl::Duration kSnapshot = absl::Seconds(1);
constexpr absl::Duration kGrace = absl::Seconds(1);
constexpr absl::Duration kPeerDownAfter = absl::Seconds(5);
// From the deciding snapshot to the event in the watcher's output: a batch flush, the service,
// the CLI, and this test's 20 ms polling.
constexpr absl::Duration kDelivery = absl::Milliseconds(500);
// How long an idle connection without keepalive survives its peer's loss unnoticed on Linux at
// best: tcp_keepalive_time 7200 s + tcp_keepalive_probes 9 x tcp_keepalive_intvl 75 s, and only
// once an application has turned SO_KEEPALIVE on. Without it, forever.
constexpr absl::Duration kDefaultKeepaliveDetection = absl::Seconds(7200 + 9 * 75);

const char* const kReasons[] = {"peer_closed", "peer_rebooted", "peer_host_down"};

uint64_t Cookie(int fd) {
  uint64_t cookie = 0;
  socklen_t length = sizeof(cookie);
  EXPECT_EQ(getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &length), 0) << strerror(errno);
  return cookie;
}

std::string Seconds(absl::Duration d) { return absl::StrCat(absl::ToDoubleSeconds(d), " s"); }

struct Seen {
  v1::HostEvent event;
  absl::Time arrival;  // when this test found it in the watcher's output
};

class HalfOpenTest : public TwoHostTest {
 protected:
  static std::vector<std::string> AgentFlags() {
    return {"--source=ebpf", absl::StrCat("--snapshot_interval=", absl::FormatDuration(kSnapshot)),
            "--max_reconnect_backoff=300ms"};
  }

  void StartWith(std::vector<std::string> service_flags) {
    service_flags.push_back(absl::StrCat("--half_open_grace=", absl::FormatDuration(kGrace)));
    ASSERT_NO_FATAL_FAILURE(Start(AgentFlags(), service_flags, /*through_proxy=*/false, replicas_));
    ASSERT_TRUE(stack_->WatchEvents().ok());
  }

  // With three replicas: whether the tuple of A's end `client_fd` belongs to the third replica,
  // neither A's home nor B's, so that the two ends and the finding cross replicas.
  bool OwnedByThirdReplica(int client_fd) {
    if (replicas_ < 3) return true;
    sockaddr_in local{}, remote{};
    socklen_t length = sizeof(local);
    EXPECT_EQ(getsockname(client_fd, reinterpret_cast<sockaddr*>(&local), &length), 0);
    length = sizeof(remote);
    EXPECT_EQ(getpeername(client_fd, reinterpret_cast<sockaddr*>(&remote), &length), 0);
    const std::optional<uint64_t> route = service::TupleRouteHash(
        {reinterpret_cast<const char*>(&local.sin_addr), 4}, ntohs(local.sin_port),
        {reinterpret_cast<const char*>(&remote.sin_addr), 4}, ntohs(remote.sin_port));
    if (!route.has_value()) return false;
    const RendezvousSet ring(replica_addresses());
    return ring.members()[ring.Owner(*route)] == replica_addresses()[2];
  }

  // OneConnection(), with three replicas one whose tuple the third replica owns (others are
  // closed again).
  std::pair<int, int> ConnectionAcrossReplicas() {
    for (int attempt = 0; attempt < 64; ++attempt) {
      auto [client, server] = OneConnection();
      if (client < 0 || OwnedByThirdReplica(client)) return {client, server};
      CloseFd(client);
      CloseFd(server);
    }
    ADD_FAILURE() << "no connection of 64 had its tuple on the third replica";
    return {-1, -1};
  }

  // Made on first use: case 2 forks before it, and a child must not inherit gRPC's threads.
  v1::Observer::Stub& Stub() {
    if (!stub_) {
      stub_ = v1::Observer::NewStub(grpc::CreateChannel(
          absl::StrCat("127.0.0.1:", stack_->grpc_port()), grpc::InsecureChannelCredentials()));
    }
    return *stub_;
  }

  std::vector<v1::HostConnection> ListConnections(const v1::ListConnectionsRequest& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListConnectionsResponse response;
    const grpc::Status status = Stub().ListConnections(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.connections().begin(), response.connections().end()};
  }

  // The half_open events in the service's history (GetEvents, kinds = [HALF_OPEN]).
  std::vector<v1::HostEvent> HalfOpenHistory() {
    v1::GetEventsRequest request;
    request.mutable_filter()->add_kinds(v1::EVENT_KIND_HALF_OPEN);
    request.set_last(1000);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    std::unique_ptr<grpc::ClientReader<v1::GetEventsResponse>> reader =
        Stub().GetEvents(&context, request);
    std::vector<v1::HostEvent> events;
    v1::GetEventsResponse response;
    while (reader->Read(&response)) {
      events.insert(events.end(), response.events().begin(), response.events().end());
    }
    const grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return events;
  }

  // The half_open events `tcpscope events --follow` printed so far.
  std::vector<v1::HostEvent> WatchedHalfOpen() const {
    std::vector<v1::HostEvent> events;
    for (v1::HostEvent& event : stack_->WatchedEvents()) {
      if (event.event().has_half_open()) events.push_back(std::move(event));
    }
    return events;
  }

  // The first half_open event the watcher prints within `timeout`.
  std::optional<Seen> AwaitHalfOpen(absl::Duration timeout) const {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      std::vector<v1::HostEvent> events = WatchedHalfOpen();
      if (!events.empty()) return Seen{std::move(events.front()), absl::Now()};
      if (absl::Now() > deadline) return std::nullopt;
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  // Waits until the service holds both ends of the connection to B's `server_port` whose client
  // end is `client_id`: A's from host-a's snapshot, B's from host-b's. Pairing happens there.
  void AwaitBothEnds(uint64_t client_id, int server_port) {
    v1::ListConnectionsRequest request;
    request.set_port(server_port);
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    bool a_end = false, b_end = false;
    std::vector<v1::HostConnection> ends;
    while (!(a_end && b_end) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(100));
      ends = ListConnections(request);
      a_end = b_end = false;
      for (const v1::HostConnection& end : ends) {
        const v1::Connection& c = end.connection();
        if (c.state() != v1::TCP_STATE_ESTABLISHED) continue;
        a_end |= end.host() == kA && c.connection_id() == client_id;
        b_end |=
            end.host() == kB && c.endpoints().local_port() == static_cast<uint32_t>(server_port);
      }
    }
    ASSERT_TRUE(a_end && b_end) << "the service did not see both ends established within 10 s";
    for (const v1::HostConnection& end : ends) {
      if (end.connection().state() != v1::TCP_STATE_ESTABLISHED) continue;
      EXPECT_EQ(end.pairing(), v1::PAIRING_PAIRED) << end.ShortDebugString();
      EXPECT_EQ(end.half_open(), v1::HALF_OPEN_REASON_UNSPECIFIED) << end.ShortDebugString();
    }
  }

  // Established sockets with local port `port` in namespace A, as `ss` (the kernel) shows them.
  int EstablishedInA(int port) {
    const CommandResult ss =
        RunCommand(absl::StrCat("ip netns exec ", network_->a().name(),
                                " ss -Htn state established '( sport = :", port, " )'"));
    EXPECT_EQ(ss.exit_code, 0) << ss.output;
    int lines = 0;
    for (absl::string_view line : absl::StrSplit(ss.output, '\n', absl::SkipWhitespace())) {
      (void)line;
      ++lines;
    }
    return lines;
  }

  // tcpscope_connections_half_open of `host` (at its home): `count` for `reason`, 0 for the
  // others.
  void ExpectGauges(const std::string& host, const std::string& reason, double count) {
    const std::string m = HomeOf(host).Scrape();
    for (const char* r : kReasons) {
      EXPECT_EQ(MetricValue(m, "tcpscope_connections_half_open", {{"host", host}, {"reason", r}}),
                r == reason ? count : 0)
          << host << " " << r;
    }
  }

  // The one half-open event this test expects, on A's client end `client_fd` of the connection
  // to B's listen_port_, for `reason`.
  void ExpectEventOnAClientEnd(const v1::HostEvent& seen, int client_fd,
                               v1::HalfOpenReason reason) {
    const v1::Event& event = seen.event();
    EXPECT_EQ(seen.host(), kA);
    EXPECT_EQ(event.connection_id(), Cookie(client_fd));
    EXPECT_EQ(event.endpoints().local_port(), static_cast<uint32_t>(*LocalPort(client_fd)));
    EXPECT_EQ(event.endpoints().remote_port(), static_cast<uint32_t>(listen_port_));
    EXPECT_EQ(event.role(), v1::ROLE_CLIENT);
    EXPECT_EQ(event.half_open().reason(), reason);
    EXPECT_EQ(event.half_open().peer_host(), kB);
    EXPECT_NE(event.half_open().peer_connection_id(), 0u);
    EXPECT_GT(event.half_open().peer_lost_unix_ns(), 0u);
    EXPECT_LE(event.half_open().peer_lost_unix_ns(), event.time_unix_ns());
  }

  // After a detection: still exactly that one event, in the watcher and in the history.
  void ExpectOnlyThatEvent(const Seen& seen) {
    absl::SleepFor(2 * kSnapshot);  // a repeat would show by now
    const std::vector<v1::HostEvent> watched = WatchedHalfOpen();
    EXPECT_EQ(watched.size(), 1u);
    for (const v1::HostEvent& e : watched) std::cerr << "watched: " << e.ShortDebugString() << "\n";
    const std::vector<v1::HostEvent> history = HalfOpenHistory();
    ASSERT_EQ(history.size(), 1u);
    EXPECT_EQ(history[0].host(), seen.event.host());
    EXPECT_EQ(history[0].event().connection_id(), seen.event.event().connection_id());
    EXPECT_EQ(history[0].event().half_open().reason(), seen.event.event().half_open().reason());
  }

  // The survivor's end as ListConnections(half_open) shows it.
  void ExpectListedHalfOpen(int client_fd, v1::HalfOpenReason reason) {
    v1::ListConnectionsRequest request;
    request.set_half_open(true);
    const std::vector<v1::HostConnection> listed = ListConnections(request);
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0].host(), kA);
    EXPECT_EQ(listed[0].connection().connection_id(), Cookie(client_fd));
    EXPECT_EQ(listed[0].half_open(), reason);
    EXPECT_EQ(listed[0].pairing(), v1::PAIRING_PAIRED);
  }

  // B's server end dies while its packets to A are lost (below).
  void PeerClosed(bool unread_byte);

  std::unique_ptr<v1::Observer::Stub> stub_;
  int replicas_ = 1;
};

// The findings with one service, and with a tier of three replicas (A's agent homed on the
// first, B's on the second, the connection's tuple owned by the third).
class HalfOpenAcrossReplicasTest : public HalfOpenTest, public ::testing::WithParamInterface<int> {
 protected:
  void SetUp() override {
    HalfOpenTest::SetUp();
    replicas_ = GetParam();
  }
};

// B's host reboots under an idle connection: nothing reaches A, whose kernel keeps the end
// established forever (no keepalive). The service learns it from B's new boot id and B's first
// snapshot without the connection.
TEST_P(HalfOpenAcrossReplicasTest, PeerRebootIsFoundWithinTwoSnapshotIntervals) {
  ASSERT_NO_FATAL_FAILURE(StartWith({}));
  auto [client, server] = ConnectionAcrossReplicas();
  ASSERT_GE(client, 0);
  const int client_port = *LocalPort(client);
  ASSERT_NO_FATAL_FAILURE(AwaitBothEnds(Cookie(client), listen_port_));

  HomeOf(kB).agent(kB).Kill();
  // B's end stays open in the test until the old B is cut off (RebootB deletes the veth pair
  // first), so no FIN or RST of it can reach A; A sends nothing (no data, no keepalive).
  ASSERT_TRUE(network_->RebootB().ok());
  CloseFd(server);  // its FIN has no way out of the old B
  CloseFd(listener_);

  const absl::Time restart = absl::Now();
  ASSERT_TRUE(HomeOf(kB).AddAgent(kB, network_->b().path(), AgentFlags()).ok());
  // The new agent needs a moment to load eBPF and send its first snapshot (~1 s here).
  const std::optional<Seen> seen = AwaitHalfOpen(absl::Seconds(5) + kGrace + 2 * kSnapshot);
  ASSERT_TRUE(seen.has_value()) << "no half_open event within "
                                << absl::Seconds(5) + kGrace + 2 * kSnapshot
                                << " of the new B agent's start\n"
                                << stack_->WatcherLog();
  ExpectEventOnAClientEnd(seen->event, client, v1::HALF_OPEN_PEER_REBOOTED);

  // peer_lost is the new B agent's first snapshot: the agent's start, as the service sees it.
  const v1::Event& event = seen->event.event();
  const absl::Time peer_lost = absl::FromUnixNanos(event.half_open().peer_lost_unix_ns());
  const absl::Time detected = absl::FromUnixNanos(event.time_unix_ns());
  EXPECT_GE(peer_lost, restart);
  // A's first snapshot past the grace decides: at most grace + one interval after the loss.
  EXPECT_LE(detected - peer_lost, kGrace + kSnapshot + kDelivery);
  EXPECT_LE(seen->arrival - peer_lost, kGrace + kSnapshot + kDelivery);
  EXPECT_LE(detected, seen->arrival + absl::Milliseconds(50));
  const absl::Duration found_after = seen->arrival - restart;
  std::cerr << "peer_rebooted: B's agent restarted; its first snapshot after "
            << Seconds(peer_lost - restart) << ", event time after " << Seconds(detected - restart)
            << ", in the watcher after " << Seconds(found_after) << " ("
            << Seconds(seen->arrival - peer_lost) << " after the first snapshot). Linux's "
            << "default keepalive (if enabled at all) would take "
            << Seconds(kDefaultKeepaliveDetection) << ": "
            << absl::FDivDuration(kDefaultKeepaliveDetection, found_after) << " times longer\n";

  ASSERT_NO_FATAL_FAILURE(ExpectOnlyThatEvent(*seen));
  EXPECT_EQ(EstablishedInA(client_port), 1) << "A's kernel no longer holds the connection";
  ExpectGauges(kA, "peer_rebooted", 1);
  ExpectGauges(kB, "", 0);
  ExpectListedHalfOpen(client, v1::HALF_OPEN_PEER_REBOOTED);

  // A closes: its FIN meets the new B's RST, the end leaves A's snapshots, the state clears.
  CloseFd(client);
  EXPECT_EQ(
      stack_->WaitForValue("tcpscope_connections_half_open",
                           {{"host", kA}, {"reason", "peer_rebooted"}}, 0, kGrace + 3 * kSnapshot),
      0);
  ExpectGauges(kA, "", 0);
  EXPECT_EQ(MetricValue(stack_->Scrape(), "tcpscope_half_open_detected_total",
                        {{"host", kA}, {"reason", "peer_rebooted"}}),
            1);
}

// B's server process dies while B's packets to A are lost. With nothing unread, B's end sends
// its FIN in vain (FIN_WAIT1, retransmitting): B's next snapshot shows it, dated by the eBPF
// program to the FIN itself. With a byte left unread, B's kernel answers the close with a RST
// (lost too), and B's close event dates the loss. Either way the loss is dated at the kill, and
// A's first snapshot at least the grace after it, once B's snapshot or event is in, decides:
// within two snapshot intervals (grace = interval here).
void HalfOpenTest::PeerClosed(bool unread_byte) {
  ASSERT_NO_FATAL_FAILURE(StartWith({}));
  const int port = ListenOnB(network_->b_ipv4());
  absl::StatusOr<int> client;
  absl::StatusOr<int> accepted;
  for (int attempt = 0; attempt < 64; ++attempt) {
    client = ConnectFrom(network_->a(), network_->b_ipv4(), port);
    ASSERT_TRUE(client.ok()) << client.status();
    accepted = AcceptOne(listener_);
    ASSERT_TRUE(accepted.ok()) << accepted.status();
    if (OwnedByThirdReplica(*client)) break;
    close(*client);
    close(*accepted);
  }
  ASSERT_TRUE(OwnedByThirdReplica(*client)) << "no connection of 64 had its tuple there";
  Keep(*client);
  const int client_port = *LocalPort(*client);
  if (unread_byte) {
    ASSERT_EQ(send(*client, "x", 1, 0), 1) << strerror(errno);
    int queued = 0;
    for (int i = 0; i < 100 && queued == 0; ++i) {
      ASSERT_EQ(ioctl(*accepted, FIONREAD, &queued), 0) << strerror(errno);
      if (queued == 0) absl::SleepFor(absl::Milliseconds(10));
    }
    ASSERT_EQ(queued, 1) << "the byte did not reach B";
  }
  // B's end belongs to a server process of its own, which the test kills uncleanly.
  const pid_t server = fork();
  ASSERT_GE(server, 0) << strerror(errno);
  if (server == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    while (true) pause();
  }
  close(*accepted);  // the server process's copy is the only one left
  ASSERT_NO_FATAL_FAILURE(AwaitBothEnds(Cookie(*client), port));

  ASSERT_TRUE(network_->BlackholeFromB(network_->a_ipv4()).ok());
  const absl::Time killed = absl::Now();
  ASSERT_EQ(kill(server, SIGKILL), 0);
  ASSERT_EQ(waitpid(server, nullptr, 0), server);

  const std::optional<Seen> seen = AwaitHalfOpen(kGrace + 2 * kSnapshot + absl::Seconds(3));
  ASSERT_TRUE(seen.has_value()) << "no half_open event within "
                                << kGrace + 2 * kSnapshot + absl::Seconds(3) << " of the kill\n"
                                << stack_->WatcherLog();
  ExpectEventOnAClientEnd(seen->event, *client, v1::HALF_OPEN_PEER_CLOSED);
  const v1::Event& event = seen->event.event();
  const absl::Time peer_lost = absl::FromUnixNanos(event.half_open().peer_lost_unix_ns());
  EXPECT_GE(peer_lost, killed);
  EXPECT_LE(peer_lost - killed, absl::Milliseconds(100));
  EXPECT_LE(seen->arrival - killed, kGrace + kSnapshot + kDelivery);
  EXPECT_EQ(event.half_open().peer_last_state(),
            unread_byte ? v1::TCP_STATE_ESTABLISHED : v1::TCP_STATE_FIN_WAIT1);
  std::cerr << "peer_closed (" << (unread_byte ? "RST" : "FIN") << " lost): B's end lost "
            << Seconds(peer_lost - killed) << " after the kill; event time "
            << Seconds(absl::FromUnixNanos(event.time_unix_ns()) - killed) << ", in the watcher "
            << Seconds(seen->arrival - killed) << " after it; last state "
            << v1::TcpState_Name(event.half_open().peer_last_state()) << "\n";

  ASSERT_NO_FATAL_FAILURE(ExpectOnlyThatEvent(*seen));
  EXPECT_EQ(EstablishedInA(client_port), 1) << "A's kernel no longer holds the connection";
  ExpectGauges(kA, "peer_closed", 1);
  ExpectGauges(kB, "", 0);
  ExpectListedHalfOpen(*client, v1::HALF_OPEN_PEER_CLOSED);
  EXPECT_EQ(MetricValue(stack_->Scrape(), "tcpscope_half_open_detected_total",
                        {{"host", kA}, {"reason", "peer_closed"}}),
            1);
}

TEST_P(HalfOpenAcrossReplicasTest, PeerClosedWithItsFinLostIsFoundWithinTwoSnapshotIntervals) {
  PeerClosed(/*unread_byte=*/false);
}

TEST_P(HalfOpenAcrossReplicasTest, PeerClosedWithItsRstLostIsFoundWithinTwoSnapshotIntervals) {
  PeerClosed(/*unread_byte=*/true);
}

// B's host goes down: its agent dies (SIGKILL) and B answers nothing. After --peer_down_after of
// silence, A's established end to B is half-open.
TEST_P(HalfOpenAcrossReplicasTest, PeerHostDownIsFoundAfterPeerDownAfter) {
  ASSERT_NO_FATAL_FAILURE(
      StartWith({absl::StrCat("--peer_down_after=", absl::FormatDuration(kPeerDownAfter))}));
  auto [client, server] = ConnectionAcrossReplicas();
  ASSERT_GE(client, 0);
  const int client_port = *LocalPort(client);
  ASSERT_NO_FATAL_FAILURE(AwaitBothEnds(Cookie(client), listen_port_));

  HomeOf(kB).agent(kB).Kill();  // returns once the agent is dead and reaped
  const absl::Time died = absl::Now();
  ASSERT_TRUE(network_->BlackholeFromB(network_->a_ipv4()).ok());

  const absl::Duration timeout = kPeerDownAfter + 2 * kSnapshot + absl::Seconds(3);
  const std::optional<Seen> seen = AwaitHalfOpen(timeout);
  ASSERT_TRUE(seen.has_value()) << "no half_open event within " << timeout
                                << " of B's agent's death\n"
                                << stack_->WatcherLog();
  ExpectEventOnAClientEnd(seen->event, client, v1::HALF_OPEN_PEER_HOST_DOWN);
  const v1::Event& event = seen->event.event();
  // peer_lost is when the service last heard from B's agent: before its death by at most a
  // snapshot interval (the agent sends at least a snapshot per interval), or just after it when
  // the service counts the stream's end (the kernel closing the dead agent's socket).
  const absl::Time last_message = absl::FromUnixNanos(event.half_open().peer_lost_unix_ns());
  const absl::Time detected = absl::FromUnixNanos(event.time_unix_ns());
  EXPECT_LE(last_message, died + absl::Milliseconds(100));
  EXPECT_LE(died - last_message, kSnapshot + kDelivery);
  EXPECT_GE(detected - last_message, kPeerDownAfter);
  EXPECT_GE(seen->arrival - died, kPeerDownAfter - kSnapshot - kDelivery);
  EXPECT_LE(seen->arrival - died, kPeerDownAfter + 2 * kSnapshot + kDelivery);
  std::cerr << "peer_host_down (--peer_down_after=" << kPeerDownAfter << "): B's last message "
            << Seconds(died - last_message) << " before its agent's death; event time "
            << Seconds(detected - died) << " and in the watcher " << Seconds(seen->arrival - died)
            << " after the death (" << Seconds(detected - last_message)
            << " after the last message)\n";

  ASSERT_NO_FATAL_FAILURE(ExpectOnlyThatEvent(*seen));
  EXPECT_EQ(EstablishedInA(client_port), 1) << "A's kernel no longer holds the connection";
  ExpectGauges(kA, "peer_host_down", 1);
  ExpectListedHalfOpen(client, v1::HALF_OPEN_PEER_HOST_DOWN);
}

INSTANTIATE_TEST_SUITE_P(Tier, HalfOpenAcrossReplicasTest, ::testing::Values(1, 3),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == 1 ? std::string("OneService")
                                                  : absl::StrCat(info.param, "Replicas");
                         });

// One short connection of the churn: opened, held `lifetime`, then closed by one side first
// (FIN), the other closing on seeing EOF.
struct ChurnConnection {
  int client = -1;
  int server = -1;
  absl::Time close_at;
  bool client_first = true;
};

void CloseChurn(const ChurnConnection& c) {
  const int first = c.client_first ? c.client : c.server;
  const int second = c.client_first ? c.server : c.client;
  close(first);
  AwaitEof(second);
  close(second);
}

// 1000 healthy idle connections (keepalive off) and a minute of churn beside them, snapshots
// every second: not one half-open verdict, and every long-lived connection paired exactly once.
TEST_F(HalfOpenTest, NoFalsePositivesAmongAThousandConnectionsAndAMinuteOfChurn) {
  ASSERT_NO_FATAL_FAILURE(StartWith({}));
  constexpr int kLongLived = 1000;
  constexpr int kListeners = 4;
  constexpr absl::Duration kChurnFor = absl::Seconds(60);

  std::vector<int> listeners;
  std::vector<int> listen_ports;
  for (int i = 0; i < kListeners; ++i) {
    absl::StatusOr<int> listener = ListenIn(network_->b(), network_->b_ipv4(), 0);
    ASSERT_TRUE(listener.ok()) << listener.status();
    listeners.push_back(Keep(*listener));
    listen_ports.push_back(*LocalPort(*listener));
  }
  std::set<uint32_t> long_client_ports;
  for (int i = 0; i < kLongLived; ++i) {
    const int index = i % kListeners;
    absl::StatusOr<int> client =
        ConnectFrom(network_->a(), network_->b_ipv4(), listen_ports[index]);
    ASSERT_TRUE(client.ok()) << i << ": " << client.status();
    Keep(*client);
    absl::StatusOr<int> server = AcceptOne(listeners[index]);
    ASSERT_TRUE(server.ok()) << i << ": " << server.status();
    Keep(*server);
    long_client_ports.insert(*LocalPort(*client));
  }

  // Churn on a listener of its own: a new connection every 20 ms, each held 0 to 1.5 s (across
  // snapshots and the grace), closed client-first or server-first in turn. Server-first closes
  // leave B's end in TIME_WAIT (60 s, in B's snapshots) while A may reuse the port at once, and
  // B accepts a SYN on a TIME_WAIT tuple: new connections reuse the tuples of closed ones, so
  // pairing on addresses must tell a tuple's connections apart (cookies, first_seen).
  absl::StatusOr<int> churn_listener = ListenIn(network_->b(), network_->b_ipv4(), 0);
  ASSERT_TRUE(churn_listener.ok()) << churn_listener.status();
  Keep(*churn_listener);
  const int churn_port = *LocalPort(*churn_listener);
  std::vector<ChurnConnection> open;
  int churned = 0;
  const absl::Time churn_end = absl::Now() + kChurnFor;
  while (absl::Now() < churn_end && !HasFatalFailure()) {
    absl::StatusOr<int> client = ConnectFrom(network_->a(), network_->b_ipv4(), churn_port);
    ASSERT_TRUE(client.ok()) << client.status();
    absl::StatusOr<int> server = AcceptOne(*churn_listener);
    ASSERT_TRUE(server.ok()) << server.status();
    open.push_back({*client, *server, absl::Now() + (churned % 16) * absl::Milliseconds(100),
                    churned % 2 == 0});
    ++churned;
    const absl::Time now = absl::Now();
    std::vector<ChurnConnection> still_open;
    for (const ChurnConnection& c : open) {
      if (c.close_at <= now) {
        CloseChurn(c);
      } else {
        still_open.push_back(c);
      }
    }
    open = std::move(still_open);
    absl::SleepFor(absl::Milliseconds(20));
  }
  for (const ChurnConnection& c : open) CloseChurn(c);
  const absl::Time churn_stopped = absl::Now();
  // Every churn end has left ESTABLISHED on both sides; let each agent snapshot that, and the
  // grace pass, before judging.
  absl::SleepFor(kGrace + 2 * kSnapshot + kDelivery);
  std::cerr << "churn: " << churned << " short connections in " << kChurnFor << "\n";

  const std::vector<v1::HostEvent> watched = WatchedHalfOpen();
  EXPECT_EQ(watched.size(), 0u);
  for (size_t i = 0; i < watched.size() && i < 10; ++i) {
    std::cerr << "false positive: " << watched[i].ShortDebugString() << "\n";
  }
  EXPECT_EQ(HalfOpenHistory().size(), 0u);
  ExpectGauges(kA, "", 0);
  ExpectGauges(kB, "", 0);
  const std::string m = stack_->Scrape();
  EXPECT_EQ(MetricSum(m, "tcpscope_half_open_detected_total", {}), 0);

  // Paired and established: exactly the long-lived connections, once each, as A's client end
  // (the client's end represents a pair) with B's server end as its peer.
  v1::ListConnectionsRequest request;
  request.set_paired(true);
  request.set_state(v1::TCP_STATE_ESTABLISHED);
  const std::vector<v1::HostConnection> pairs = ListConnections(request);
  EXPECT_EQ(pairs.size(), static_cast<size_t>(kLongLived));
  std::set<uint32_t> paired_ports;
  int wrong = 0;
  for (const v1::HostConnection& pair : pairs) {
    paired_ports.insert(pair.connection().endpoints().local_port());
    const bool right = pair.host() == kA && pair.connection().role() == v1::ROLE_CLIENT &&
                       pair.pairing() == v1::PAIRING_PAIRED &&
                       pair.half_open() == v1::HALF_OPEN_REASON_UNSPECIFIED &&
                       pair.peer().host() == kB && pair.peer().present() &&
                       pair.peer().connection().state() == v1::TCP_STATE_ESTABLISHED &&
                       pair.peer().connection().endpoints().local_port() ==
                           pair.connection().endpoints().remote_port() &&
                       pair.peer().connection().endpoints().remote_port() ==
                           pair.connection().endpoints().local_port();
    if (!right && ++wrong <= 5) ADD_FAILURE() << "unexpected pair: " << pair.ShortDebugString();
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(paired_ports, long_client_ports);

  // Without the state filter, anything beyond the long-lived pairs can only be churn ends
  // lingering in TIME_WAIT (60 s in Linux, and in the snapshots) beside a peer that is gone or
  // closing: never an end that is established now.
  request.clear_state();
  int churn_leftovers = 0;
  for (const v1::HostConnection& pair : ListConnections(request)) {
    if (long_client_ports.count(pair.connection().endpoints().local_port()) != 0 &&
        pair.host() == kA) {
      continue;
    }
    ++churn_leftovers;
    const bool churn =
        pair.connection().endpoints().local_port() == static_cast<uint32_t>(churn_port) ||
        pair.connection().endpoints().remote_port() == static_cast<uint32_t>(churn_port);
    EXPECT_TRUE(churn) << pair.ShortDebugString();
    EXPECT_NE(pair.connection().state(), v1::TCP_STATE_ESTABLISHED) << pair.ShortDebugString();
    if (pair.peer().present()) {
      EXPECT_NE(pair.peer().connection().state(), v1::TCP_STATE_ESTABLISHED)
          << pair.ShortDebugString();
    }
  }
  // A pair whose ends are both closing or gone is over: once a snapshot of each host has shown
  // it, it is not listed (a lost end is kept only beside an ESTABLISHED one).
  EXPECT_EQ(churn_leftovers, 0);
  // The pairing index holds the ends of the latest snapshots, no more: at least the 2000 ends
  // of the long-lived connections, at most every connection the two hosts report (churn ends
  // still in TIME_WAIT included), give or take the TIME_WAITs that expired in the second
  // between the index's gauge (set each second) and the hosts' latest snapshots.
  const std::string m2 = stack_->Scrape();
  const std::optional<double> index_ends = MetricValue(m2, "tcpscope_service_pair_index_ends", {});
  ASSERT_TRUE(index_ends.has_value());
  EXPECT_GE(*index_ends, 2 * kLongLived);
  EXPECT_LE(*index_ends, MetricSum(m2, "tcpscope_connections", {{"host", kA}}) +
                             MetricSum(m2, "tcpscope_connections", {{"host", kB}}) + 200);
  std::cerr << "paired: " << pairs.size() << " established pairs; " << churn_leftovers
            << " churn pairs still listed (not established) "
            << Seconds(absl::Now() - churn_stopped) << " after the churn stopped\n";
}

}  // namespace
}  // namespace tcpscope::testing
