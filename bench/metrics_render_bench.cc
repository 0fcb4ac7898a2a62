// tcpscope-metrics-render-bench: how long one /metrics scrape of the service's SPEC series takes
// with N hosts: the service's FleetMetrics (per-host values written straight into text) against
// the same series on prometheus-cpp (one Counter/Gauge/Histogram per series, as the service had
// them), collected by Registry::Collect and rendered by TextSerializer or by tcpscope's own
// renderer (common/exposition.h).
//
// Both are fed the same calls (bench/metrics_fleet.h): every host has every series the service can
// give it: events of every role, initiator, close reason, failure reason, keepalive probes and
// timeouts, a snapshot with every TCP state, keepalive and at-risk reason, half-open ends of
// every reason, and workload and port series (pods and ports beyond their caps in "other").
//
//   tcpscope-metrics-render-bench --benchmark_filter=/1000
#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/metrics_fleet.h"
#include "common/exposition.h"
#include "prometheus/text_serializer.h"

namespace tcpscope::bench {
namespace {

// Two pods of two containers, a Docker container and one known by its id, a host process; four
// server ports.
service::WorkloadLimits Limits() {
  service::WorkloadLimits limits;
  limits.max_pods_per_host = 2;
  limits.max_ports_per_host = 3;
  return limits;
}

// The fleet with `hosts` hosts' series, built once per size.
struct Fleet {
  explicit Fleet(int hosts) : twins(Limits()) {
    twins.FillEverySeries(hosts, absl::FromUnixSeconds(1'700'000'000));
    families = twins.reference.registry()->Collect();
    for (const auto& family : families) series += family.metric.size();
  }

  TwinFleet twins;
  std::vector<prometheus::MetricFamily> families;  // one collection, for the render-only timings
  size_t series = 0;
};

Fleet& FleetOf(int hosts) {
  static auto* fleets = new std::map<int, std::unique_ptr<Fleet>>;
  auto& fleet = (*fleets)[hosts];
  if (fleet == nullptr) fleet = std::make_unique<Fleet>(hosts);
  return *fleet;
}

void Report(benchmark::State& state, const Fleet& fleet, size_t bytes) {
  state.counters["series"] = static_cast<double>(fleet.series);
  state.counters["bytes"] = static_cast<double>(bytes);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}

// Registry::Collect alone: the part no renderer can change.
void BM_Collect(benchmark::State& state) {
  Fleet& fleet = FleetOf(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    std::vector<prometheus::MetricFamily> families = fleet.twins.reference.registry()->Collect();
    benchmark::DoNotOptimize(families.data());
  }
  state.counters["series"] = static_cast<double>(fleet.series);
}

// Rendering already collected families.
void BM_RenderTextSerializer(benchmark::State& state) {
  Fleet& fleet = FleetOf(static_cast<int>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = prometheus::TextSerializer().Serialize(fleet.families);
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  Report(state, fleet, bytes);
}

void BM_RenderExposition(benchmark::State& state) {
  Fleet& fleet = FleetOf(static_cast<int>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = RenderExposition(fleet.families);
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  Report(state, fleet, bytes);
}

// A whole scrape on prometheus-cpp: as /metrics did it at first (a), then with our renderer (b).
void BM_ScrapeTextSerializer(benchmark::State& state) {
  Fleet& fleet = FleetOf(static_cast<int>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text =
        prometheus::TextSerializer().Serialize(fleet.twins.reference.registry()->Collect());
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  Report(state, fleet, bytes);
}

void BM_ScrapeExposition(benchmark::State& state) {
  Fleet& fleet = FleetOf(static_cast<int>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = RenderExposition(fleet.twins.reference.registry()->Collect());
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  Report(state, fleet, bytes);
}

// (c) What /metrics does now: FleetMetrics writes every host's series straight into the text.
void BM_ScrapeFleetMetrics(benchmark::State& state) {
  Fleet& fleet = FleetOf(static_cast<int>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text;
    fleet.twins.service.fleet()->AppendExposition(&text);
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  Report(state, fleet, bytes);
}

BENCHMARK(BM_Collect)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RenderTextSerializer)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RenderExposition)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ScrapeTextSerializer)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ScrapeExposition)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ScrapeFleetMetrics)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tcpscope::bench

BENCHMARK_MAIN();
