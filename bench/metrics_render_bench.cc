// tcpscope-metrics-render-bench: how long one /metrics scrape of the service takes with N hosts'
// series, prometheus-cpp's TextSerializer against tcpscope's own renderer (common/exposition.h),
// and how the time splits between collecting (Registry::Collect) and rendering.
//
// The series come from the service's real ServiceMetrics and HostMetrics, fed through
// CountEvent and SetSnapshot with every role, initiator, close reason, failure reason, keepalive
// probe and timeout: each host has every series the service can give it (the upper bound of a
// host's cardinality, about 150 lines).
//
//   tcpscope-metrics-render-bench --benchmark_filter=/1000
#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/exposition.h"
#include "prometheus/text_serializer.h"
#include "service/service_metrics.h"
#include "tcpscope/v1/events.pb.h"

namespace tcpscope::bench {
namespace {

using service::HostMetrics;
using service::ServiceMetrics;

// A deterministic spread of small counts, so values differ from series to series.
int Repeats(uint64_t seed) { return 1 + static_cast<int>((seed * 2654435761u) % 7); }

v1::Event BaseEvent(v1::Role role, uint64_t id) {
  v1::Event event;
  event.set_time_unix_ns(1'700'000'000'000'000'000ULL + id);
  event.set_connection_id(id);
  event.set_role(role);
  v1::Endpoints& endpoints = *event.mutable_endpoints();
  endpoints.set_local_address(std::string("\x0a\x00\x00\x01", 4));
  endpoints.set_remote_address(std::string("\x0a\x00\x00\x02", 4));
  endpoints.set_local_port(role == v1::ROLE_SERVER ? 443 : 40000 + id % 20000);
  endpoints.set_remote_port(role == v1::ROLE_SERVER ? 40000 + id % 20000 : 443);
  return event;
}

// Every kind of event the metrics count, each with all of its label values.
std::vector<v1::Event> HostEvents(int host) {
  std::vector<v1::Event> events;
  uint64_t id = static_cast<uint64_t>(host) << 20;
  for (v1::Role role : {v1::ROLE_CLIENT, v1::ROLE_SERVER}) {
    // Handshakes from 50 us to 3 s, spread over the duration buckets.
    for (uint64_t duration_us : {50, 180, 400, 900, 2'000, 7'000, 30'000, 1'100'000, 3'000'000}) {
      for (int i = 0; i < Repeats(id); ++i) {
        v1::Event& event = events.emplace_back(BaseEvent(role, ++id));
        event.mutable_handshake()->set_duration_us(duration_us + i);
      }
    }
    for (int initiator = v1::CLOSE_INITIATOR_LOCAL; initiator <= v1::CLOSE_INITIATOR_UNKNOWN;
         ++initiator) {
      for (int reason = v1::CLOSE_REASON_FIN; reason <= v1::CLOSE_REASON_OTHER; ++reason) {
        for (int i = 0; i < Repeats(id); ++i) {
          v1::Event& event = events.emplace_back(BaseEvent(role, ++id));
          v1::Close& close = *event.mutable_close();
          close.set_initiator(static_cast<v1::CloseInitiator>(initiator));
          close.set_reason(static_cast<v1::CloseReason>(reason));
          // 2 ms to about a day: short HTTP/1.0 exchanges to long keep-alive connections.
          close.set_lifetime_us(2'000ULL << (2 * ((id + i) % 13)));
          close.set_bytes_sent(1000 * id);
        }
      }
    }
    for (int i = 0; i < Repeats(id); ++i) {
      v1::Event& event = events.emplace_back(BaseEvent(role, ++id));
      event.mutable_keepalive_timeout()->set_probes_sent(9);
    }
  }
  for (int reason = v1::HANDSHAKE_FAILURE_REFUSED; reason <= v1::HANDSHAKE_FAILURE_OTHER;
       ++reason) {
    for (int i = 0; i < Repeats(id); ++i) {
      v1::Event& event = events.emplace_back(BaseEvent(v1::ROLE_CLIENT, ++id));
      event.mutable_handshake_failed()->set_reason(static_cast<v1::HandshakeFailureReason>(reason));
    }
  }
  for (int i = 0; i < 3 * Repeats(id); ++i) {
    v1::Event& event = events.emplace_back(BaseEvent(v1::ROLE_SERVER, ++id));
    event.mutable_keepalive_probe()->set_probe_number(1 + i % 9);
  }
  return events;
}

// Connections in every TCP state, some established ones with keepalive on.
v1::Snapshot HostSnapshot(int host) {
  v1::Snapshot snapshot;
  snapshot.set_listeners(4);
  for (int state = v1::TCP_STATE_ESTABLISHED; state <= v1::TCP_STATE_NEW_SYN_RECV; ++state) {
    if (state == v1::TCP_STATE_LISTEN) continue;
    const int count = state == v1::TCP_STATE_ESTABLISHED ? 20 + host % 50 : 1 + (host + state) % 5;
    for (int i = 0; i < count; ++i) {
      v1::Connection& connection = *snapshot.add_connections();
      connection.set_state(static_cast<v1::TcpState>(state));
      connection.mutable_keepalive()->set_enabled(i % 3 == 0);
    }
  }
  return snapshot;
}

// The service's metrics with `hosts` hosts' series, built once per size.
struct Fleet {
  explicit Fleet(int hosts) {
    for (int host = 0; host < hosts; ++host) {
      auto& metrics = host_metrics.emplace_back(std::make_unique<HostMetrics>(
          &service_metrics,
          absl::StrFormat("node-%04d.rack%02d.dc1.example.net", host, host % 40)));
      for (const v1::Event& event : HostEvents(host)) metrics->CountEvent(event);
      metrics->SetSnapshot(HostSnapshot(host));
    }
    families = service_metrics.registry()->Collect();
    for (const auto& family : families) series += family.metric.size();
  }

  ServiceMetrics service_metrics;
  std::vector<std::unique_ptr<HostMetrics>> host_metrics;
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
    std::vector<prometheus::MetricFamily> families = fleet.service_metrics.registry()->Collect();
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

// A whole scrape as /metrics did it before (a) and does it now (b).
void BM_ScrapeTextSerializer(benchmark::State& state) {
  Fleet& fleet = FleetOf(static_cast<int>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text =
        prometheus::TextSerializer().Serialize(fleet.service_metrics.registry()->Collect());
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  Report(state, fleet, bytes);
}

void BM_ScrapeExposition(benchmark::State& state) {
  Fleet& fleet = FleetOf(static_cast<int>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = RenderExposition(fleet.service_metrics.registry()->Collect());
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

}  // namespace
}  // namespace tcpscope::bench

BENCHMARK_MAIN();
