// The pre-FleetMetrics SPEC series on prometheus-cpp (see prometheus_reference.h): the code of
// service/service_metrics.cc and service/workload_metrics.cc at commit faa8a27, without the
// service's own health series.
#include "bench/prometheus_reference.h"

#include "absl/strings/str_cat.h"
#include "common/tcp_names.h"

namespace tcpscope::reference {
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
                                 "Events lost before reaching the service, by stage.",
                                 *registry_)) {}

HostMetrics::HostMetrics(ServiceMetrics* families, std::string host)
    : families_(families),
      host_(std::move(host)),
      up_(families->agent_up.Add({{"host", host_}})),
      events_(families->agent_events.Add({{"host", host_}})) {
  static constexpr const char* kStages[] = {"kernel", "agent"};
  for (int i = 0; i < 2; ++i) {
    lost_[i] = &families->agent_events_lost.Add({{"host", host_}, {"stage", kStages[i]}});
  }
}

HostMetrics::~HostMetrics() {
  ClearSnapshot();
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
  const uint64_t seen[] = {losses_seen_.kernel(), losses_seen_.agent()};
  const uint64_t now[] = {cumulative.kernel(), cumulative.agent()};
  for (int i = 0; i < 2; ++i) {
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

HalfOpenSeries::HalfOpenSeries(ServiceMetrics* families, std::string host)
    : families_(families), host_(std::move(host)) {}

HalfOpenSeries::~HalfOpenSeries() {
  for (auto* gauge : gauges_) {
    if (gauge != nullptr) families_->connections_half_open.Remove(gauge);
  }
  for (auto* counter : detected_) {
    if (counter != nullptr) families_->half_open_detected.Remove(counter);
  }
}

void HalfOpenSeries::Set(const std::array<uint32_t, 4>& counts) {
  for (int reason = 1; reason < 4; ++reason) {
    if (gauges_[reason] == nullptr) {
      gauges_[reason] = &families_->connections_half_open.Add(
          {{"host", host_},
           {"reason", std::string(HalfOpenReasonName(static_cast<v1::HalfOpenReason>(reason)))}});
    }
    gauges_[reason]->Set(counts[reason]);
  }
}

void HalfOpenSeries::Clear() {
  for (auto*& gauge : gauges_) {
    if (gauge != nullptr) families_->connections_half_open.Remove(gauge);
    gauge = nullptr;
  }
}

void HalfOpenSeries::CountDetected(v1::HalfOpenReason reason) {
  if (detected_[reason] == nullptr) {
    detected_[reason] = &families_->half_open_detected.Add(
        {{"host", host_}, {"reason", std::string(HalfOpenReasonName(reason))}});
  }
  detected_[reason]->Increment();
}

namespace {

constexpr size_t kContainerIdPrefix = 12;  // as `docker ps` shortens ids
constexpr absl::string_view kOther = "other";

// The `state` label's index, -1 for states without a workload gauge.
int WorkloadStateIndex(v1::TcpState state) {
  switch (state) {
    case v1::TCP_STATE_ESTABLISHED:
      return 0;
    case v1::TCP_STATE_SYN_SENT:
      return 1;
    case v1::TCP_STATE_SYN_RECV:
    case v1::TCP_STATE_NEW_SYN_RECV:
      return 2;
    case v1::TCP_STATE_CLOSE_WAIT:
      return 3;
    case v1::TCP_STATE_TIME_WAIT:
      return 4;
    default:
      return -1;
  }
}

constexpr v1::TcpState kStateOfIndex[] = {v1::TCP_STATE_ESTABLISHED, v1::TCP_STATE_SYN_SENT,
                                          v1::TCP_STATE_SYN_RECV, v1::TCP_STATE_CLOSE_WAIT,
                                          v1::TCP_STATE_TIME_WAIT};

int WorkloadIndex(int value, int size) { return value >= 0 && value < size ? value : 0; }

}  // namespace

using service::ServerPort;
using service::WorkloadOf;
using service::WorkloadView;

WorkloadMetrics::WorkloadMetrics(ServiceMetrics* families, std::string host,
                                 service::WorkloadLimits limits)
    : families_(families), host_(std::move(host)), limits_(limits) {}

WorkloadMetrics::~WorkloadMetrics() { RemoveAll(); }

void WorkloadMetrics::RemoveAll() {
  absl::MutexLock lock(&mu_);
  removed_ = true;
  live_ = false;
  for (auto& [key, series] : series_) RemoveSeries(*series);
  for (auto& [number, port] : ports_) RemovePort(*port);
  if (other_port_ != nullptr) RemovePort(*other_port_);
  series_.clear();
  slots_.clear();
  ports_.clear();
  other_port_.reset();
}

prometheus::Labels WorkloadMetrics::LabelsOf(const Series& series, const char* name,
                                             absl::string_view value) const {
  prometheus::Labels labels = {{"host", host_},
                               {"namespace", series.pod_namespace},
                               {"pod", series.pod},
                               {"container", series.container}};
  if (name != nullptr) labels.emplace(name, std::string(value));
  return labels;
}

WorkloadMetrics::Series* WorkloadMetrics::Resolve(const v1::Origin& origin, absl::Time now,
                                                  bool allocate) {
  const std::optional<WorkloadView> workload = WorkloadOf(origin);
  if (!workload.has_value()) return nullptr;
  // Most often the workload has its series already: one lookup.
  scratch_.clear();
  absl::StrAppend(&scratch_, workload->pod_namespace, "/", workload->pod, "/", workload->container);
  if (auto it = series_.find(scratch_); it != series_.end()) {
    it->second->slot->last_active = now;
    return it->second.get();
  }
  // The slot: the pod, or the container outside Kubernetes.
  scratch_.clear();
  if (workload->pod.empty()) {
    absl::StrAppend(&scratch_, "/", workload->container);
  } else {
    absl::StrAppend(&scratch_, workload->pod_namespace, "/", workload->pod);
  }
  auto slot_it = slots_.find(scratch_);
  bool other = false;
  if (slot_it == slots_.end()) {
    if (!allocate) return nullptr;
    const size_t taken = slots_.size() - (slots_.contains("") ? 1 : 0);
    if (taken < static_cast<size_t>(limits_.max_pods_per_host)) {
      slot_it = slots_.emplace(scratch_, std::make_unique<Slot>()).first;
    } else {
      other = true;
      slot_it = slots_.find("");
      if (slot_it == slots_.end()) slot_it = slots_.emplace("", std::make_unique<Slot>()).first;
    }
  }
  Slot* slot = slot_it->second.get();
  // The series: the container in its pod, or the "other" bucket.
  scratch_.clear();
  if (!other) {
    absl::StrAppend(&scratch_, workload->pod_namespace, "/", workload->pod, "/",
                    workload->container);
    if (!series_.contains(scratch_) && slot->series.size() >= service::kMaxContainersPerPod) {
      slot->last_active = now;  // the pod lives on, its extra container is summed in "other"
      other = true;
      slot_it = slots_.find("");
      if (slot_it == slots_.end()) slot_it = slots_.emplace("", std::make_unique<Slot>()).first;
      slot = slot_it->second.get();
    }
  }
  if (other) {
    scratch_.clear();
    absl::StrAppend(&scratch_, "/", kOther, "/");
  }
  slot->last_active = now;
  auto series_it = series_.find(scratch_);
  if (series_it == series_.end()) {
    auto series = std::make_unique<Series>();
    series->key = scratch_;
    series->slot = slot;
    if (other) {
      series->pod = std::string(kOther);
    } else {
      series->pod_namespace = std::string(workload->pod_namespace);
      series->pod = std::string(workload->pod);
      series->container = std::string(workload->container);
    }
    slot->series.push_back(series.get());
    series_it = series_.emplace(scratch_, std::move(series)).first;
  }
  return series_it->second.get();
}

WorkloadMetrics::Port& WorkloadMetrics::PortOf(uint32_t number, absl::Time now) {
  std::unique_ptr<Port>* slot = nullptr;
  if (auto it = ports_.find(number); it != ports_.end()) {
    slot = &it->second;
  } else if (ports_.size() < static_cast<size_t>(limits_.max_ports_per_host)) {
    slot = &ports_[number];
  } else {
    slot = &other_port_;
  }
  if (*slot == nullptr) {
    *slot = std::make_unique<Port>();
    (*slot)->label = slot == &other_port_ ? std::string(kOther) : absl::StrCat(number);
  }
  (*slot)->last_active = now;
  return **slot;
}

void WorkloadMetrics::CountEvents(const google::protobuf::RepeatedPtrField<v1::Event>& events,
                                  absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (removed_) return;
  for (const v1::Event& event : events) CountEvent(event, now);
}

void WorkloadMetrics::CountEvent(const v1::Event& event, absl::Time now) {
  switch (event.kind_case()) {
    case v1::Event::kHandshakeFailed: {
      const int reason = WorkloadIndex(event.handshake_failed().reason(), kFailureReasons);
      const absl::string_view name =
          HandshakeFailureReasonName(static_cast<v1::HandshakeFailureReason>(reason));
      if (Series* series = Resolve(event.origin(), now, /*allocate=*/true); series != nullptr) {
        auto*& counter = series->failures[reason];
        if (counter == nullptr) {
          counter = &families_->workload_handshake_failures.Add(LabelsOf(*series, "reason", name));
        }
        counter->Increment();
      }
      Port& port = PortOf(ServerPort(event), now);
      auto*& counter = port.failures[reason];
      if (counter == nullptr) {
        counter = &families_->port_handshake_failures.Add(
            {{"host", host_}, {"port", port.label}, {"reason", std::string(name)}});
      }
      counter->Increment();
      break;
    }
    case v1::Event::kClose: {
      const int reason = WorkloadIndex(event.close().reason(), kCloseReasons);
      const absl::string_view name = CloseReasonName(static_cast<v1::CloseReason>(reason));
      if (Series* series = Resolve(event.origin(), now, /*allocate=*/true); series != nullptr) {
        auto*& counter = series->closes[reason];
        if (counter == nullptr) {
          counter = &families_->workload_closes.Add(LabelsOf(*series, "reason", name));
        }
        counter->Increment();
      }
      Port& port = PortOf(ServerPort(event), now);
      auto*& counter = port.closes[reason];
      if (counter == nullptr) {
        counter = &families_->port_closes.Add(
            {{"host", host_}, {"port", port.label}, {"reason", std::string(name)}});
      }
      counter->Increment();
      break;
    }
    case v1::Event::kKeepaliveTimeout:
      if (Series* series = Resolve(event.origin(), now, /*allocate=*/true); series != nullptr) {
        if (series->keepalive_timeouts == nullptr) {
          series->keepalive_timeouts =
              &families_->workload_keepalive_timeouts.Add(LabelsOf(*series, nullptr, {}));
        }
        series->keepalive_timeouts->Increment();
      }
      break;
    default:
      // No series of its own, but the workload is alive.
      Resolve(event.origin(), now, /*allocate=*/false);
      break;
  }
}

void WorkloadMetrics::SetSnapshot(const v1::Snapshot& snapshot,
                                  const std::vector<v1::AtRiskReason>& at_risk, absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (removed_) return;
  live_ = true;
  ++round_;
  for (int i = 0; i < snapshot.connections_size(); ++i) {
    const v1::Connection& connection = snapshot.connections(i);
    Series* series = Resolve(connection.origin(), now, /*allocate=*/true);
    if (series == nullptr) continue;
    if (series->round != round_) {
      series->round = round_;
      series->state_count = {};
      series->at_risk_count = {};
    }
    if (const int state = WorkloadStateIndex(connection.state()); state >= 0) {
      ++series->state_count[state];
    }
    if (static_cast<size_t>(i) < at_risk.size()) {
      ++series->at_risk_count[WorkloadIndex(at_risk[static_cast<size_t>(i)], kRiskReasons)];
    }
  }
  for (auto& [key, series_ptr] : series_) {
    Series& series = *series_ptr;
    const bool seen = series.round == round_;
    for (int state = 0; state < kStates; ++state) {
      if (series.states[state] == nullptr) {
        if (!seen) continue;
        series.states[state] = &families_->workload_connections.Add(
            LabelsOf(series, "state", TcpStateName(kStateOfIndex[state])));
      }
      series.states[state]->Set(seen ? series.state_count[state] : 0);
    }
    for (int reason = 1; reason < kRiskReasons; ++reason) {
      const uint32_t count = seen ? series.at_risk_count[reason] : 0;
      if (series.at_risk[reason] == nullptr) {
        if (count == 0) continue;
        series.at_risk[reason] = &families_->workload_connections_at_risk.Add(
            LabelsOf(series, "reason", AtRiskReasonName(static_cast<v1::AtRiskReason>(reason))));
      }
      series.at_risk[reason]->Set(count);
    }
    ShowHalfOpen(series);
  }
}

void WorkloadMetrics::ShowHalfOpen(Series& series) {
  if (!live_) return;
  for (int reason = 1; reason < kRiskReasons; ++reason) {
    const uint32_t count = series.half_open_count[reason];
    if (series.half_open[reason] == nullptr) {
      if (count == 0) continue;
      series.half_open[reason] = &families_->workload_connections_half_open.Add(
          LabelsOf(series, "reason", HalfOpenReasonName(static_cast<v1::HalfOpenReason>(reason))));
    }
    series.half_open[reason]->Set(count);
  }
}

void WorkloadMetrics::ClearGauges() {
  absl::MutexLock lock(&mu_);
  live_ = false;
  for (auto& [key, series] : series_) RemoveGauges(*series);
}

std::string WorkloadMetrics::AddHalfOpen(const v1::Origin& origin, v1::HalfOpenReason reason,
                                         absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (removed_) return std::string();
  Series* series = Resolve(origin, now, /*allocate=*/true);
  if (series == nullptr) return std::string();
  ++series->half_open_count[WorkloadIndex(reason, kRiskReasons)];
  ShowHalfOpen(*series);
  return series->key;
}

void WorkloadMetrics::RemoveHalfOpen(const std::string& key, v1::HalfOpenReason reason) {
  absl::MutexLock lock(&mu_);
  auto it = series_.find(key);
  if (it == series_.end()) return;
  uint32_t& count = it->second->half_open_count[WorkloadIndex(reason, kRiskReasons)];
  if (count > 0) --count;
  ShowHalfOpen(*it->second);
}

void WorkloadMetrics::Expire(absl::Time now) {
  absl::MutexLock lock(&mu_);
  for (auto it = slots_.begin(); it != slots_.end();) {
    auto current = it++;
    Slot& slot = *current->second;
    if (now - slot.last_active < limits_.slot_expiry) continue;
    bool half_open = false;
    for (const Series* series : slot.series) {
      for (uint32_t count : series->half_open_count) half_open = half_open || count > 0;
    }
    if (half_open) continue;
    for (Series* series : slot.series) {
      RemoveSeries(*series);
      const std::string key = series->key;  // erasing destroys the series
      series_.erase(key);
    }
    slots_.erase(current);
  }
  for (auto it = ports_.begin(); it != ports_.end();) {
    auto current = it++;
    if (now - current->second->last_active < limits_.slot_expiry) continue;
    RemovePort(*current->second);
    ports_.erase(current);
  }
  if (other_port_ != nullptr && now - other_port_->last_active >= limits_.slot_expiry) {
    RemovePort(*other_port_);
    other_port_.reset();
  }
}

void WorkloadMetrics::RemoveGauges(Series& series) {
  for (auto*& gauge : series.states) {
    if (gauge != nullptr) families_->workload_connections.Remove(gauge);
    gauge = nullptr;
  }
  for (auto*& gauge : series.at_risk) {
    if (gauge != nullptr) families_->workload_connections_at_risk.Remove(gauge);
    gauge = nullptr;
  }
  for (auto*& gauge : series.half_open) {
    if (gauge != nullptr) families_->workload_connections_half_open.Remove(gauge);
    gauge = nullptr;
  }
}

void WorkloadMetrics::RemoveSeries(Series& series) {
  RemoveGauges(series);
  for (auto*& counter : series.failures) {
    if (counter != nullptr) families_->workload_handshake_failures.Remove(counter);
    counter = nullptr;
  }
  for (auto*& counter : series.closes) {
    if (counter != nullptr) families_->workload_closes.Remove(counter);
    counter = nullptr;
  }
  if (series.keepalive_timeouts != nullptr) {
    families_->workload_keepalive_timeouts.Remove(series.keepalive_timeouts);
    series.keepalive_timeouts = nullptr;
  }
}

void WorkloadMetrics::RemovePort(Port& port) {
  for (auto*& counter : port.failures) {
    if (counter != nullptr) families_->port_handshake_failures.Remove(counter);
    counter = nullptr;
  }
  for (auto*& counter : port.closes) {
    if (counter != nullptr) families_->port_closes.Remove(counter);
    counter = nullptr;
  }
}

WorkloadMetrics::Stats WorkloadMetrics::stats() const {
  absl::MutexLock lock(&mu_);
  Stats stats;
  stats.pods = slots_.size() - (slots_.contains("") ? 1 : 0);
  stats.series = series_.size();
  stats.ports = ports_.size();
  return stats;
}

}  // namespace tcpscope::reference
