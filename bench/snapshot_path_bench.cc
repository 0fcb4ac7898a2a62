// What the agent's snapshot thread costs per end after the kernel's dump, without a kernel: the
// tracker's pass over a dump (ConnectionTracker::Update: the tracked table and the snapshot's
// messages) and the FIN notes a churning host's ring delivers between two snapshots, applied to
// that snapshot (FinTimes). The churn benchmark's snapshot thread is these, the dump itself and
// the serialization.
//
// The load is churn_bench's namespace at 10 s snapshots: 131,072 TIME_WAIT ends (the kernel's
// default limit of TIME_WAIT buckets), a sixth of them new at each snapshot, and ~280,000
// connections closed between two snapshots, each with a FIN note of its client end. Timed, in CPU
// time per end of the dump:
// - BM_TrackerUpdate: Update of the next dump (the eBPF source's tracker: no events derived).
// - BM_FinNotes: the notes of one interval taken as the ring's reader takes them, then applied to
//   the snapshot of the dump (merged, looked up, the stale forgotten).
// - BM_BuildSnapshot (the peer): the snapshot's Connection messages written straight from the
//   records, nothing tracked: what protobuf alone charges to hold the snapshot.
#include <benchmark/benchmark.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "agent/connection_tracker.h"
#include "agent/fin_times.h"
#include "agent/sock_diag_parser.h"
#include "tcpscope/v1/events.pb.h"

namespace tcpscope::agent {
namespace {

constexpr uint64_t kEnds = 131072;
constexpr uint64_t kNewPerSnapshot = kEnds / 6;
constexpr uint64_t kClosedPerInterval = 280000;
constexpr uint8_t kTimeWait = 6;
constexpr absl::Duration kInterval = absl::Seconds(10);

SocketRecord TimeWaitEnd(uint64_t cookie) {
  SocketRecord record;
  record.family = AF_INET;
  record.state = kTimeWait;
  record.timer = DiagTimer::kTimeWait;
  record.timer_expires_ms = 40000;
  const uint8_t loopback[4] = {127, 0, 0, 1};
  std::memcpy(record.local_address.data(), loopback, 4);
  std::memcpy(record.remote_address.data(), loopback, 4);
  record.local_port = static_cast<uint16_t>(32768 + cookie % 28000);
  record.remote_port = static_cast<uint16_t>(8080 + cookie % 8);
  record.cookie = cookie;
  return record;
}

// The dump `snapshot` snapshots after the first: the ends with cookies [first, first + kEnds).
std::vector<SocketRecord> Dump(uint64_t snapshot) {
  std::vector<SocketRecord> dump;
  dump.reserve(kEnds);
  const uint64_t first = 1 + snapshot * kNewPerSnapshot;
  for (uint64_t cookie = first; cookie < first + kEnds; ++cookie) {
    dump.push_back(TimeWaitEnd(cookie));
  }
  return dump;
}

void BM_TrackerUpdate(benchmark::State& state) {
  // Enough distinct dumps that the table turns over as under churn, built before timing.
  std::vector<std::vector<SocketRecord>> dumps;
  for (uint64_t snapshot = 0; snapshot < 8; ++snapshot) dumps.push_back(Dump(snapshot));
  std::optional<ConnectionTracker> tracker;
  absl::Time now = absl::FromUnixSeconds(1800000000);
  size_t next = dumps.size();
  for (auto _ : state) {
    // Past the last dump, start again from an empty tracker, untimed.
    if (next == dumps.size()) {
      state.PauseTiming();
      tracker.emplace(4026531840u, nullptr, ConnectionTracker::Events::kNone);
      tracker->Update(dumps[0], now);
      next = 1;
      state.ResumeTiming();
    }
    now += kInterval;
    TrackerUpdate update = tracker->Update(dumps[next++], now);
    benchmark::DoNotOptimize(update.snapshot.connections_size());
  }
  state.SetItemsProcessed(state.iterations() * kEnds);
}
BENCHMARK(BM_TrackerUpdate)->Unit(benchmark::kMillisecond);

void BM_FinNotes(benchmark::State& state) {
  ConnectionTracker tracker(4026531840u, nullptr, ConnectionTracker::Events::kNone);
  absl::Time now = absl::FromUnixSeconds(1800000000);
  v1::Snapshot snapshot = tracker.Update(Dump(1), now).snapshot;
  FinTimes fin_times;
  // The interval's closes: the dump's newest ends among them, the others gone from it already
  // (each interval's its own, as under churn: those are forgotten two intervals on).
  const uint64_t first_new = 1 + kEnds;
  uint64_t interval = 0;
  for (auto _ : state) {
    now += kInterval;
    ++interval;
    for (uint64_t i = 0; i < kClosedPerInterval; ++i) {
      const uint64_t cookie =
          i < kNewPerSnapshot ? first_new - kNewPerSnapshot + i : (interval << 32) + i;
      fin_times.Note(cookie, now - absl::Milliseconds(i % 10000), 4242, 7, "tcpscope-churn");
    }
    benchmark::DoNotOptimize(fin_times.Apply(&snapshot, now, 2 * kInterval).size());
  }
  state.SetItemsProcessed(state.iterations() * kEnds);
}
BENCHMARK(BM_FinNotes)->Unit(benchmark::kMillisecond);

void BM_BuildSnapshot(benchmark::State& state) {
  const std::vector<SocketRecord> dump = Dump(1);
  const bool on_arena = state.range(0) != 0;
  for (auto _ : state) {
    google::protobuf::Arena arena;
    v1::Snapshot& snapshot =
        *google::protobuf::Arena::CreateMessage<v1::Snapshot>(on_arena ? &arena : nullptr);
    for (const SocketRecord& record : dump) {
      v1::Connection* connection = snapshot.add_connections();
      connection->set_connection_id(record.cookie);
      connection->mutable_origin()->set_netns_inode(4026531840u);
      v1::Endpoints* endpoints = connection->mutable_endpoints();
      endpoints->set_local_address(reinterpret_cast<const char*>(record.local_address.data()), 4);
      endpoints->set_local_port(record.local_port);
      endpoints->set_remote_address(reinterpret_cast<const char*>(record.remote_address.data()), 4);
      endpoints->set_remote_port(record.remote_port);
      connection->set_state(static_cast<v1::TcpState>(record.state));
      connection->mutable_keepalive()->set_enabled(false);
      connection->set_first_seen_unix_ns(1);
      connection->set_state_since_unix_ns(1);
    }
    benchmark::DoNotOptimize(snapshot.connections_size());
    if (!on_arena) delete &snapshot;
  }
  state.SetItemsProcessed(state.iterations() * kEnds);
}
BENCHMARK(BM_BuildSnapshot)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tcpscope::agent

BENCHMARK_MAIN();
