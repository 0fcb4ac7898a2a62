// What pairing connection ends across hosts costs the service per snapshot, against what it
// pays anyway to receive that snapshot: parsing it from the wire.
//
// Two hosts, A and B, hold the two ends of N connections (N = 1000, 10000). Timed, in CPU time
// per snapshot of N connections:
// - BM_ParseSnapshot (the peer): v1::Batch::ParseFromString of a batch carrying the snapshot,
//   as the Ingest service does for every message;
// - BM_PairSnapshot: that snapshot compacted into a host view (HostView::Build) and applied to
//   the pair index (PairIndex::ApplySnapshot) in steady state (every end already paired):
//   re-index the host's ends, judge each pair, find nothing;
// - BM_PairSnapshotChurn: the same with a tenth of the connections replaced by new ones (new
//   ports and ids) in every snapshot, so ends are lost, pruned and paired anew.
// The ratio BM_Pair* / BM_ParseSnapshot at the same N is the figure: see BENCHMARKS.md.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "service/host_view.h"
#include "service/pair_index.h"
#include "tcpscope/v1/ingest.pb.h"

namespace tcpscope::service {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1800000000);

std::string Address(uint8_t host) {
  return std::string("\x0a\x00\x00", 3) + static_cast<char>(host);
}

// Host `self` (1 = A, the clients; 2 = B, the servers) in snapshot `round`: connection i uses
// client port 10000 + i, shifted by `round` for the churned tenth.
v1::Snapshot MakeSnapshot(int self, int connections, int round, bool churn) {
  v1::Snapshot snapshot;
  const absl::Time taken = kStart + absl::Seconds(round);
  snapshot.set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(taken)));
  for (int i = 0; i < connections; ++i) {
    const bool churned = churn && i % 10 == 0;
    const uint32_t client_port =
        static_cast<uint32_t>(churned ? 20000 + (i / 10 + round * 997) % 40000 : 10000 + i);
    const uint64_t id = churned ? (static_cast<uint64_t>(round) << 32) + static_cast<uint64_t>(i)
                                : static_cast<uint64_t>(i);
    v1::Connection* connection = snapshot.add_connections();
    connection->set_connection_id(id * 2 + static_cast<uint64_t>(self));
    v1::Endpoints* endpoints = connection->mutable_endpoints();
    endpoints->set_local_address(Address(static_cast<uint8_t>(self)));
    endpoints->set_remote_address(Address(static_cast<uint8_t>(3 - self)));
    endpoints->set_local_port(self == 1 ? client_port : 443);
    endpoints->set_remote_port(self == 1 ? 443 : client_port);
    connection->set_role(self == 1 ? v1::ROLE_CLIENT : v1::ROLE_SERVER);
    connection->set_state(v1::TCP_STATE_ESTABLISHED);
    connection->mutable_keepalive()->set_enabled(i % 2 == 0);
    connection->set_idle_ms(static_cast<uint64_t>(i % 5000));
    connection->set_srtt_us(120);
    connection->set_bytes_sent(static_cast<uint64_t>(i) * 1500);
    connection->set_bytes_received(static_cast<uint64_t>(i) * 900);
    connection->set_first_seen_unix_ns(snapshot.time_unix_ns() - 1000000000);
    connection->set_state_since_unix_ns(snapshot.time_unix_ns() - 1000000000);
  }
  return snapshot;
}

void BM_ParseSnapshot(benchmark::State& state) {
  v1::Batch batch;
  batch.set_seq(1);
  *batch.mutable_snapshot() = MakeSnapshot(1, static_cast<int>(state.range(0)), 1, false);
  const std::string wire = batch.SerializeAsString();
  for (auto _ : state) {
    v1::Batch parsed;
    benchmark::DoNotOptimize(parsed.ParseFromString(wire));
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["bytes"] = static_cast<double>(wire.size());
}

void PairSnapshots(benchmark::State& state, bool churn) {
  const int connections = static_cast<int>(state.range(0));
  // Rounds to cycle through, prepared outside the timing (each host's snapshots alternate).
  constexpr int kRounds = 16;
  std::vector<std::shared_ptr<v1::Snapshot>> a, b;
  for (int round = 0; round < kRounds; ++round) {
    a.push_back(std::make_shared<v1::Snapshot>(MakeSnapshot(1, connections, round, churn)));
    b.push_back(std::make_shared<v1::Snapshot>(MakeSnapshot(2, connections, round, churn)));
  }
  PairIndex pairs{HalfOpenPolicy()};
  struct Host {
    std::shared_ptr<PairHost> pair;
    OriginTable origins;
    std::shared_ptr<const HostView> view;
  };
  Host hosts[2] = {{pairs.Host("a"), {}, nullptr}, {pairs.Host("b"), {}, nullptr}};
  pairs.Connected(*hosts[0].pair, "boot-a");
  pairs.Connected(*hosts[1].pair, "boot-b");
  const std::vector<v1::AtRiskReason> at_risk(static_cast<size_t>(connections));
  size_t findings = 0;
  uint64_t views = 0;
  auto apply = [&](Host& host, const v1::Snapshot& snapshot, absl::Time now) {
    auto view = HostView::Build(snapshot, at_risk, host.pair, ++views, now, &host.origins);
    const Findings found = pairs.ApplySnapshot(*host.pair, view, host.view.get());
    findings += found.half_open.size();
    host.view = std::move(view);
  };
  apply(hosts[0], *a[0], kStart);
  apply(hosts[1], *b[0], kStart);
  int round = 1;
  int64_t snapshots = 0;
  for (auto _ : state) {
    // The contents cycle through the prepared rounds; the time moves on, as a host's clock does.
    const size_t i = static_cast<size_t>(round % kRounds);
    const absl::Time now = kStart + absl::Seconds(round);
    a[i]->set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(now)));
    b[i]->set_time_unix_ns(a[i]->time_unix_ns());
    apply(hosts[0], *a[i], now);
    apply(hosts[1], *b[i], now);
    snapshots += 2;
    ++round;
  }
  if (findings != 0) state.SkipWithError("found half-open ends where none are");
  state.SetItemsProcessed(snapshots * connections);
  state.counters["pairs"] = static_cast<double>(pairs.stats().pairs);
  // Per snapshot, as BM_ParseSnapshot's iterations are.
  state.counters["snapshots"] = static_cast<double>(snapshots);
}

void BM_PairSnapshot(benchmark::State& state) { PairSnapshots(state, false); }
void BM_PairSnapshotChurn(benchmark::State& state) { PairSnapshots(state, true); }

BENCHMARK(BM_ParseSnapshot)->Arg(1000)->Arg(10000);
BENCHMARK(BM_PairSnapshot)->Arg(1000)->Arg(10000);
BENCHMARK(BM_PairSnapshotChurn)->Arg(1000)->Arg(10000);

}  // namespace
}  // namespace tcpscope::service

BENCHMARK_MAIN();
