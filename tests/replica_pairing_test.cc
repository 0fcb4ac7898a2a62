// Pairing across replicas, without a network: two aggregators, each the home of one host, wired
// by an in-memory ReplicaSender. Every connection's two ends meet on the replica owning its tuple
// whichever home each host has; what an owner finds about a host homed elsewhere reaches the
// host's home (its event and gauges); a ring change rebuilds the index from the hosts' views and
// judges nothing half-open in its quiet window; and the split of a snapshot by owner keeps every
// end once, with its origin.
#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "service/aggregator.h"
#include "service/batch_validator.h"
#include "service/fleet_queries.h"
#include "service/fragment_split.h"
#include "tests/harness/metrics_text.h"

namespace tcpscope::service {
namespace {

using testing::MetricValue;

const absl::Time kStart = absl::FromUnixSeconds(1800000000);
constexpr absl::Duration kGrace = absl::Seconds(3);
constexpr int kConnections = 24;
const char* const kReplicas[] = {"10.9.0.1:7700", "10.9.0.2:7700"};

std::string Ip(int last) { return std::string({10, 1, 0, static_cast<char>(last)}); }

// End `i` of the connections between host-a (client, 10.1.0.1) and host-b (server, 10.1.0.2).
v1::Connection End(bool client, int i, v1::TcpState state = v1::TCP_STATE_ESTABLISHED) {
  v1::Connection connection;
  connection.set_connection_id(static_cast<uint64_t>(client ? 1000 + i : 2000 + i));
  connection.set_state(state);
  connection.set_role(client ? v1::ROLE_CLIENT : v1::ROLE_SERVER);
  v1::Endpoints& e = *connection.mutable_endpoints();
  e.set_local_address(Ip(client ? 1 : 2));
  e.set_remote_address(Ip(client ? 2 : 1));
  e.set_local_port(client ? 40000 + i : 80);
  e.set_remote_port(client ? 80 : 40000 + i);
  connection.set_origin_ref(1);
  return connection;
}

v1::Batch SnapshotBatch(uint64_t seq, absl::Time taken, const std::vector<v1::Connection>& ends,
                        const std::string& command) {
  v1::Batch batch;
  batch.set_seq(seq);
  v1::Snapshot& snapshot = *batch.mutable_snapshot();
  snapshot.set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(taken)));
  snapshot.add_origins()->set_command(command);
  for (const v1::Connection& end : ends) *snapshot.add_connections() = end;
  return batch;
}

// One replica: its aggregator and queries, and what it sends, queued until delivered.
struct Replica : ReplicaSender {
  Replica(std::string name, absl::Duration quiet) : address(std::move(name)), ring_quiet(quiet) {}

  void Send(const std::string& replica, v1::ReplicaMessage message) override {
    absl::MutexLock lock(&outbox_mu);
    outbox.emplace_back(replica, std::move(message));
  }
  std::optional<std::pair<std::string, v1::ReplicaMessage>> Next() {
    absl::MutexLock lock(&outbox_mu);
    if (outbox.empty()) return std::nullopt;
    auto next = std::move(outbox.front());
    outbox.pop_front();
    return next;
  }

  std::string Exposition() const {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, metrics.Collect());
    return out.str();
  }

  const std::string address;
  const absl::Duration ring_quiet;
  ServiceMetrics metrics;
  EventLog log{1000};
  Aggregator aggregator{&metrics, &log, Options(ring_quiet)};
  FleetQueries queries{&aggregator};
  absl::Mutex outbox_mu;
  std::deque<std::pair<std::string, v1::ReplicaMessage>> outbox ABSL_GUARDED_BY(outbox_mu);

  static AggregatorOptions Options(absl::Duration quiet) {
    AggregatorOptions options;
    options.half_open.grace = kGrace;
    options.ring_quiet = quiet;
    return options;
  }
};

class ReplicaPairingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* address : kReplicas) {
      replicas_.push_back(std::make_unique<Replica>(address, quiet_));
      replicas_.back()->aggregator.SetReplicaSender(replicas_.back().get());
    }
    SetRing(kStart);
  }

  void SetRing(absl::Time now) {
    SetRingOn(now);
    Deliver(now);
  }
  // Each replica sees a new ring (the same members), without delivering what it sends.
  void SetRingOn(absl::Time now) {
    for (auto& replica : replicas_) {
      replica->aggregator.OnRing(std::make_shared<Ring>(RendezvousSet({kReplicas[0], kReplicas[1]}),
                                                        replica->address, ++epoch_, now),
                                 now);
    }
  }

  // Delivers every queued message (and what they cause) to its replica.
  void Deliver(absl::Time now) {
    for (bool any = true; any;) {
      any = false;
      for (auto& from : replicas_) {
        while (auto next = from->Next()) {
          auto& [to, message] = *next;
          any = true;
          for (auto& replica : replicas_) {
            if (replica->address != to) continue;
            const absl::Status status =
                replica->aggregator.ApplyReplicaMessage(from->address, message, now);
            EXPECT_TRUE(status.ok()) << status;
          }
        }
      }
    }
  }

  // host-a homed on replica 0, host-b on replica 1.
  void ConnectHosts() {
    uint64_t applied = 0;
    for (int i = 0; i < 2; ++i) {
      v1::Hello hello;
      hello.set_host_name(i == 0 ? "host-a" : "host-b");
      hello.set_boot_id("boot-1");
      hello.set_instance_id(7);
      hello.set_source(v1::SOURCE_KIND_SOCK_DIAG);
      auto host = replicas_[i]->aggregator.Connect(hello, kStart, &applied);
      ASSERT_TRUE(host.ok()) << host.status();
      hosts_[i] = *host;
    }
  }

  void Snapshot(int host, absl::Time taken, const std::vector<v1::Connection>& ends) {
    auto batch = std::make_shared<v1::Batch>(
        SnapshotBatch(++seq_[host], taken, ends, host == 0 ? "client" : "server"));
    EXPECT_TRUE(replicas_[host]->aggregator.Apply(*hosts_[host], batch, taken));
    Deliver(taken);
  }

  std::vector<v1::Connection> Ends(bool client, int skip = -1) {
    std::vector<v1::Connection> ends;
    for (int i = 0; i < kConnections; ++i) {
      if (i != skip) ends.push_back(End(client, i));
    }
    return ends;
  }

  // Every end listed by some replica, as (host, connection id) -> its listing.
  std::map<std::pair<std::string, uint64_t>, v1::HostConnection> Listed() {
    std::map<std::pair<std::string, uint64_t>, v1::HostConnection> listed;
    for (auto& replica : replicas_) {
      const v1::ListConnectionsResponse response =
          replica->queries.Connections(v1::ListConnectionsRequest(), kStart);
      for (const v1::HostConnection& entry : response.connections()) {
        const bool added =
            listed.emplace(std::make_pair(entry.host(), entry.connection().connection_id()), entry)
                .second;
        EXPECT_TRUE(added) << "listed twice: " << entry.ShortDebugString();
      }
    }
    return listed;
  }

  // The index of the connection whose tuple `owner` owns (first such).
  int ConnectionOwnedBy(size_t owner) {
    const RendezvousSet ring({kReplicas[0], kReplicas[1]});
    for (int i = 0; i < kConnections; ++i) {
      const std::optional<uint64_t> route = TupleRouteHash(End(true, i).endpoints());
      if (route.has_value() && ring.members()[ring.Owner(*route)] == kReplicas[owner]) return i;
    }
    ADD_FAILURE() << "no connection owned by " << kReplicas[owner];
    return 0;
  }

  absl::Duration quiet_ = absl::ZeroDuration();  // the ring's quiet window
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::shared_ptr<HostState> hosts_[2];
  uint64_t seq_[2] = {0, 0};
  std::atomic<uint64_t> epoch_{0};
};

TEST_F(ReplicaPairingTest, BothEndsMeetOnTheOwnerOfTheirTuple) {
  ASSERT_NO_FATAL_FAILURE(ConnectHosts());
  Snapshot(0, kStart, Ends(true));
  Snapshot(1, kStart, Ends(false));
  size_t pairs = 0, ends = 0;
  for (auto& replica : replicas_) {
    const PairIndex::Stats stats = replica->aggregator.pairs().stats();
    pairs += stats.pairs;
    ends += stats.ends;
    // Each replica holds a part: the hash shares the tuples out.
    EXPECT_GT(stats.pairs, 0u) << replica->address;
    EXPECT_LT(stats.pairs, static_cast<size_t>(kConnections)) << replica->address;
  }
  EXPECT_EQ(pairs, static_cast<size_t>(kConnections));
  EXPECT_EQ(ends, static_cast<size_t>(2 * kConnections));
  const auto listed = Listed();
  ASSERT_EQ(listed.size(), static_cast<size_t>(2 * kConnections));
  for (const auto& [key, entry] : listed) {
    EXPECT_EQ(entry.pairing(), v1::PAIRING_PAIRED) << entry.ShortDebugString();
    EXPECT_EQ(entry.peer().host(), key.first == "host-a" ? "host-b" : "host-a");
    EXPECT_EQ(entry.connection().origin().command(), key.first == "host-a" ? "client" : "server");
  }
  const std::string sent = replicas_[0]->Exposition();
  EXPECT_GT(MetricValue(sent, "tcpscope_service_replica_forwarded_ends_total", {}).value_or(0), 0);
  EXPECT_EQ(MetricValue(sent, "tcpscope_service_replica_remote_hosts", {}), 1);
}

TEST_F(ReplicaPairingTest, AFindingOnAnotherReplicaReachesTheHostsHome) {
  ASSERT_NO_FATAL_FAILURE(ConnectHosts());
  Snapshot(0, kStart, Ends(true));
  Snapshot(1, kStart, Ends(false));
  // B's end of a connection owned by B's home (replica 1) and of one owned by replica 0 vanish;
  // A's ends stay ESTABLISHED past the grace: both findings are A's, at A's home.
  const int on_b_home = ConnectionOwnedBy(1);
  const int on_a_home = ConnectionOwnedBy(0);
  std::vector<v1::Connection> b_ends;
  for (int i = 0; i < kConnections; ++i) {
    if (i != on_b_home && i != on_a_home) b_ends.push_back(End(false, i));
  }
  Snapshot(1, kStart + absl::Seconds(1), b_ends);
  Snapshot(0, kStart + absl::Seconds(1) + kGrace, Ends(true));
  const std::string home = replicas_[0]->Exposition();
  EXPECT_EQ(MetricValue(home, "tcpscope_connections_half_open",
                        {{"host", "host-a"}, {"reason", "peer_closed"}}),
            2);
  EXPECT_EQ(MetricValue(home, "tcpscope_half_open_detected_total",
                        {{"host", "host-a"}, {"reason", "peer_closed"}}),
            2);
  EXPECT_EQ(MetricValue(replicas_[1]->Exposition(), "tcpscope_half_open_detected_total",
                        {{"host", "host-a"}, {"reason", "peer_closed"}}),
            std::nullopt)
      << "host-a's series are its home's only";
  // Both events are in the home's history, each once.
  std::vector<uint64_t> ids;
  for (const auto& published : replicas_[0]->log.Subscribe(nullptr).batches) {
    for (const v1::Event& event : published->batch->events()) {
      if (event.has_half_open()) ids.push_back(event.connection_id());
    }
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids,
            (std::vector<uint64_t>{1000u + static_cast<uint64_t>(std::min(on_a_home, on_b_home)),
                                   1000u + static_cast<uint64_t>(std::max(on_a_home, on_b_home))}));
  // The summary of A's home counts both.
  const v1::SummaryResponse summary = replicas_[0]->queries.Summary("host-a");
  ASSERT_EQ(summary.hosts_size(), 1);
  uint64_t half_open = 0;
  for (const v1::Count& count : summary.hosts(0).half_open()) half_open += count.value();
  EXPECT_EQ(half_open, 2u);
}

TEST_F(ReplicaPairingTest, ARingChangeRebuildsThePairs) {
  ASSERT_NO_FATAL_FAILURE(ConnectHosts());
  Snapshot(0, kStart, Ends(true));
  Snapshot(1, kStart, Ends(false));
  // The ring changes (to the same members: a rebuild all the same): the index is rebuilt from
  // the hosts' current views and every pair is found again.
  SetRing(kStart + absl::Seconds(2));
  size_t pairs = 0;
  for (auto& replica : replicas_) pairs += replica->aggregator.pairs().stats().pairs;
  EXPECT_EQ(pairs, static_cast<size_t>(kConnections));
  EXPECT_EQ(Listed().size(), static_cast<size_t>(2 * kConnections));
}

// Both homes applying snapshots, the replicas' streams delivering, the ring changing and
// queries reading, all at once (run under TSan by the concurrency label): afterwards every
// connection is paired once and listed once.
TEST_F(ReplicaPairingTest, ApplyingDeliveringRebuildingAndQueryingAtOnce) {
  ASSERT_NO_FATAL_FAILURE(ConnectHosts());
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int host = 0; host < 2; ++host) {
    threads.emplace_back([this, host] {
      for (int round = 0; round < 40; ++round) {
        auto batch = std::make_shared<v1::Batch>(
            SnapshotBatch(static_cast<uint64_t>(round + 1), kStart + absl::Seconds(round),
                          Ends(host == 0), host == 0 ? "client" : "server"));
        EXPECT_TRUE(replicas_[host]->aggregator.Apply(*hosts_[host], batch, kStart));
      }
    });
  }
  for (size_t r = 0; r < replicas_.size(); ++r) {
    threads.emplace_back([this, r, &stop] {
      Replica& from = *replicas_[r];
      Replica& to = *replicas_[1 - r];
      while (!stop.load()) {
        if (auto next = from.Next()) {
          EXPECT_TRUE(to.aggregator.ApplyReplicaMessage(from.address, next->second, kStart).ok());
        } else {
          std::this_thread::yield();
        }
      }
    });
  }
  threads.emplace_back([this, &stop] {
    for (int i = 0; i < 5 && !stop.load(); ++i) {
      SetRingOn(kStart);
      for (auto& replica : replicas_) {
        replica->queries.Connections(v1::ListConnectionsRequest(), kStart);
        replica->queries.Summary("");
      }
    }
  });
  for (size_t i = 0; i < 2; ++i) threads[i].join();
  threads.back().join();
  stop = true;
  for (size_t i = 2; i < threads.size() - 1; ++i) threads[i].join();
  // The last snapshots again, delivered in order: the state every replica converges to.
  seq_[0] = seq_[1] = 40;
  Snapshot(0, kStart + absl::Seconds(50), Ends(true));
  Snapshot(1, kStart + absl::Seconds(50), Ends(false));
  size_t pairs = 0;
  for (auto& replica : replicas_) pairs += replica->aggregator.pairs().stats().pairs;
  EXPECT_EQ(pairs, static_cast<size_t>(kConnections));
  EXPECT_EQ(Listed().size(), static_cast<size_t>(2 * kConnections));
}

class QuietRingTest : public ReplicaPairingTest {
 protected:
  void SetUp() override {
    quiet_ = absl::Hours(1);
    ReplicaPairingTest::SetUp();
  }
};

TEST_F(QuietRingTest, NothingIsJudgedHalfOpenInTheRingsQuietWindow) {
  ASSERT_NO_FATAL_FAILURE(ConnectHosts());
  Snapshot(0, kStart, Ends(true));
  Snapshot(1, kStart, Ends(false));
  Snapshot(1, kStart + absl::Seconds(1), Ends(false, /*skip=*/0));
  Snapshot(0, kStart + absl::Seconds(1) + kGrace, Ends(true));
  for (auto& replica : replicas_) {
    EXPECT_EQ(MetricValue(replica->Exposition(), "tcpscope_half_open_detected_total",
                          {{"host", "host-a"}, {"reason", "peer_closed"}}),
              std::nullopt)
        << replica->address;
  }
  size_t pairs = 0;
  for (auto& replica : replicas_) pairs += replica->aggregator.pairs().stats().pairs;
  EXPECT_EQ(pairs, static_cast<size_t>(kConnections)) << "paired all the same";
}

// A fragment as the home sends it: with its host's name and boot id.
v1::HostFragment Named(v1::HostFragment fragment) {
  fragment.set_host("host-a");
  fragment.set_boot_id("boot-a");
  return fragment;
}

TEST(FragmentSplitTest, EveryEndGoesToItsOwnerOnceWithItsOrigin) {
  const RendezvousSet set({kReplicas[0], kReplicas[1], "10.9.0.3:7700"});
  const Ring ring(set, kReplicas[0], 1, kStart);
  v1::Batch batch = SnapshotBatch(1, kStart, {}, "client");
  batch.mutable_snapshot()->add_origins()->set_command("other");
  for (int i = 0; i < kConnections; ++i) {
    v1::Connection end = End(true, i);
    end.set_origin_ref(static_cast<uint32_t>(1 + i % 2));
    *batch.mutable_snapshot()->add_connections() = end;
    v1::Event close;
    close.set_connection_id(end.connection_id());
    *close.mutable_endpoints() = end.endpoints();
    close.set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(kStart)));
    close.mutable_close();
    *batch.add_events() = close;
  }
  v1::Connection loopback = End(true, 99);
  loopback.mutable_endpoints()->set_remote_address(std::string({127, 0, 0, 1}));
  *batch.mutable_snapshot()->add_connections() = loopback;

  OriginTable home_origins;
  const std::shared_ptr<const HostView> view = HostView::Build(
      batch.snapshot(),
      std::vector<v1::AtRiskReason>(static_cast<size_t>(batch.snapshot().connections_size())),
      nullptr, 1, kStart, &home_origins);

  uint64_t forwarded = 0;
  const std::vector<v1::HostFragment> fragments =
      SplitByOwner(view.get(), batch.events(), ring, &forwarded);
  ASSERT_EQ(fragments.size(), 3u);
  EXPECT_FALSE(fragments[ring.self].has_ends());
  size_t kept_here = 0;
  for (int i = 0; i < kConnections; ++i) {
    const size_t owner = ring.Owner(*TupleRouteHash(End(true, i).endpoints()));
    if (owner == ring.self) ++kept_here;
  }
  EXPECT_EQ(forwarded, static_cast<uint64_t>(kConnections) - kept_here);
  uint64_t in_fragments = 0;
  for (size_t r = 0; r < fragments.size(); ++r) {
    if (r == ring.self) continue;
    const v1::HostFragment& fragment = fragments[r];
    ASSERT_TRUE(fragment.has_ends()) << "every other replica gets the snapshot's part";
    EXPECT_TRUE(ValidateFragment(Named(fragment), kStart).ok())
        << ValidateFragment(Named(fragment), kStart);
    OriginTable owner_origins;
    const std::shared_ptr<const HostView> part =
        HostView::Unpack(fragment.ends(), nullptr, 1, kStart, &owner_origins);
    EXPECT_EQ(part->taken, kStart);
    EXPECT_EQ(static_cast<int>(part->ends.size()), fragment.closes_size());
    for (const EndRecord& end : part->ends) {
      ++in_fragments;
      const v1::Connection connection = part->ConnectionOf(end);
      EXPECT_EQ(ring.Owner(*TupleRouteHash(connection.endpoints())), r);
      const int i = static_cast<int>(end.connection_id - 1000);
      v1::Connection expected = End(true, i);
      expected.clear_origin_ref();
      expected.mutable_origin()->set_command(i % 2 == 0 ? "client" : "other");
      EXPECT_EQ(connection.SerializeAsString(), expected.SerializeAsString()) << i;
    }
  }
  EXPECT_EQ(in_fragments, forwarded);  // the loopback end stays home
}

// An end crosses to its owner unchanged, every field, IPv6 addresses included.
TEST(FragmentSplitTest, PackedEndsKeepEveryField) {
  const RendezvousSet set({kReplicas[0], kReplicas[1]});
  const Ring ring(set, kReplicas[0], 1, kStart);
  v1::Batch batch = SnapshotBatch(1, kStart, {}, "client");
  batch.mutable_snapshot()->mutable_origins(0)->set_pod("web-0");
  for (int i = 0; i < kConnections; ++i) {
    v1::Connection& c = *batch.mutable_snapshot()->add_connections();
    c.set_connection_id(7000 + i);
    c.set_state(i % 2 == 0 ? v1::TCP_STATE_ESTABLISHED : v1::TCP_STATE_CLOSE_WAIT);
    c.set_role(v1::ROLE_SERVER);
    v1::Endpoints& e = *c.mutable_endpoints();
    e.set_local_address(std::string(15, '\x20') + static_cast<char>(i));
    e.set_remote_address(std::string(15, '\x30') + static_cast<char>(i));
    e.set_local_port(443);
    e.set_remote_port(50000 + i);
    c.mutable_keepalive()->set_enabled(true);
    c.mutable_keepalive()->set_probes_out(2);
    c.mutable_keepalive()->set_next_probe_ms(1500);
    c.set_idle_ms(12345);
    c.set_srtt_us(250 + i);
    c.set_rttvar_us(40);
    c.set_send_queue(7);
    c.set_recv_queue(9);
    c.set_bytes_sent(1ull << 40);
    c.set_bytes_received(123456789);
    c.set_retransmits(3);
    c.set_first_seen_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(kStart - absl::Hours(1))));
    c.set_state_since_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(kStart - absl::Minutes(1))));
    c.set_origin_ref(1);
  }
  std::vector<v1::AtRiskReason> at_risk(kConnections, v1::AT_RISK_REASON_UNSPECIFIED);
  at_risk[3] = v1::AT_RISK_KEEPALIVE_PROBING;
  OriginTable home_origins;
  const std::shared_ptr<const HostView> view =
      HostView::Build(batch.snapshot(), at_risk, nullptr, 1, kStart, &home_origins);
  uint64_t forwarded = 0;
  const std::vector<v1::HostFragment> fragments =
      SplitByOwner(view.get(), batch.events(), ring, &forwarded);
  const v1::HostFragment& fragment = fragments[1 - ring.self];
  EXPECT_TRUE(ValidateFragment(Named(fragment), kStart).ok())
      << ValidateFragment(Named(fragment), kStart);
  OriginTable owner_origins;
  const std::shared_ptr<const HostView> part =
      HostView::Unpack(fragment.ends(), nullptr, 1, kStart, &owner_origins);
  ASSERT_EQ(part->ends.size(), forwarded);
  ASSERT_GT(forwarded, 0u);
  size_t next = 0;
  for (const EndRecord& end : view->ends) {
    if (ring.Owner(*TupleRouteHash(view->LocalAddress(end), end.local_port,
                                   view->RemoteAddress(end), end.remote_port)) == ring.self) {
      continue;
    }
    const EndRecord& copy = part->ends[next++];
    EXPECT_EQ(part->ConnectionOf(copy).SerializeAsString(),
              view->ConnectionOf(end).SerializeAsString());
    EXPECT_EQ(copy.at_risk, end.at_risk);
  }
  EXPECT_EQ(next, part->ends.size());
}

}  // namespace
}  // namespace tcpscope::service
