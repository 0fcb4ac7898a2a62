// What the agent's user space costs per ring record, from the record to the bytes the shipper
// buffers for the wire, without a kernel or a service: the churn benchmark's user CPU per event
// less its context switches, snapshots and gRPC.
//
// A batch of 2048 records as loopback churn produces them (per connection: two handshakes, a FIN
// record, two closes; IPv4; the client's process known). Timed, in CPU time per record:
// - BM_RingToWire: RingRecords decodes each record into the batch on its arena, and a Shipper
//   (not connected) buffers the batch: origins shared, stamped, serialized once. The agent's path.
// - BM_RingToWireOnHeap: the same with each event decoded into a heap message and moved into a
//   heap batch, as the agent did before its batches had an arena.
// - BM_SerializeBatch (the peer): SerializeToString of the same batch, already built and shared:
//   what protobuf alone charges for the bytes.
// The ratios to BM_SerializeBatch are the figures (BENCHMARKS.md, "Agent user space per event").
#include <benchmark/benchmark.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include "agent/agent_metrics.h"
#include "agent/bpf_event_decoder.h"
#include "agent/fin_times.h"
#include "agent/ring_records.h"
#include "agent/shipper.h"
#include "common/shared_origins.h"
#include "tcpscope/v1/ingest.pb.h"

namespace tcpscope::agent {
namespace {

constexpr int kRecords = 2048;  // the eBPF source's flush
constexpr int64_t kMonotonicToUnixNs = 1800000000LL * 1000000000LL;

tcpscope_event Record(uint8_t kind, uint64_t cookie, uint16_t client_port, bool client) {
  tcpscope_event raw;
  std::memset(&raw, 0, sizeof(raw));
  raw.kind = kind;
  raw.time_ns = 1000000 + cookie * 1000;
  raw.cookie = cookie;
  raw.netns_ino = 4026531840u;
  raw.family = AF_INET;
  const uint8_t loopback[4] = {127, 0, 0, 1};
  std::memcpy(raw.saddr, loopback, 4);
  std::memcpy(raw.daddr, loopback, 4);
  raw.sport = client ? client_port : 8080;
  raw.dport = client ? 8080 : client_port;
  raw.role = client ? 1 : 2;
  raw.flags = TCPSCOPE_FLAG_DURATION_KNOWN;
  raw.duration_ns = 40000;
  if (client) {
    raw.pid = 4242;
    raw.cgroup_id = 7;
    std::memcpy(raw.comm, "tcpscope-churn", 15);
  }
  if (kind == TCPSCOPE_EVENT_CLOSE) {
    raw.initiator = client ? 1 : 2;
    raw.reason = 1;
    raw.last_state = client ? 4 : 9;
    raw.bytes_acked = 1;
    raw.bytes_received = 1;
    raw.segs_out = 4;
    raw.segs_in = 4;
    raw.srtt_us = 20;
  }
  return raw;
}

std::vector<tcpscope_event> ChurnRecords() {
  std::vector<tcpscope_event> records;
  for (uint64_t connection = 0; records.size() < kRecords; ++connection) {
    const uint64_t client = 2 * connection + 1;
    const uint64_t server = client + 1;
    const uint16_t port = static_cast<uint16_t>(32768 + connection % 28000);
    records.push_back(Record(TCPSCOPE_EVENT_HANDSHAKE, client, port, true));
    records.push_back(Record(TCPSCOPE_EVENT_HANDSHAKE, server, port, false));
    records.push_back(Record(TCPSCOPE_EVENT_FIN_SENT, client, port, true));
    records.push_back(Record(TCPSCOPE_EVENT_CLOSE, client, port, true));
    records.push_back(Record(TCPSCOPE_EVENT_CLOSE, server, port, false));
  }
  records.resize(kRecords);
  return records;
}

// As a snapshot does, once per FIN noted: merges the notes (here also forgets them, so the
// notes stay as few as under steady churn).
void ForgetFins(FinTimes& fin_times) {
  v1::Snapshot snapshot;
  fin_times.Apply(&snapshot, absl::InfiniteFuture(), absl::ZeroDuration());
}

ShipperOptions Unconnected() {
  ShipperOptions options;
  options.service = *ReplicaAddresses::Parse("--service", "127.0.0.1:1");
  options.max_buffered_batches = 4;  // older batches are dropped: memory stays flat
  return options;
}

void BM_RingToWire(benchmark::State& state) {
  const std::vector<tcpscope_event> records = ChurnRecords();
  AgentMetrics metrics("bench");
  FinTimes fin_times;
  RingRecords ring(&metrics, &fin_times, {});
  Shipper shipper(Unconnected(), &metrics);
  for (auto _ : state) {
    for (const tcpscope_event& record : records) {
      ring.Add(&record, sizeof(record), kMonotonicToUnixNs);
    }
    shipper.Publish(std::move(ring.pending()));
    ring.StartBatch();
    ForgetFins(fin_times);
  }
  state.SetItemsProcessed(state.iterations() * kRecords);
}
BENCHMARK(BM_RingToWire);

void BM_RingToWireOnHeap(benchmark::State& state) {
  const std::vector<tcpscope_event> records = ChurnRecords();
  AgentMetrics metrics("bench");
  FinTimes fin_times;
  Shipper shipper(Unconnected(), &metrics);
  for (auto _ : state) {
    v1::Batch batch;
    for (const tcpscope_event& record : records) {
      v1::Event event;
      auto decoded = DecodeBpfRecord(&record, sizeof(record), kMonotonicToUnixNs, &event);
      if (!decoded.ok()) {
        state.SkipWithError("undecodable record");
        return;
      }
      if (auto* fin = std::get_if<FinSent>(&*decoded)) {
        fin_times.Note(fin->connection_id, fin->time, fin->pid, fin->cgroup_id, fin->command);
      } else {
        batch.add_events()->Swap(&event);
      }
    }
    shipper.Publish(std::move(batch));
    ForgetFins(fin_times);
  }
  state.SetItemsProcessed(state.iterations() * kRecords);
}
BENCHMARK(BM_RingToWireOnHeap);

void BM_SerializeBatch(benchmark::State& state) {
  const std::vector<tcpscope_event> records = ChurnRecords();
  AgentMetrics metrics("bench");
  FinTimes fin_times;
  RingRecords ring(&metrics, &fin_times, {});
  for (const tcpscope_event& record : records) {
    ring.Add(&record, sizeof(record), kMonotonicToUnixNs);
  }
  v1::Batch batch = ring.pending();  // on the heap
  ShareBatchOrigins(batch);
  std::string wire;
  for (auto _ : state) {
    wire.clear();
    batch.SerializeToString(&wire);
    benchmark::DoNotOptimize(wire.data());
  }
  state.SetItemsProcessed(state.iterations() * kRecords);
}
BENCHMARK(BM_SerializeBatch);

}  // namespace
}  // namespace tcpscope::agent

BENCHMARK_MAIN();
