// The merge of the replicas' local parts of each Observer answer (tcpscope-service --peers): a
// host known to two replicas, exact sums, the fleet total recomputed as one replica computes it,
// and the event histories merged by time with the last N kept.
#include "service/fleet_merge.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "service/host_summary.h"

namespace tcpscope::service {
namespace {

v1::Agent MakeAgent(const std::string& host, bool connected, uint64_t last_seen, uint64_t events,
                    const std::string& version) {
  v1::Agent agent;
  agent.set_host_name(host);
  agent.set_connected(connected);
  agent.set_last_seen_unix_ns(last_seen);
  agent.set_events(events);
  agent.set_agent_version(version);
  return agent;
}

TEST(FleetMergeTest, AgentsOnePerHostTheConnectedOneWithEventsSummed) {
  v1::ListAgentsResponse first;  // the old home of "mover": disconnected, seen later
  *first.add_agents() = MakeAgent("mover", false, 900, 40, "old");
  *first.add_agents() = MakeAgent("b", true, 100, 5, "b");
  v1::ListAgentsResponse second;  // its new home
  *second.add_agents() = MakeAgent("a", true, 100, 7, "a");
  *second.add_agents() = MakeAgent("mover", true, 800, 2, "new");
  v1::ListAgentsResponse third;  // a host on two replicas, connected on neither
  *third.add_agents() = MakeAgent("gone", false, 300, 1, "earlier");
  v1::ListAgentsResponse fourth;
  *fourth.add_agents() = MakeAgent("gone", false, 500, 3, "latest");

  const v1::ListAgentsResponse merged = MergeAgents({first, second, third, fourth});
  ASSERT_EQ(merged.agents_size(), 4);
  EXPECT_EQ(merged.agents(0).host_name(), "a");
  EXPECT_EQ(merged.agents(0).events(), 7u);
  EXPECT_EQ(merged.agents(1).host_name(), "b");
  EXPECT_EQ(merged.agents(2).host_name(), "gone");
  EXPECT_EQ(merged.agents(2).agent_version(), "latest");
  EXPECT_EQ(merged.agents(2).events(), 4u);
  EXPECT_EQ(merged.agents(3).host_name(), "mover");
  EXPECT_TRUE(merged.agents(3).connected());
  EXPECT_EQ(merged.agents(3).agent_version(), "new");
  EXPECT_EQ(merged.agents(3).last_seen_unix_ns(), 800u);
  EXPECT_EQ(merged.agents(3).events(), 42u);
}

v1::HostConnection MakeConnection(const std::string& host, uint32_t port) {
  v1::HostConnection entry;
  entry.set_host(host);
  entry.mutable_connection()->mutable_endpoints()->set_local_port(port);
  return entry;
}

TEST(FleetMergeTest, ConnectionsByHostInPartOrderWithTheOldestAge) {
  v1::ListConnectionsResponse first;
  *first.add_connections() = MakeConnection("b", 1);
  *first.add_connections() = MakeConnection("c", 2);
  first.set_snapshot_age_ms_max(300);
  v1::ListConnectionsResponse second;
  *second.add_connections() = MakeConnection("a", 3);
  *second.add_connections() = MakeConnection("b", 4);
  second.set_snapshot_age_ms_max(1200);
  const v1::ListConnectionsResponse merged = MergeConnections({first, second, {}});
  std::vector<std::pair<std::string, uint32_t>> listed;
  for (const auto& entry : merged.connections()) {
    listed.emplace_back(entry.host(), entry.connection().endpoints().local_port());
  }
  EXPECT_EQ(listed, (std::vector<std::pair<std::string, uint32_t>>{
                        {"a", 3}, {"b", 1}, {"b", 4}, {"c", 2}}));
  EXPECT_EQ(merged.snapshot_age_ms_max(), 1200u);
}

void AddCount(google::protobuf::RepeatedPtrField<v1::Count>* counts, const std::string& name,
              uint64_t value) {
  v1::Count* count = counts->Add();
  count->set_name(name);
  count->set_value(value);
}

// A replica's summary of `host` from totals, as FleetQueries makes it.
v1::HostSummary HostPart(const std::string& host, bool connected, const EventTotals& totals,
                         const SnapshotCounts& snapshot, uint64_t kernel_losses) {
  v1::HostSummary summary;
  summary.set_host(host);
  summary.set_agents(1);
  summary.set_agents_connected(connected ? 1 : 0);
  summary.mutable_losses()->set_kernel(kernel_losses);
  FillSummary(totals, snapshot, &summary);
  return summary;
}

TEST(FleetMergeTest, SummaryPerHostSummedAndTheFleetTotalRecomputed) {
  EventTotals old_home;  // "mover" before it moved
  old_home.events = 10;
  old_home.handshakes = 6;
  old_home.closes_by_reason[v1::CLOSE_REASON_FIN] = 4;
  old_home.failures[v1::HANDSHAKE_FAILURE_TIMEOUT] = 2;
  EventTotals new_home;
  new_home.events = 3;
  new_home.handshakes = 1;
  new_home.closes_by_reason[v1::CLOSE_REASON_KEEPALIVE_TIMEOUT] = 1;
  new_home.closes_by_reason[v1::CLOSE_REASON_FIN] = 1;
  new_home.failures[v1::HANDSHAKE_FAILURE_REFUSED] = 1;
  SnapshotCounts snapshot;
  snapshot.states[v1::TCP_STATE_ESTABLISHED] = 5;
  snapshot.states[v1::TCP_STATE_LISTEN] = 2;
  snapshot.keepalive_on = 1;
  snapshot.keepalive_off = 4;
  EventTotals other;
  other.events = 100;
  other.keepalive_probes = 9;
  SnapshotCounts other_snapshot;
  other_snapshot.states[v1::TCP_STATE_CLOSE_WAIT] = 3;
  other_snapshot.at_risk[v1::AT_RISK_CLOSE_WAIT_STALE] = 3;

  v1::SummaryResponse first;
  *first.add_hosts() = HostPart("mover", false, old_home, {}, 7);
  *first.add_hosts() = HostPart("zeta", true, other, other_snapshot, 1);
  first.set_history_events(10);
  first.set_history_oldest_unix_ns(5000);
  v1::SummaryResponse second;
  *second.add_hosts() = HostPart("mover", true, new_home, snapshot, 7);
  second.set_history_events(3);
  second.set_history_oldest_unix_ns(4000);
  v1::SummaryResponse empty;  // a replica with no host: no history either

  const v1::SummaryResponse merged = MergeSummaries({first, second, empty});
  ASSERT_EQ(merged.hosts_size(), 2);
  const v1::HostSummary& mover = merged.hosts(0);
  EXPECT_EQ(mover.host(), "mover");
  EXPECT_EQ(mover.agents(), 1u);
  EXPECT_EQ(mover.agents_connected(), 1u);
  EXPECT_EQ(mover.events(), 13u);
  EXPECT_EQ(mover.handshakes(), 7u);
  EXPECT_EQ(mover.losses().kernel(), 7u);  // one agent process's cumulative count, seen twice
  // Counts summed by name, in the order one replica lists them (the enum's).
  EventTotals both = old_home;
  both.Add(new_home);
  v1::HostSummary expected;
  FillSummary(both, snapshot, &expected);
  ASSERT_EQ(mover.handshake_failures_size(), 2);
  EXPECT_EQ(mover.handshake_failures(0).name(), "refused");
  EXPECT_EQ(mover.handshake_failures(1).name(), "timeout");
  ASSERT_EQ(mover.closes_by_reason_size(), 2);
  EXPECT_EQ(mover.closes_by_reason(0).name(), "fin");
  EXPECT_EQ(mover.closes_by_reason(0).value(), 5u);
  // Everything but host, agents and losses as FillSummary makes it from the summed totals.
  v1::HostSummary compared = mover;
  compared.clear_host();
  compared.clear_agents();
  compared.clear_agents_connected();
  compared.clear_losses();
  EXPECT_EQ(compared.DebugString(), expected.DebugString());

  // The fleet: as one replica holding both hosts would total them.
  both.Add(other);
  SnapshotCounts all_snapshots = snapshot;
  all_snapshots.Add(other_snapshot);
  v1::HostSummary fleet;
  FillSummary(both, all_snapshots, &fleet);
  fleet.set_agents(2);
  fleet.set_agents_connected(2);
  fleet.mutable_losses()->set_kernel(8);
  EXPECT_EQ(merged.fleet().DebugString(), fleet.DebugString());
  EXPECT_EQ(merged.fleet().DebugString(), FleetTotal(merged.hosts()).DebugString());
  EXPECT_EQ(merged.history_events(), 13u);
  EXPECT_EQ(merged.history_oldest_unix_ns(), 4000u);
}

TEST(FleetMergeTest, UnknownCountNamesFromANewerReplicaAreKeptAfterTheKnownOnes) {
  v1::HostSummary into;
  AddCount(into.mutable_closes_by_reason(), "reset_sent", 1);
  v1::HostSummary from;
  AddCount(from.mutable_closes_by_reason(), "brand_new", 2);
  AddCount(from.mutable_closes_by_reason(), "fin", 3);
  AddCount(from.mutable_closes_by_reason(), "reset_sent", 4);
  AddHostSummary(from, &into);
  ASSERT_EQ(into.closes_by_reason_size(), 3);
  EXPECT_EQ(into.closes_by_reason(0).name(), "fin");
  EXPECT_EQ(into.closes_by_reason(1).name(), "reset_sent");
  EXPECT_EQ(into.closes_by_reason(1).value(), 5u);
  EXPECT_EQ(into.closes_by_reason(2).name(), "brand_new");
}

std::vector<v1::HostEvent> Events(const std::string& host, std::vector<uint64_t> times) {
  std::vector<v1::HostEvent> events;
  for (uint64_t time : times) {
    v1::HostEvent& entry = events.emplace_back();
    entry.set_host(host);
    entry.mutable_event()->set_time_unix_ns(time);
  }
  return events;
}

std::vector<std::string> Listed(const std::vector<v1::HostEvent>& events) {
  std::vector<std::string> listed;
  for (const auto& entry : events) {
    listed.push_back(absl::StrCat(entry.host(), entry.event().time_unix_ns()));
  }
  return listed;
}

TEST(FleetMergeTest, EventHistoriesMergedByTimeLastNKept) {
  // Replica b's history is in publication order: a batch of host y was published after one of
  // host z with later events, so its times go back; its own order is kept.
  const auto a = Events("x", {1, 4, 6, 9});
  auto b = Events("z", {2, 7});
  for (auto& entry : Events("y", {5, 8})) b.push_back(entry);
  const auto c = Events("w", {4});
  EXPECT_EQ(Listed(MergeEventHistories({a, b, c}, 0)),
            (std::vector<std::string>{"x1", "z2", "x4", "w4", "x6", "z7", "y5", "y8", "x9"}));
  EXPECT_EQ(Listed(MergeEventHistories({a, b, c}, 3)),
            (std::vector<std::string>{"y5", "y8", "x9"}));
  EXPECT_EQ(Listed(MergeEventHistories({a, {}, c}, 10)),
            (std::vector<std::string>{"x1", "x4", "w4", "x6", "x9"}));
  EXPECT_TRUE(MergeEventHistories({{}, {}}, 5).empty());
}

}  // namespace
}  // namespace tcpscope::service
