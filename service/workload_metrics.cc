// Workload and port series of one host, with their per-host caps and slot expiry.
#include "service/workload_metrics.h"

#include "absl/strings/str_cat.h"
#include "common/tcp_names.h"

namespace tcpscope::service {
namespace {

constexpr size_t kContainerIdPrefix = 12;  // as `docker ps` shortens ids
constexpr absl::string_view kOther = "other";

// The `state` label's index, -1 for states without a workload gauge.
int StateIndex(v1::TcpState state) {
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

int Index(int value, int size) { return value >= 0 && value < size ? value : 0; }

}  // namespace

std::optional<WorkloadView> WorkloadOf(const v1::Origin& origin) {
  const bool in_pod = !origin.pod().empty() && !origin.pod_namespace().empty();
  absl::string_view container = origin.container_name();
  // A Kubernetes container (it has a pod uid) whose pod is not known has a name that is unique
  // only inside its pod: outside it, its id tells it apart.
  if (container.empty() || (!in_pod && !origin.pod_uid().empty())) {
    container = absl::string_view(origin.container_id()).substr(0, kContainerIdPrefix);
  }
  if (in_pod) return WorkloadView{origin.pod_namespace(), origin.pod(), container};
  if (container.empty()) return std::nullopt;
  return WorkloadView{{}, {}, container};
}

uint32_t ServerPort(const v1::Event& event) {
  const v1::Endpoints& endpoints = event.endpoints();
  if (event.has_handshake_failed() || event.role() != v1::ROLE_SERVER) {
    return endpoints.remote_port();
  }
  return endpoints.local_port();
}

WorkloadMetrics::WorkloadMetrics(ServiceMetrics* families, std::string host, WorkloadLimits limits)
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
    if (!series_.contains(scratch_) && slot->series.size() >= kMaxContainersPerPod) {
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
      const int reason = Index(event.handshake_failed().reason(), kFailureReasons);
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
      const int reason = Index(event.close().reason(), kCloseReasons);
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
    if (const int state = StateIndex(connection.state()); state >= 0) {
      ++series->state_count[state];
    }
    if (static_cast<size_t>(i) < at_risk.size()) {
      ++series->at_risk_count[Index(at_risk[static_cast<size_t>(i)], kRiskReasons)];
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
  ++series->half_open_count[Index(reason, kRiskReasons)];
  ShowHalfOpen(*series);
  return series->key;
}

void WorkloadMetrics::RemoveHalfOpen(const std::string& key, v1::HalfOpenReason reason) {
  absl::MutexLock lock(&mu_);
  auto it = series_.find(key);
  if (it == series_.end()) return;
  uint32_t& count = it->second->half_open_count[Index(reason, kRiskReasons)];
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

}  // namespace tcpscope::service
