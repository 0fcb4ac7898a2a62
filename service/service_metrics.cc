// The host-level SPEC series as plain values, and the service's own series.
#include "service/service_metrics.h"

#include <algorithm>
#include <iterator>

#include "common/tcp_names.h"
#include "service/relaxed_values.h"

namespace tcpscope::service {
namespace {

using Label = SampleWriter::Label;

// 100 us to 10 s: loopback handshakes to SYN retries.
constexpr std::array<double, 16> kHandshakeBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                     0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                     1,      2.5,     5,      10};
// 1 ms to a week, so HTTP/1.0-style short connections and long keep-alive ones separate.
constexpr std::array<double, 12> kLifetimeBounds = {0.001, 0.01, 0.1,  1,     10,    60,
                                                    300,   1800, 3600, 21600, 86400, 604800};

constexpr int kRoles = v1::Role_ARRAYSIZE;
constexpr int kInitiators = v1::CloseInitiator_ARRAYSIZE;
constexpr int kCloseReasons = v1::CloseReason_ARRAYSIZE;
constexpr int kFailureReasons = v1::HandshakeFailureReason_ARRAYSIZE;
constexpr int kStates = v1::TcpState_ARRAYSIZE;
constexpr int kAtRiskReasons = v1::AtRiskReason_ARRAYSIZE;
constexpr int kHalfOpenReasons = v1::HalfOpenReason_ARRAYSIZE;
constexpr const char* kStages[] = {"kernel", "agent"};
constexpr int kStageCount = 2;

// A histogram as prometheus-cpp's: per-bucket counts (an observation goes to the first bucket
// whose bound is >= it; the last bucket is +Inf) and the sum of the observations.
template <size_t N>
struct HistogramValues {
  std::array<std::atomic<uint64_t>, N + 1> buckets{};
  std::atomic<double> sum{0};

  void Observe(double value, const std::array<double, N>& bounds) {
    const size_t bucket =
        static_cast<size_t>(std::find_if(bounds.begin(), bounds.end(),
                                         [value](double bound) { return bound >= value; }) -
                            bounds.begin());
    Add(buckets[bucket]);
    sum.fetch_add(value, std::memory_order_relaxed);
  }

  // Empty when the histogram has no observation.
  bool Read(std::array<uint64_t, N + 1>* counts, double* total) const {
    uint64_t count = 0;
    for (size_t i = 0; i <= N; ++i) count += (*counts)[i] = Load(buckets[i]);
    *total = Load(sum);
    return count > 0;
  }
};

template <typename Builder>
auto& Register(Builder builder, const std::string& name, const std::string& help,
               prometheus::Registry& registry) {
  return builder.Name(name).Help(help).Register(registry);
}

}  // namespace

class HostMetrics::Series final : public FleetMetrics::Source {
 public:
  explicit Series(std::string host) : host_(std::move(host)) {}

  const std::string& host() const override { return host_; }
  void Write(SpecFamily family, SampleWriter& writer) const override;

  static int CloseIndex(int role, int initiator, int reason) {
    return (role * kInitiators + initiator) * kCloseReasons + reason;
  }

  const std::string host_;
  std::atomic<bool> up{false};
  std::atomic<uint64_t> events{0};
  std::array<std::atomic<uint64_t>, kStageCount> lost{};
  std::atomic<uint64_t> keepalive_probes{0};
  std::array<std::atomic<uint64_t>, kRoles> handshakes{};
  std::array<HistogramValues<kHandshakeBounds.size()>, kRoles> handshake_duration{};
  std::array<std::atomic<uint64_t>, kRoles * kInitiators * kCloseReasons> closes{};
  std::atomic<uint64_t> closes_short{0};  // for the Summary call: lifetime under 1 s
  std::atomic<uint64_t> closes_long{0};
  std::array<HistogramValues<kLifetimeBounds.size()>, kRoles> lifetime{};
  std::array<std::atomic<uint64_t>, kFailureReasons> failures{};
  std::array<std::atomic<uint64_t>, kRoles> timeouts{};
  // Snapshot gauges, shown from SetSnapshot to ClearSnapshot.
  std::atomic<bool> snapshot_shown{false};
  std::array<std::atomic<uint32_t>, kStates> states{};
  std::array<std::atomic<uint32_t>, 2> keepalive{};  // off, on
  std::atomic<bool> at_risk_shown{false};
  std::array<std::atomic<uint32_t>, kAtRiskReasons> at_risk{};
  // Half-open gauges, shown from SetHalfOpen to ClearHalfOpen; findings.
  std::atomic<bool> half_open_shown{false};
  std::array<std::atomic<uint32_t>, kHalfOpenReasons> half_open{};
  std::array<std::atomic<uint64_t>, kHalfOpenReasons> half_open_detected{};
};

void HostMetrics::Series::Write(SpecFamily family, SampleWriter& writer) const {
  const Label host{"host", host_};
  // A counter series exists once it counted something.
  auto counter = [&writer](std::initializer_list<Label> labels,
                           const std::atomic<uint64_t>& value) {
    const uint64_t count = Load(value);
    if (count > 0) writer.Sample(labels, static_cast<double>(count));
  };
  switch (family) {
    case SpecFamily::kHandshakes:
      for (int role = 0; role < kRoles; ++role) {
        counter({host, {"role", RoleName(static_cast<v1::Role>(role))}}, handshakes[role]);
      }
      break;
    case SpecFamily::kHandshakeFailures:
      for (int reason = 0; reason < kFailureReasons; ++reason) {
        counter({host,
                 {"reason",
                  HandshakeFailureReasonName(static_cast<v1::HandshakeFailureReason>(reason))}},
                failures[reason]);
      }
      break;
    case SpecFamily::kHandshakeDuration:
      for (int role = 0; role < kRoles; ++role) {
        std::array<uint64_t, kHandshakeBounds.size() + 1> buckets;
        double sum = 0;
        if (!handshake_duration[role].Read(&buckets, &sum)) continue;
        writer.Histogram({host, {"role", RoleName(static_cast<v1::Role>(role))}}, kHandshakeBounds,
                         buckets, sum);
      }
      break;
    case SpecFamily::kCloses:
      for (int role = 0; role < kRoles; ++role) {
        const Label role_label{"role", RoleName(static_cast<v1::Role>(role))};
        for (int initiator = 0; initiator < kInitiators; ++initiator) {
          const Label initiator_label{
              "initiator", CloseInitiatorName(static_cast<v1::CloseInitiator>(initiator))};
          for (int reason = 0; reason < kCloseReasons; ++reason) {
            counter({host,
                     initiator_label,
                     {"reason", CloseReasonName(static_cast<v1::CloseReason>(reason))},
                     role_label},
                    closes[CloseIndex(role, initiator, reason)]);
          }
        }
      }
      break;
    case SpecFamily::kLifetime:
      for (int role = 0; role < kRoles; ++role) {
        std::array<uint64_t, kLifetimeBounds.size() + 1> buckets;
        double sum = 0;
        if (!lifetime[role].Read(&buckets, &sum)) continue;
        writer.Histogram({host, {"role", RoleName(static_cast<v1::Role>(role))}}, kLifetimeBounds,
                         buckets, sum);
      }
      break;
    case SpecFamily::kKeepaliveProbes:
      counter({host}, keepalive_probes);
      break;
    case SpecFamily::kKeepaliveTimeouts:
      for (int role = 0; role < kRoles; ++role) {
        counter({host, {"role", RoleName(static_cast<v1::Role>(role))}}, timeouts[role]);
      }
      break;
    case SpecFamily::kConnections:
      if (!Load(snapshot_shown)) break;
      // Request sockets are counted as syn_recv: NEW_SYN_RECV has no series of its own.
      for (int state = 1; state < kStates; ++state) {
        if (state == v1::TCP_STATE_NEW_SYN_RECV) continue;
        writer.Sample({host, {"state", TcpStateName(static_cast<v1::TcpState>(state))}},
                      Load(states[state]));
      }
      break;
    case SpecFamily::kConnectionsKeepalive:
      if (!Load(snapshot_shown)) break;
      writer.Sample({host, {"keepalive", "off"}}, Load(keepalive[0]));
      writer.Sample({host, {"keepalive", "on"}}, Load(keepalive[1]));
      break;
    case SpecFamily::kConnectionsAtRisk:
      if (!Load(at_risk_shown)) break;
      for (int reason = 1; reason < kAtRiskReasons; ++reason) {
        writer.Sample({host, {"reason", AtRiskReasonName(static_cast<v1::AtRiskReason>(reason))}},
                      Load(at_risk[reason]));
      }
      break;
    case SpecFamily::kConnectionsHalfOpen:
      if (!Load(half_open_shown)) break;
      for (int reason = 1; reason < kHalfOpenReasons; ++reason) {
        writer.Sample(
            {host, {"reason", HalfOpenReasonName(static_cast<v1::HalfOpenReason>(reason))}},
            Load(half_open[reason]));
      }
      break;
    case SpecFamily::kHalfOpenDetected:
      for (int reason = 1; reason < kHalfOpenReasons; ++reason) {
        counter({host, {"reason", HalfOpenReasonName(static_cast<v1::HalfOpenReason>(reason))}},
                half_open_detected[reason]);
      }
      break;
    case SpecFamily::kAgentUp:
      writer.Sample({host}, Load(up) ? 1 : 0);
      break;
    case SpecFamily::kAgentEvents:
      writer.Sample({host}, static_cast<double>(Load(events)));
      break;
    case SpecFamily::kAgentEventsLost:
      for (int stage = 0; stage < kStageCount; ++stage) {
        writer.Sample({host, {"stage", kStages[stage]}}, static_cast<double>(Load(lost[stage])));
      }
      break;
    default:  // a workload's family
      break;
  }
}

HostMetrics::HostMetrics(ServiceMetrics* metrics, std::string host)
    : fleet_(metrics->fleet().get()), series_(std::make_shared<Series>(std::move(host))) {
  fleet_->Register(series_);
}

HostMetrics::~HostMetrics() { fleet_->Unregister(series_.get()); }

void HostMetrics::CountEvent(const v1::Event& event) {
  Series& s = *series_;
  const int role = Index(event.role(), kRoles);
  switch (event.kind_case()) {
    case v1::Event::kHandshake:
      Add(s.handshakes[role]);
      if (event.handshake().has_duration_us()) {
        s.handshake_duration[role].Observe(event.handshake().duration_us() / 1e6, kHandshakeBounds);
      }
      break;
    case v1::Event::kHandshakeFailed:
      Add(s.failures[Index(event.handshake_failed().reason(), kFailureReasons)]);
      break;
    case v1::Event::kClose: {
      const v1::Close& close = event.close();
      Add(s.closes[Series::CloseIndex(role, Index(close.initiator(), kInitiators),
                                      Index(close.reason(), kCloseReasons))]);
      if (close.has_lifetime_us()) {
        s.lifetime[role].Observe(close.lifetime_us() / 1e6, kLifetimeBounds);
        Add(close.lifetime_us() < 1000000 ? s.closes_short : s.closes_long);
      }
      break;
    }
    case v1::Event::kKeepaliveProbe:
      Add(s.keepalive_probes);
      break;
    case v1::Event::kKeepaliveTimeout:
      Add(s.timeouts[role]);
      break;
    default:
      // Kinds without a series of their own (keepalive_answered, and any new kind) count only
      // in tcpscope_agent_events_total; half_open never comes from an agent.
      break;
  }
}

void HostMetrics::AddEvents(uint64_t count) { Add(series_->events, count); }

void HostMetrics::SetLosses(const v1::LossCounters& cumulative) {
  const uint64_t seen[] = {losses_seen_.kernel(), losses_seen_.agent()};
  const uint64_t now[] = {cumulative.kernel(), cumulative.agent()};
  for (int i = 0; i < kStageCount; ++i) {
    if (now[i] > seen[i]) Add(series_->lost[i], now[i] - seen[i]);
  }
  losses_seen_ = cumulative;
}

void HostMetrics::SetUp(bool up) { Store(series_->up, up); }

void HostMetrics::SetSnapshot(const SnapshotCounts& counts) {
  Series& s = *series_;
  for (int state = 0; state < kStates; ++state) Store(s.states[state], counts.states[state]);
  Store(s.keepalive[0], counts.keepalive_off);
  Store(s.keepalive[1], counts.keepalive_on);
  Store(s.snapshot_shown, true);
  SetAtRisk(counts.at_risk);
}

void HostMetrics::SetAtRisk(const AtRiskCounts& counts) {
  for (int reason = 0; reason < kAtRiskReasons; ++reason) {
    Store(series_->at_risk[reason], counts[reason]);
  }
  Store(series_->at_risk_shown, true);
}

void HostMetrics::ClearSnapshot() {
  Store(series_->snapshot_shown, false);
  Store(series_->at_risk_shown, false);
}

void HostMetrics::SetHalfOpen(const HalfOpenCounts& counts) {
  for (int reason = 0; reason < kHalfOpenReasons; ++reason) {
    Store(series_->half_open[reason], counts[reason]);
  }
  Store(series_->half_open_shown, true);
}

void HostMetrics::ClearHalfOpen() { Store(series_->half_open_shown, false); }

void HostMetrics::CountHalfOpenDetected(v1::HalfOpenReason reason) {
  Add(series_->half_open_detected[Index(reason, kHalfOpenReasons)]);
}

EventTotals HostMetrics::totals() const {
  const Series& s = *series_;
  EventTotals totals;
  totals.events = Load(s.events);
  for (int role = 0; role < kRoles; ++role) {
    totals.handshakes += Load(s.handshakes[role]);
    totals.keepalive_timeouts += Load(s.timeouts[role]);
    for (int initiator = 0; initiator < kInitiators; ++initiator) {
      for (int reason = 0; reason < kCloseReasons; ++reason) {
        const uint64_t count = Load(s.closes[Series::CloseIndex(role, initiator, reason)]);
        totals.closes_by_initiator[initiator] += count;
        totals.closes_by_reason[reason] += count;
      }
    }
  }
  for (int reason = 0; reason < kFailureReasons; ++reason) {
    totals.failures[reason] = Load(s.failures[reason]);
  }
  totals.closes_short = Load(s.closes_short);
  totals.closes_long = Load(s.closes_long);
  totals.keepalive_probes = Load(s.keepalive_probes);
  return totals;
}

ServiceMetrics::ServiceMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      fleet_(std::make_shared<FleetMetrics>()),
      streams(Register(prometheus::BuildGauge(), "tcpscope_service_ingest_streams",
                       "Agent streams currently open.", *registry_)
                  .Add({})),
      batches_applied(Register(prometheus::BuildCounter(), "tcpscope_service_batches_total",
                               "Agent batches received, applied or recognised as resent.",
                               *registry_)
                          .Add({{"result", "applied"}})),
      batches_duplicate(Register(prometheus::BuildCounter(), "tcpscope_service_batches_total",
                                 "Agent batches received, applied or recognised as resent.",
                                 *registry_)
                            .Add({{"result", "duplicate"}})),
      watchers(Register(prometheus::BuildGauge(), "tcpscope_service_event_watchers",
                        "Open GetEvents streams that follow live events.", *registry_)
                   .Add({})),
      watch_events_missed(
          Register(prometheus::BuildCounter(), "tcpscope_service_watch_events_missed_total",
                   "Events not delivered to watchers that read too slowly.", *registry_)
              .Add({})),
      hosts(Register(prometheus::BuildGauge(), "tcpscope_service_hosts",
                     "Hosts the service holds series for, connected or not yet expired.",
                     *registry_)
                .Add({})),
      hosts_expired(Register(prometheus::BuildCounter(), "tcpscope_service_hosts_expired_total",
                             "Disconnected hosts whose series were removed after --host_expiry.",
                             *registry_)
                        .Add({})),
      history_events(Register(prometheus::BuildGauge(), "tcpscope_service_event_history_events",
                              "Events held in the in-memory history for GetEvents.", *registry_)
                         .Add({})),
      pair_index_entries(Register(prometheus::BuildGauge(), "tcpscope_service_pair_index_entries",
                                  "Connection tuples the half-open pairing index tracks.",
                                  *registry_)
                             .Add({})),
      pair_index_ends(Register(prometheus::BuildGauge(), "tcpscope_service_pair_index_ends",
                               "Connection ends of the hosts' latest snapshots in the pairing "
                               "index.",
                               *registry_)
                          .Add({})),
      replica_forwarded_ends(
          Register(prometheus::BuildCounter(), "tcpscope_service_replica_forwarded_ends_total",
                   "Connection ends of this replica's hosts sent to the replicas owning their "
                   "tuples.",
                   *registry_)
              .Add({})),
      replica_received_ends(
          Register(prometheus::BuildCounter(), "tcpscope_service_replica_received_ends_total",
                   "Connection ends of other replicas' hosts received for this replica's "
                   "tuples.",
                   *registry_)
              .Add({})),
      replica_remote_hosts(Register(prometheus::BuildGauge(),
                                    "tcpscope_service_replica_remote_hosts",
                                    "Hosts homed on other replicas with ends in this replica's "
                                    "tuples.",
                                    *registry_)
                               .Add({})),
      replica_fragments_ignored(Register(
          prometheus::BuildCounter(), "tcpscope_service_replica_fragments_ignored_total",
          "Other replicas' fragments not applied, by reason (other_ring: sent before "
          "the two agreed on the ring; homed_here: the host's agent is connected here; stale: "
          "older than the host's view from its new home).",
          *registry_)),
      rejected_(Register(prometheus::BuildCounter(), "tcpscope_service_rejected_total",
                         "Messages and streams refused, by reason.", *registry_)) {}

std::vector<prometheus::MetricFamily> ServiceMetrics::Collect() const {
  std::vector<prometheus::MetricFamily> families = fleet_->Collect();
  std::vector<prometheus::MetricFamily> own = registry_->Collect();
  std::move(own.begin(), own.end(), std::back_inserter(families));
  return families;
}

prometheus::Counter& ServiceMetrics::Rejected(const std::string& reason) {
  return rejected_.Add({{"reason", reason}});
}

}  // namespace tcpscope::service
