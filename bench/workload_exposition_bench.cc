// tcpscope-workload-exposition-bench: what workload and port series cost the service, for a
// fleet of H hosts with P pods each (README: series budget per host). Every host's batches go
// through ValidateBatch and the real Aggregator, as from an agent; the same fleet with every
// socket owned by host processes (no container, no pod) is the baseline.
//
// Each pod has one container with ends in the five workload states and in all three at-risk
// conditions, and events of every handshake-failure and close reason and a keepalive timeout, so
// each pod has every workload series it can have except half-open (which needs a lost peer).
// Pods connect to 60 server ports: more than --max_ports_per_host's 50, so port="other" fills.
//
//   tcpscope-workload-exposition-bench --benchmark_filter='/100/50'
#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/exposition.h"
#include "service/aggregator.h"
#include "service/batch_validator.h"
#include "service/event_log.h"
#include "service/service_metrics.h"
#include "service/workload_metrics.h"

namespace tcpscope::bench {
namespace {

using service::Aggregator;
using service::AggregatorOptions;
using service::EventLog;
using service::HostState;
using service::ServiceMetrics;

const absl::Time kNow = absl::FromUnixSeconds(1800000000);
constexpr int kServerPorts = 60;

uint64_t Nanos(absl::Time time) { return static_cast<uint64_t>(absl::ToUnixNanos(time)); }

v1::Origin OwnerOf(int host, int pod, bool workloads) {
  v1::Origin origin;
  origin.set_pid(static_cast<uint32_t>(1000 + pod));
  origin.set_command(absl::StrCat("app-", pod % 7));
  if (!workloads) return origin;
  origin.set_pod_namespace(absl::StrCat("team-", pod % 5));
  origin.set_pod(absl::StrFormat("checkout-%d-7f9c8d6b5-%05d", pod, host));
  origin.set_pod_uid(absl::StrFormat("5c1f3a2e-8d4b-4f6a-9e7c-%012d", host * 1000 + pod));
  origin.set_container_name(absl::StrCat("app-", pod % 7));
  origin.set_container_id(absl::StrFormat("%064x", host * 1000 + pod));
  origin.set_runtime(v1::CONTAINER_RUNTIME_CONTAINERD);
  return origin;
}

v1::Endpoints EndpointsOf(int host, int pod, int i, bool server) {
  v1::Endpoints endpoints;
  endpoints.set_local_address(std::string(
      {10, static_cast<char>(host / 250), static_cast<char>(host % 250), static_cast<char>(1)}));
  endpoints.set_remote_address(std::string({10, 99, static_cast<char>(pod), static_cast<char>(i)}));
  const uint32_t service_port = 5000 + static_cast<uint32_t>((pod * 3 + i) % kServerPorts);
  const uint32_t ephemeral = 32768 + static_cast<uint32_t>(pod * 64 + i);
  endpoints.set_local_port(server ? service_port : ephemeral);
  endpoints.set_remote_port(server ? ephemeral : service_port);
  return endpoints;
}

// One host's batch: a snapshot with every pod's ends, and every pod's events.
v1::Batch HostBatch(int host, int pods, bool workloads, uint64_t seq) {
  v1::Batch batch;
  batch.set_seq(seq);
  v1::Snapshot* snapshot = batch.mutable_snapshot();
  snapshot->set_time_unix_ns(Nanos(kNow));
  snapshot->set_listeners(4);
  uint64_t id = static_cast<uint64_t>(host) << 32;
  for (int pod = 0; pod < pods; ++pod) {
    const v1::Origin owner = OwnerOf(host, pod, workloads);
    struct EndSpec {
      v1::TcpState state;
      bool keepalive;
      uint32_t probes_out;
      uint64_t idle_ms;
      absl::Duration in_state;
    };
    const EndSpec ends[] = {
        {v1::TCP_STATE_ESTABLISHED, true, 0, 100, absl::Minutes(5)},
        {v1::TCP_STATE_ESTABLISHED, true, 0, 100, absl::Minutes(5)},
        {v1::TCP_STATE_ESTABLISHED, false, 0, 3600000, absl::Hours(2)},  // idle_no_keepalive
        {v1::TCP_STATE_ESTABLISHED, true, 2, 7300000, absl::Hours(2)},   // keepalive_probing
        {v1::TCP_STATE_SYN_SENT, false, 0, 0, absl::Seconds(1)},
        {v1::TCP_STATE_SYN_RECV, false, 0, 0, absl::Seconds(1)},
        {v1::TCP_STATE_CLOSE_WAIT, false, 0, 10, absl::Seconds(5)},
        {v1::TCP_STATE_CLOSE_WAIT, false, 0, 10, absl::Minutes(10)},  // close_wait_stale
        {v1::TCP_STATE_TIME_WAIT, false, 0, 10, absl::Seconds(20)},
        {v1::TCP_STATE_TIME_WAIT, false, 0, 10, absl::Seconds(40)},
    };
    int i = 0;
    for (const EndSpec& spec : ends) {
      v1::Connection* connection = snapshot->add_connections();
      connection->set_connection_id(++id);
      *connection->mutable_origin() = owner;
      *connection->mutable_endpoints() = EndpointsOf(host, pod, i, i % 2 == 1);
      connection->set_role(i % 2 == 1 ? v1::ROLE_SERVER : v1::ROLE_CLIENT);
      connection->set_state(spec.state);
      connection->mutable_keepalive()->set_enabled(spec.keepalive);
      connection->mutable_keepalive()->set_probes_out(spec.probes_out);
      connection->set_idle_ms(spec.idle_ms);
      connection->set_state_since_unix_ns(Nanos(kNow - spec.in_state));
      ++i;
    }
    auto event = [&](v1::Role role) {
      v1::Event* e = batch.add_events();
      e->set_time_unix_ns(Nanos(kNow));
      e->set_connection_id(++id);
      e->set_role(role);
      *e->mutable_origin() = owner;
      *e->mutable_endpoints() = EndpointsOf(host, pod, i++, role == v1::ROLE_SERVER);
      return e;
    };
    event(v1::ROLE_CLIENT)->mutable_handshake()->set_duration_us(300);
    for (int reason = v1::HANDSHAKE_FAILURE_REFUSED; reason <= v1::HANDSHAKE_FAILURE_OTHER;
         ++reason) {
      event(v1::ROLE_CLIENT)
          ->mutable_handshake_failed()
          ->set_reason(static_cast<v1::HandshakeFailureReason>(reason));
    }
    for (int reason = v1::CLOSE_REASON_FIN; reason <= v1::CLOSE_REASON_OTHER; ++reason) {
      v1::Close* close = event(reason % 2 ? v1::ROLE_CLIENT : v1::ROLE_SERVER)->mutable_close();
      close->set_initiator(v1::CLOSE_INITIATOR_LOCAL);
      close->set_reason(static_cast<v1::CloseReason>(reason));
      close->set_lifetime_us(1500000);
      close->set_last_state(v1::TCP_STATE_ESTABLISHED);
    }
    event(v1::ROLE_CLIENT)->mutable_keepalive_timeout()->set_probes_sent(9);
  }
  return batch;
}

// A fleet fed through validation and the aggregator: `hosts` hosts of `pods` pods.
// What /metrics serves: the hosts' series, then the service's own.
std::string Scrape(const ServiceMetrics& metrics) {
  std::string text;
  metrics.fleet()->AppendExposition(&text);
  AppendExposition(metrics.registry()->Collect(), &text);
  return text;
}

struct Fleet {
  Fleet(int hosts, int pods, bool workloads)
      : log(1000), aggregator(&metrics, &log, AggregatorOptions()) {
    for (int host = 0; host < hosts; ++host) {
      v1::Hello hello;
      hello.set_host_name(absl::StrFormat("node-%04d.rack%02d.dc1.example.net", host, host % 40));
      hello.set_boot_id("boot");
      hello.set_instance_id(1);
      hello.set_source(v1::SOURCE_KIND_EBPF);
      uint64_t last_applied = 0;
      std::shared_ptr<HostState> state = *aggregator.Connect(hello, kNow, &last_applied);
      auto batch = std::make_shared<v1::Batch>(HostBatch(host, pods, workloads, 1));
      if (absl::Status s = service::ValidateBatch(*batch, kNow); !s.ok()) {
        std::fprintf(stderr, "invalid batch: %s\n", s.ToString().c_str());
        std::abort();
      }
      aggregator.Apply(*state, std::move(batch), kNow);
      states.push_back(std::move(state));
    }
    const std::string text = Scrape(metrics);
    bytes = text.size();
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (line.empty() || line[0] == '#') continue;
      ++series;
      if (absl::StartsWith(line, "tcpscope_workload_")) ++workload_series;
      if (absl::StartsWith(line, "tcpscope_port_")) ++port_series;
    }
  }

  ServiceMetrics metrics;
  EventLog log;
  Aggregator aggregator;
  std::vector<std::shared_ptr<HostState>> states;
  size_t bytes = 0;
  size_t series = 0;  // sample lines: what Prometheus stores as series
  size_t workload_series = 0;
  size_t port_series = 0;  // there with or without workloads
};

Fleet& FleetOf(int hosts, int pods, bool workloads) {
  static auto* fleets = new std::map<std::tuple<int, int, bool>, std::unique_ptr<Fleet>>;
  auto& fleet = (*fleets)[{hosts, pods, workloads}];
  if (fleet == nullptr) fleet = std::make_unique<Fleet>(hosts, pods, workloads);
  return *fleet;
}

// One whole /metrics scrape: the hosts' series and the service's own.
void BM_Scrape(benchmark::State& state) {
  const bool workloads = state.range(2) != 0;
  Fleet& fleet =
      FleetOf(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)), workloads);
  for (auto _ : state) {
    std::string text = Scrape(fleet.metrics);
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["series"] = static_cast<double>(fleet.series);
  state.counters["series_per_host"] = static_cast<double>(fleet.series) / state.range(0);
  state.counters["workload_series"] = static_cast<double>(fleet.workload_series);
  state.counters["port_series"] = static_cast<double>(fleet.port_series);
  state.counters["bytes"] = static_cast<double>(fleet.bytes);
}

// Applying one host's batch (a snapshot of pods x 10 ends and pods x 14 events): what the
// workload series add to the ingest path.
void BM_ApplyHostBatch(benchmark::State& state) {
  const int pods = static_cast<int>(state.range(1));
  const bool workloads = state.range(2) != 0;
  Fleet& fleet = FleetOf(static_cast<int>(state.range(0)), pods, workloads);
  const v1::Batch batch = HostBatch(0, pods, workloads, 0);
  uint64_t seq = 1;
  for (auto _ : state) {
    state.PauseTiming();
    auto next = std::make_shared<v1::Batch>(batch);
    next->set_seq(++seq);
    state.ResumeTiming();
    fleet.aggregator.Apply(*fleet.states[0], std::move(next), kNow);
  }
  state.counters["ends"] = pods * 10;
  state.counters["events"] = batch.events_size();
}

// The workload series' share of that: WorkloadMetrics counting the batch's events and setting
// its snapshot's gauges (steady state: every series already resolved).
void BM_WorkloadSeries(benchmark::State& state) {
  const int pods = static_cast<int>(state.range(1));
  const v1::Batch batch = HostBatch(0, pods, /*workloads=*/true, 1);
  const std::vector<v1::AtRiskReason> at_risk(
      static_cast<size_t>(batch.snapshot().connections_size()), v1::AT_RISK_REASON_UNSPECIFIED);
  ServiceMetrics metrics;
  service::WorkloadMetrics workloads(&metrics, "node-0000", service::WorkloadLimits());
  for (auto _ : state) {
    workloads.CountEvents(batch, kNow);
    workloads.SetSnapshot(batch.snapshot(), at_risk, kNow);
  }
  state.counters["items"] = benchmark::Counter(
      static_cast<double>(batch.events_size() + batch.snapshot().connections_size()),
      benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_Scrape)
    ->ArgNames({"hosts", "pods", "workloads"})
    ->Args({100, 50, 0})
    ->Args({100, 50, 1})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ApplyHostBatch)
    ->ArgNames({"hosts", "pods", "workloads"})
    ->Args({100, 50, 0})
    ->Args({100, 50, 1})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_WorkloadSeries)
    ->ArgNames({"hosts", "pods", "workloads"})
    ->Args({1, 50, 1})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tcpscope::bench

BENCHMARK_MAIN();
