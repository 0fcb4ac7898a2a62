// Metric families and per-host handles of the service.
#include "service/service_metrics.h"

#include "common/tcp_names.h"

namespace tcpscope::service {
namespace {

using prometheus::Histogram;

// 100 us to 10 s: loopback handshakes to SYN retries.
const Histogram::BucketBoundaries& HandshakeBuckets() {
  static const auto* buckets =
      new Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                      0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
  return *buckets;
}

// 1 ms to a week, so HTTP/1.0-style short connections and long keep-alive ones separate.
const Histogram::BucketBoundaries& LifetimeBuckets() {
  static const auto* buckets = new Histogram::BucketBoundaries{
      0.001, 0.01, 0.1, 1, 10, 60, 300, 1800, 3600, 21600, 86400, 604800};
  return *buckets;
}

template <typename Builder>
auto& Register(Builder builder, const std::string& name, const std::string& help,
               prometheus::Registry& registry) {
  return builder.Name(name).Help(help).Register(registry);
}

int Index(int value, int size) { return value >= 0 && value < size ? value : 0; }

// Snapshot state index for the `state` label: request sockets count as syn_recv.
int StateIndex(v1::TcpState state) {
  if (state == v1::TCP_STATE_NEW_SYN_RECV) return v1::TCP_STATE_SYN_RECV;
  return Index(state, 12);
}

}  // namespace

ServiceMetrics::ServiceMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      handshakes(Register(prometheus::BuildCounter(), "tcpscope_handshakes_total",
                          "Completed three-way handshakes.", *registry_)),
      handshake_failures(Register(prometheus::BuildCounter(), "tcpscope_handshake_failures_total",
                                  "Connects that never reached ESTABLISHED, by reason.",
                                  *registry_)),
      handshake_duration(Register(prometheus::BuildHistogram(),
                                  "tcpscope_handshake_duration_seconds",
                                  "Time from SYN to ESTABLISHED.", *registry_)),
      closes(Register(prometheus::BuildCounter(), "tcpscope_closes_total",
                      "Ended connections that had been established, by who closed and why.",
                      *registry_)),
      lifetime(Register(prometheus::BuildHistogram(), "tcpscope_connection_lifetime_seconds",
                        "Time from handshake to close.", *registry_)),
      keepalive_probes(Register(prometheus::BuildCounter(), "tcpscope_keepalive_probes_total",
                                "Keepalive probes sent.", *registry_)),
      keepalive_timeouts(Register(prometheus::BuildCounter(), "tcpscope_keepalive_timeouts_total",
                                  "Connections killed because keepalive probes went unanswered.",
                                  *registry_)),
      connections(Register(prometheus::BuildGauge(), "tcpscope_connections",
                           "Current connection ends by TCP state, from the latest snapshot.",
                           *registry_)),
      connections_keepalive(Register(prometheus::BuildGauge(), "tcpscope_connections_keepalive",
                                     "Established connection ends with keepalive on or off.",
                                     *registry_)),
      connections_at_risk(
          Register(prometheus::BuildGauge(), "tcpscope_connections_at_risk",
                   "Connection ends that may be silently dead, by reason (see README: at-risk).",
                   *registry_)),
      connections_half_open(Register(
          prometheus::BuildGauge(), "tcpscope_connections_half_open",
          "Connection ends ESTABLISHED while their peer's end, seen by another host's agent, is "
          "gone, by reason (see README: half-open).",
          *registry_)),
      half_open_detected(Register(
          prometheus::BuildCounter(), "tcpscope_half_open_detected_total",
          "Half-open connection ends found, by reason (once per end and reason).", *registry_)),
      workload_connections(Register(
          prometheus::BuildGauge(), "tcpscope_workload_connections",
          "Current connection ends of a workload (Kubernetes namespace, pod and container, or a "
          "container outside Kubernetes) by TCP state, from the latest snapshot; pods beyond "
          "--max_pods_per_host are summed in pod=\"other\".",
          *registry_)),
      workload_connections_at_risk(Register(
          prometheus::BuildGauge(), "tcpscope_workload_connections_at_risk",
          "Connection ends of a workload that may be silently dead, by reason (see README: "
          "at-risk).",
          *registry_)),
      workload_connections_half_open(Register(
          prometheus::BuildGauge(), "tcpscope_workload_connections_half_open",
          "Connection ends of a workload ESTABLISHED while their peer's end is gone, by reason "
          "(see README: half-open).",
          *registry_)),
      workload_handshake_failures(Register(
          prometheus::BuildCounter(), "tcpscope_workload_handshake_failures_total",
          "Connects of a workload that never reached ESTABLISHED, by reason.", *registry_)),
      workload_keepalive_timeouts(
          Register(prometheus::BuildCounter(), "tcpscope_workload_keepalive_timeouts_total",
                   "Connections of a workload killed because keepalive probes went unanswered.",
                   *registry_)),
      workload_closes(Register(prometheus::BuildCounter(), "tcpscope_workload_closes_total",
                               "Ended connections of a workload that had been established, by "
                               "reason.",
                               *registry_)),
      port_handshake_failures(Register(
          prometheus::BuildCounter(), "tcpscope_port_handshake_failures_total",
          "Connects that never reached ESTABLISHED, by the server's port and reason; ports "
          "beyond --max_ports_per_host are summed in port=\"other\".",
          *registry_)),
      port_closes(Register(prometheus::BuildCounter(), "tcpscope_port_closes_total",
                           "Ended connections that had been established, by the server's port "
                           "and reason; ports beyond --max_ports_per_host are summed in "
                           "port=\"other\".",
                           *registry_)),
      agent_up(Register(prometheus::BuildGauge(), "tcpscope_agent_up",
                        "1 while the host's agent has a stream open.", *registry_)),
      agent_events(Register(prometheus::BuildCounter(), "tcpscope_agent_events_total",
                            "Events received from the host's agent and applied.", *registry_)),
      agent_events_lost(Register(prometheus::BuildCounter(), "tcpscope_agent_events_lost_total",
                                 "Events lost before reaching the service, by stage.", *registry_)),
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
      rejected_(Register(prometheus::BuildCounter(), "tcpscope_service_rejected_total",
                         "Messages and streams refused, by reason.", *registry_)) {}

prometheus::Counter& ServiceMetrics::Rejected(const std::string& reason) {
  return rejected_.Add({{"reason", reason}});
}

HostMetrics::HostMetrics(ServiceMetrics* families, std::string host)
    : families_(families),
      host_(std::move(host)),
      up_(families->agent_up.Add({{"host", host_}})),
      events_(families->agent_events.Add({{"host", host_}})) {
  static constexpr const char* kStages[] = {"kernel", "agent", "transport"};
  for (int i = 0; i < 3; ++i) {
    lost_[i] = &families->agent_events_lost.Add({{"host", host_}, {"stage", kStages[i]}});
  }
}

HostMetrics::~HostMetrics() {
  ClearSnapshot();
  ClearHalfOpen();
  for (auto* counter : half_open_detected_) {
    if (counter != nullptr) families_->half_open_detected.Remove(counter);
  }
  families_->agent_up.Remove(&up_);
  families_->agent_events.Remove(&events_);
  for (auto* counter : lost_) families_->agent_events_lost.Remove(counter);
  if (keepalive_probes_ != nullptr) families_->keepalive_probes.Remove(keepalive_probes_);
  for (auto* counter : handshakes_) {
    if (counter != nullptr) families_->handshakes.Remove(counter);
  }
  for (auto* histogram : handshake_duration_) {
    if (histogram != nullptr) families_->handshake_duration.Remove(histogram);
  }
  for (auto* counter : closes_) {
    if (counter != nullptr) families_->closes.Remove(counter);
  }
  for (auto* histogram : lifetime_) {
    if (histogram != nullptr) families_->lifetime.Remove(histogram);
  }
  for (auto* counter : failures_) {
    if (counter != nullptr) families_->handshake_failures.Remove(counter);
  }
  for (auto* counter : timeouts_) {
    if (counter != nullptr) families_->keepalive_timeouts.Remove(counter);
  }
}

prometheus::Counter& HostMetrics::Handshakes(v1::Role role) {
  auto*& slot = handshakes_[Index(role, kRoles)];
  if (slot == nullptr) {
    slot = &families_->handshakes.Add({{"host", host_}, {"role", std::string(RoleName(role))}});
  }
  return *slot;
}

prometheus::Histogram& HostMetrics::HandshakeDuration(v1::Role role) {
  auto*& slot = handshake_duration_[Index(role, kRoles)];
  if (slot == nullptr) {
    slot = &families_->handshake_duration.Add(
        {{"host", host_}, {"role", std::string(RoleName(role))}}, HandshakeBuckets());
  }
  return *slot;
}

prometheus::Counter& HostMetrics::Closes(v1::Role role, v1::CloseInitiator initiator,
                                         v1::CloseReason reason) {
  const int index = (Index(role, kRoles) * kInitiators + Index(initiator, kInitiators)) * kReasons +
                    Index(reason, kReasons);
  auto*& slot = closes_[index];
  if (slot == nullptr) {
    slot = &families_->closes.Add({{"host", host_},
                                   {"role", std::string(RoleName(role))},
                                   {"initiator", std::string(CloseInitiatorName(initiator))},
                                   {"reason", std::string(CloseReasonName(reason))}});
  }
  return *slot;
}

prometheus::Histogram& HostMetrics::Lifetime(v1::Role role) {
  auto*& slot = lifetime_[Index(role, kRoles)];
  if (slot == nullptr) {
    slot = &families_->lifetime.Add({{"host", host_}, {"role", std::string(RoleName(role))}},
                                    LifetimeBuckets());
  }
  return *slot;
}

prometheus::Counter& HostMetrics::Failures(v1::HandshakeFailureReason reason) {
  auto*& slot = failures_[Index(reason, kFailureReasons)];
  if (slot == nullptr) {
    slot = &families_->handshake_failures.Add(
        {{"host", host_}, {"reason", std::string(HandshakeFailureReasonName(reason))}});
  }
  return *slot;
}

prometheus::Counter& HostMetrics::Timeouts(v1::Role role) {
  auto*& slot = timeouts_[Index(role, kRoles)];
  if (slot == nullptr) {
    slot = &families_->keepalive_timeouts.Add(
        {{"host", host_}, {"role", std::string(RoleName(role))}});
  }
  return *slot;
}

void HostMetrics::CountEvent(const v1::Event& event) {
  switch (event.kind_case()) {
    case v1::Event::kHandshake:
      Handshakes(event.role()).Increment();
      if (event.handshake().has_duration_us()) {
        HandshakeDuration(event.role()).Observe(event.handshake().duration_us() / 1e6);
      }
      break;
    case v1::Event::kHandshakeFailed:
      Failures(event.handshake_failed().reason()).Increment();
      break;
    case v1::Event::kClose: {
      const v1::Close& close = event.close();
      Closes(event.role(), close.initiator(), close.reason()).Increment();
      if (close.has_lifetime_us()) Lifetime(event.role()).Observe(close.lifetime_us() / 1e6);
      break;
    }
    case v1::Event::kKeepaliveProbe:
      if (keepalive_probes_ == nullptr) {
        keepalive_probes_ = &families_->keepalive_probes.Add({{"host", host_}});
      }
      keepalive_probes_->Increment();
      break;
    case v1::Event::kKeepaliveTimeout:
      Timeouts(event.role()).Increment();
      break;
    case v1::Event::kKeepaliveAnswered:  // an event to watch, not a SPEC series
    case v1::Event::kHalfOpen:           // never from an agent (refused by validation)
      break;
    case v1::Event::KIND_NOT_SET:
      break;
  }
}

void HostMetrics::AddEvents(uint64_t count) { events_.Increment(static_cast<double>(count)); }

void HostMetrics::SetLosses(const v1::LossCounters& cumulative) {
  const uint64_t seen[] = {losses_seen_.kernel(), losses_seen_.agent(), losses_seen_.transport()};
  const uint64_t now[] = {cumulative.kernel(), cumulative.agent(), cumulative.transport()};
  for (int i = 0; i < 3; ++i) {
    if (now[i] > seen[i]) lost_[i]->Increment(static_cast<double>(now[i] - seen[i]));
  }
  losses_seen_ = cumulative;
}

void HostMetrics::SetUp(bool up) { up_.Set(up ? 1 : 0); }

void HostMetrics::SetSnapshot(const v1::Snapshot& snapshot) {
  std::array<int, kStates> counts{};
  std::array<int, 2> keepalive{};
  for (const v1::Connection& connection : snapshot.connections()) {
    ++counts[StateIndex(connection.state())];
    if (connection.state() == v1::TCP_STATE_ESTABLISHED) {
      ++keepalive[connection.keepalive().enabled() ? 1 : 0];
    }
  }
  counts[v1::TCP_STATE_LISTEN] += static_cast<int>(snapshot.listeners());
  for (int state = 1; state < kStates; ++state) {
    if (states_[state] == nullptr) {
      states_[state] = &families_->connections.Add(
          {{"host", host_},
           {"state", std::string(TcpStateName(static_cast<v1::TcpState>(state)))}});
    }
    states_[state]->Set(counts[state]);
  }
  for (int on = 0; on < 2; ++on) {
    if (keepalive_[on] == nullptr) {
      keepalive_[on] = &families_->connections_keepalive.Add(
          {{"host", host_}, {"keepalive", on ? "on" : "off"}});
    }
    keepalive_[on]->Set(keepalive[on]);
  }
}

void HostMetrics::SetAtRisk(const std::array<uint32_t, 4>& counts) {
  for (int reason = 1; reason < 4; ++reason) {
    if (at_risk_[reason] == nullptr) {
      at_risk_[reason] = &families_->connections_at_risk.Add(
          {{"host", host_},
           {"reason", std::string(AtRiskReasonName(static_cast<v1::AtRiskReason>(reason)))}});
    }
    at_risk_[reason]->Set(counts[reason]);
  }
}

void HostMetrics::ClearSnapshot() {
  for (auto*& gauge : at_risk_) {
    if (gauge != nullptr) families_->connections_at_risk.Remove(gauge);
    gauge = nullptr;
  }
  for (auto*& gauge : states_) {
    if (gauge != nullptr) families_->connections.Remove(gauge);
    gauge = nullptr;
  }
  for (auto*& gauge : keepalive_) {
    if (gauge != nullptr) families_->connections_keepalive.Remove(gauge);
    gauge = nullptr;
  }
}

void HostMetrics::SetHalfOpen(const std::array<uint32_t, v1::HalfOpenReason_ARRAYSIZE>& counts) {
  for (size_t reason = 1; reason < counts.size(); ++reason) {
    if (half_open_[reason] == nullptr) {
      half_open_[reason] = &families_->connections_half_open.Add(
          {{"host", host_},
           {"reason", std::string(HalfOpenReasonName(static_cast<v1::HalfOpenReason>(reason)))}});
    }
    half_open_[reason]->Set(counts[reason]);
  }
}

void HostMetrics::ClearHalfOpen() {
  for (auto*& gauge : half_open_) {
    if (gauge != nullptr) families_->connections_half_open.Remove(gauge);
    gauge = nullptr;
  }
}

void HostMetrics::CountHalfOpenDetected(v1::HalfOpenReason reason) {
  prometheus::Counter*& counter = half_open_detected_[reason];
  if (counter == nullptr) {
    counter = &families_->half_open_detected.Add(
        {{"host", host_}, {"reason", std::string(HalfOpenReasonName(reason))}});
  }
  counter->Increment();
}

}  // namespace tcpscope::service
