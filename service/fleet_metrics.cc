// Family names, help texts and types of the SPEC families, and the scrape over every host.
#include "service/fleet_metrics.h"

#include <algorithm>
#include <array>

#include "absl/strings/string_view.h"

namespace tcpscope::service {
namespace {

using prometheus::MetricType;

struct FamilyInfo {
  SpecFamily family;
  absl::string_view name;
  absl::string_view help;
  MetricType type;
};

constexpr std::array<FamilyInfo, static_cast<size_t>(SpecFamily::kCount)> kFamilies = {{
    {SpecFamily::kHandshakes, "tcpscope_handshakes_total", "Completed three-way handshakes.",
     MetricType::Counter},
    {SpecFamily::kHandshakeFailures, "tcpscope_handshake_failures_total",
     "Connects that never reached ESTABLISHED, by reason.", MetricType::Counter},
    {SpecFamily::kCloses, "tcpscope_closes_total",
     "Ended connections that had been established, by who closed and why.", MetricType::Counter},
    {SpecFamily::kKeepaliveProbes, "tcpscope_keepalive_probes_total", "Keepalive probes sent.",
     MetricType::Counter},
    {SpecFamily::kKeepaliveTimeouts, "tcpscope_keepalive_timeouts_total",
     "Connections killed because keepalive probes went unanswered.", MetricType::Counter},
    {SpecFamily::kHalfOpenDetected, "tcpscope_half_open_detected_total",
     "Half-open connection ends found, by reason (once per end and reason).", MetricType::Counter},
    {SpecFamily::kWorkloadHandshakeFailures, "tcpscope_workload_handshake_failures_total",
     "Connects of a workload that never reached ESTABLISHED, by reason.", MetricType::Counter},
    {SpecFamily::kWorkloadKeepaliveTimeouts, "tcpscope_workload_keepalive_timeouts_total",
     "Connections of a workload killed because keepalive probes went unanswered.",
     MetricType::Counter},
    {SpecFamily::kWorkloadCloses, "tcpscope_workload_closes_total",
     "Ended connections of a workload that had been established, by reason.", MetricType::Counter},
    {SpecFamily::kPortHandshakeFailures, "tcpscope_port_handshake_failures_total",
     "Connects that never reached ESTABLISHED, by the server's port and reason; ports "
     "beyond --max_ports_per_host are summed in port=\"other\".",
     MetricType::Counter},
    {SpecFamily::kPortCloses, "tcpscope_port_closes_total",
     "Ended connections that had been established, by the server's port and reason; ports "
     "beyond --max_ports_per_host are summed in port=\"other\".",
     MetricType::Counter},
    {SpecFamily::kAgentEvents, "tcpscope_agent_events_total",
     "Events received from the host's agent and applied.", MetricType::Counter},
    {SpecFamily::kAgentEventsLost, "tcpscope_agent_events_lost_total",
     "Events lost before reaching the service, by stage.", MetricType::Counter},
    {SpecFamily::kConnections, "tcpscope_connections",
     "Current connection ends by TCP state, from the latest snapshot.", MetricType::Gauge},
    {SpecFamily::kConnectionsKeepalive, "tcpscope_connections_keepalive",
     "Established connection ends with keepalive on or off.", MetricType::Gauge},
    {SpecFamily::kConnectionsAtRisk, "tcpscope_connections_at_risk",
     "Connection ends that may be silently dead, by reason (see README: at-risk).",
     MetricType::Gauge},
    {SpecFamily::kConnectionsHalfOpen, "tcpscope_connections_half_open",
     "Connection ends ESTABLISHED while their peer's end, seen by another host's agent, is "
     "gone, by reason (see README: half-open).",
     MetricType::Gauge},
    {SpecFamily::kWorkloadConnections, "tcpscope_workload_connections",
     "Current connection ends of a workload (Kubernetes namespace, pod and container, or a "
     "container outside Kubernetes) by TCP state, from the latest snapshot; pods beyond "
     "--max_pods_per_host are summed in pod=\"other\".",
     MetricType::Gauge},
    {SpecFamily::kWorkloadConnectionsAtRisk, "tcpscope_workload_connections_at_risk",
     "Connection ends of a workload that may be silently dead, by reason (see README: "
     "at-risk).",
     MetricType::Gauge},
    {SpecFamily::kWorkloadConnectionsHalfOpen, "tcpscope_workload_connections_half_open",
     "Connection ends of a workload ESTABLISHED while their peer's end is gone, by reason "
     "(see README: half-open).",
     MetricType::Gauge},
    {SpecFamily::kAgentUp, "tcpscope_agent_up", "1 while the host's agent has a stream open.",
     MetricType::Gauge},
    {SpecFamily::kHandshakeDuration, "tcpscope_handshake_duration_seconds",
     "Time from SYN to ESTABLISHED.", MetricType::Histogram},
    {SpecFamily::kLifetime, "tcpscope_connection_lifetime_seconds", "Time from handshake to close.",
     MetricType::Histogram},
}};

constexpr bool InOrder() {
  for (size_t i = 0; i < kFamilies.size(); ++i) {
    if (static_cast<size_t>(kFamilies[i].family) != i) return false;
  }
  return true;
}
static_assert(InOrder(), "kFamilies lists every SpecFamily once, in the enum's order");

}  // namespace

void FleetMetrics::Register(std::shared_ptr<const Source> source) {
  absl::MutexLock lock(&mu_);
  sources_.push_back(std::move(source));
}

void FleetMetrics::Unregister(const Source* source) {
  absl::MutexLock lock(&mu_);
  auto it = std::find_if(sources_.begin(), sources_.end(),
                         [source](const auto& entry) { return entry.get() == source; });
  if (it == sources_.end()) return;
  *it = std::move(sources_.back());
  sources_.pop_back();
}

void FleetMetrics::Write(SampleWriter& writer) const {
  std::vector<std::shared_ptr<const Source>> sources;
  {
    absl::MutexLock lock(&mu_);
    sources = sources_;
  }
  std::sort(sources.begin(), sources.end(),
            [](const auto& a, const auto& b) { return a->host() < b->host(); });
  for (const FamilyInfo& info : kFamilies) {
    writer.Family(info.name, info.help, info.type);
    for (const auto& source : sources) source->Write(info.family, writer);
  }
}

std::vector<prometheus::MetricFamily> FleetMetrics::Collect() const {
  FamilyCollector collector;
  Write(collector);
  return collector.Take();
}

void FleetMetrics::AppendExposition(std::string* out) const {
  const size_t start = out->size();
  out->reserve(start + last_size_.load(std::memory_order_relaxed) * 9 / 8);
  TextSampleWriter writer(out);
  Write(writer);
  last_size_.store(out->size() - start, std::memory_order_relaxed);
}

}  // namespace tcpscope::service
