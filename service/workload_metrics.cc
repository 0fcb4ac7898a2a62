// Workload and port series of one host, with their per-host caps and slot expiry.
#include "service/workload_metrics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/shared_origins.h"
#include "common/tcp_names.h"
#include "service/relaxed_values.h"

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

constexpr int kStates = std::size(kStateOfIndex);
constexpr int kFailureReasons = v1::HandshakeFailureReason_ARRAYSIZE;
constexpr int kCloseReasons = v1::CloseReason_ARRAYSIZE;
constexpr int kAtRiskReasons = v1::AtRiskReason_ARRAYSIZE;
constexpr int kHalfOpenReasons = v1::HalfOpenReason_ARRAYSIZE;

using Label = SampleWriter::Label;

// A counter series exists once it counted something.
void WriteCounter(SampleWriter& writer, std::initializer_list<Label> labels,
                  const std::atomic<uint64_t>& value) {
  const uint64_t count = Load(value);
  if (count > 0) writer.Sample(labels, static_cast<double>(count));
}

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

// The values of a workload's series. Gauges exist from when first set (states: from the first
// snapshot that shows the workload; at-risk and half-open: from a first non-zero count) until the
// agent disconnects or the series expires; counters once they counted something.
struct WorkloadMetrics::Series {
  std::string key;  // "namespace/pod/container"; names cannot hold '/'
  std::string pod_namespace, pod, container;
  Slot* slot = nullptr;  // the writer's
  std::atomic<bool> states_shown{false};
  std::array<std::atomic<uint32_t>, kStates> states{};
  std::atomic<uint32_t> at_risk_shown{0};  // bit per v1::AtRiskReason
  std::array<std::atomic<uint32_t>, kAtRiskReasons> at_risk{};
  std::atomic<uint32_t> half_open_shown{0};  // bit per v1::HalfOpenReason
  // Half-open ends now (the gauge's value while shown).
  std::array<std::atomic<uint32_t>, kHalfOpenReasons> half_open{};
  std::array<std::atomic<uint64_t>, kFailureReasons> failures{};
  std::atomic<uint64_t> keepalive_timeouts{0};
  std::array<std::atomic<uint64_t>, kCloseReasons> closes{};
  // Counts of the snapshot being applied (the writer's).
  uint64_t round = 0;
  std::array<uint32_t, kStates> state_count{};
  std::array<uint32_t, kAtRiskReasons> at_risk_count{};

  void ClearGauges() {
    Store(states_shown, false);
    Store(at_risk_shown, 0u);
    Store(half_open_shown, 0u);
  }
};

struct WorkloadMetrics::Port {
  uint32_t number = 0;  // 0 for "other"
  std::string label;
  absl::Time last_active;  // the writer's
  std::array<std::atomic<uint64_t>, kFailureReasons> failures{};
  std::array<std::atomic<uint64_t>, kCloseReasons> closes{};
};

struct WorkloadMetrics::Slot {
  absl::Time last_active;
  std::vector<Series*> series;
};

// What scrapes read: the host's label sets, replaced as a whole when one comes or goes.
class WorkloadMetrics::Published final : public FleetMetrics::Source {
 public:
  struct View {
    std::vector<std::shared_ptr<const Series>> series;  // by key
    std::vector<std::shared_ptr<const Port>> ports;     // by number, "other" last
  };

  explicit Published(std::string host) : host_(std::move(host)) {}

  const std::string& host() const override { return host_; }

  void Set(std::shared_ptr<const View> view) {
    absl::MutexLock lock(&mu_);
    view_ = std::move(view);
  }

  void Write(SpecFamily family, SampleWriter& writer) const override {
    std::shared_ptr<const View> view;
    {
      absl::MutexLock lock(&mu_);
      view = view_;
    }
    if (view == nullptr) return;
    switch (family) {
      case SpecFamily::kWorkloadConnections:
      case SpecFamily::kWorkloadConnectionsAtRisk:
      case SpecFamily::kWorkloadConnectionsHalfOpen:
      case SpecFamily::kWorkloadHandshakeFailures:
      case SpecFamily::kWorkloadKeepaliveTimeouts:
      case SpecFamily::kWorkloadCloses:
        for (const auto& series : view->series) WriteSeries(family, *series, writer);
        break;
      case SpecFamily::kPortHandshakeFailures:
      case SpecFamily::kPortCloses:
        for (const auto& port : view->ports) WritePort(family, *port, writer);
        break;
      default:  // a host-level family
        break;
    }
  }

 private:
  void WriteSeries(SpecFamily family, const Series& series, SampleWriter& writer) const {
    const Label container{"container", series.container};
    const Label host{"host", host_};
    const Label pod_namespace{"namespace", series.pod_namespace};
    const Label pod{"pod", series.pod};
    switch (family) {
      case SpecFamily::kWorkloadConnections:
        if (!Load(series.states_shown)) break;
        for (int state = 0; state < kStates; ++state) {
          writer.Sample(
              {container, host, pod_namespace, pod, {"state", TcpStateName(kStateOfIndex[state])}},
              Load(series.states[state]));
        }
        break;
      case SpecFamily::kWorkloadConnectionsAtRisk: {
        const uint32_t shown = Load(series.at_risk_shown);
        for (int reason = 1; reason < kAtRiskReasons; ++reason) {
          if ((shown & (1u << reason)) == 0) continue;
          writer.Sample({container,
                         host,
                         pod_namespace,
                         pod,
                         {"reason", AtRiskReasonName(static_cast<v1::AtRiskReason>(reason))}},
                        Load(series.at_risk[reason]));
        }
        break;
      }
      case SpecFamily::kWorkloadConnectionsHalfOpen: {
        const uint32_t shown = Load(series.half_open_shown);
        for (int reason = 1; reason < kHalfOpenReasons; ++reason) {
          if ((shown & (1u << reason)) == 0) continue;
          writer.Sample({container,
                         host,
                         pod_namespace,
                         pod,
                         {"reason", HalfOpenReasonName(static_cast<v1::HalfOpenReason>(reason))}},
                        Load(series.half_open[reason]));
        }
        break;
      }
      case SpecFamily::kWorkloadHandshakeFailures:
        for (int reason = 0; reason < kFailureReasons; ++reason) {
          WriteCounter(writer,
                       {container,
                        host,
                        pod_namespace,
                        pod,
                        {"reason", HandshakeFailureReasonName(
                                       static_cast<v1::HandshakeFailureReason>(reason))}},
                       series.failures[reason]);
        }
        break;
      case SpecFamily::kWorkloadKeepaliveTimeouts:
        WriteCounter(writer, {container, host, pod_namespace, pod}, series.keepalive_timeouts);
        break;
      case SpecFamily::kWorkloadCloses:
        for (int reason = 0; reason < kCloseReasons; ++reason) {
          WriteCounter(writer,
                       {container,
                        host,
                        pod_namespace,
                        pod,
                        {"reason", CloseReasonName(static_cast<v1::CloseReason>(reason))}},
                       series.closes[reason]);
        }
        break;
      default:
        break;
    }
  }

  void WritePort(SpecFamily family, const Port& port, SampleWriter& writer) const {
    const Label host{"host", host_};
    const Label number{"port", port.label};
    if (family == SpecFamily::kPortHandshakeFailures) {
      for (int reason = 0; reason < kFailureReasons; ++reason) {
        WriteCounter(writer,
                     {host,
                      number,
                      {"reason", HandshakeFailureReasonName(
                                     static_cast<v1::HandshakeFailureReason>(reason))}},
                     port.failures[reason]);
      }
    } else {
      for (int reason = 0; reason < kCloseReasons; ++reason) {
        WriteCounter(
            writer,
            {host, number, {"reason", CloseReasonName(static_cast<v1::CloseReason>(reason))}},
            port.closes[reason]);
      }
    }
  }

  const std::string host_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const View> view_ ABSL_GUARDED_BY(mu_);
};

WorkloadMetrics::WorkloadMetrics(ServiceMetrics* metrics, std::string host, WorkloadLimits limits)
    : fleet_(metrics->fleet().get()),
      host_(std::move(host)),
      limits_(limits),
      published_(std::make_shared<Published>(host_)) {
  fleet_->Register(published_);
}

WorkloadMetrics::~WorkloadMetrics() { RemoveAll(); }

void WorkloadMetrics::RemoveAll() {
  absl::MutexLock lock(&mu_);
  if (removed_) return;
  removed_ = true;
  live_ = false;
  fleet_->Unregister(published_.get());
  published_->Set(nullptr);
  series_.clear();
  slots_.clear();
  ports_.clear();
  other_port_.reset();
}

void WorkloadMetrics::Publish() {
  if (!changed_ || removed_) return;
  changed_ = false;
  auto view = std::make_shared<Published::View>();
  view->series.reserve(series_.size());
  for (const auto& [key, series] : series_) view->series.push_back(series);
  std::sort(view->series.begin(), view->series.end(),
            [](const auto& a, const auto& b) { return a->key < b->key; });
  view->ports.reserve(ports_.size() + 1);
  for (const auto& [number, port] : ports_) view->ports.push_back(port);
  std::sort(view->ports.begin(), view->ports.end(),
            [](const auto& a, const auto& b) { return a->number < b->number; });
  if (other_port_ != nullptr) view->ports.push_back(other_port_);
  published_->Set(std::move(view));
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
    auto series = std::make_shared<Series>();
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
    changed_ = true;
  }
  return series_it->second.get();
}

WorkloadMetrics::Port& WorkloadMetrics::PortOf(uint32_t number, absl::Time now) {
  std::shared_ptr<Port>* slot = nullptr;
  if (auto it = ports_.find(number); it != ports_.end()) {
    slot = &it->second;
  } else if (ports_.size() < static_cast<size_t>(limits_.max_ports_per_host)) {
    slot = &ports_[number];
  } else {
    slot = &other_port_;
  }
  if (*slot == nullptr) {
    *slot = std::make_shared<Port>();
    if (slot == &other_port_) {
      (*slot)->label = std::string(kOther);
    } else {
      (*slot)->number = number;
      (*slot)->label = absl::StrCat(number);
    }
    changed_ = true;
  }
  (*slot)->last_active = now;
  return **slot;
}

void WorkloadMetrics::CountEvents(const v1::Batch& batch, absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (removed_) return;
  for (const v1::Event& event : batch.events()) CountEvent(event, EventOrigin(batch, event), now);
  Publish();
}

void WorkloadMetrics::CountEvent(const v1::Event& event, const v1::Origin& origin, absl::Time now) {
  switch (event.kind_case()) {
    case v1::Event::kHandshakeFailed: {
      const int reason = Index(event.handshake_failed().reason(), kFailureReasons);
      if (Series* series = Resolve(origin, now, /*allocate=*/true); series != nullptr) {
        Add(series->failures[reason]);
      }
      Add(PortOf(ServerPort(event), now).failures[reason]);
      break;
    }
    case v1::Event::kClose: {
      const int reason = Index(event.close().reason(), kCloseReasons);
      if (Series* series = Resolve(origin, now, /*allocate=*/true); series != nullptr) {
        Add(series->closes[reason]);
      }
      Add(PortOf(ServerPort(event), now).closes[reason]);
      break;
    }
    case v1::Event::kKeepaliveTimeout:
      if (Series* series = Resolve(origin, now, /*allocate=*/true); series != nullptr) {
        Add(series->keepalive_timeouts);
      }
      break;
    default:
      // No series of its own, but the workload is alive.
      Resolve(origin, now, /*allocate=*/false);
      break;
  }
}

void WorkloadMetrics::SetSnapshot(const v1::Snapshot& snapshot,
                                  const std::vector<v1::AtRiskReason>& at_risk, absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (removed_) return;
  live_ = true;
  ++round_;
  // An origin of the snapshot's table is resolved once, for all the ends referring to it.
  std::vector<std::optional<Series*>> by_ref(static_cast<size_t>(snapshot.origins_size()));
  for (int i = 0; i < snapshot.connections_size(); ++i) {
    const v1::Connection& connection = snapshot.connections(i);
    const uint32_t ref = connection.origin_ref();
    std::optional<Series*> resolved;
    std::optional<Series*>& slot = ref != 0 && ref <= by_ref.size() ? by_ref[ref - 1] : resolved;
    if (!slot.has_value()) {
      slot = Resolve(SnapshotOrigin(snapshot, connection), now, /*allocate=*/true);
    }
    Series* series = *slot;
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
      ++series->at_risk_count[Index(at_risk[static_cast<size_t>(i)], kAtRiskReasons)];
    }
  }
  for (auto& [key, series_ptr] : series_) {
    Series& series = *series_ptr;
    const bool seen = series.round == round_;
    // A workload's state gauges appear with the first snapshot that shows it, then stay (at 0
    // when it has no ends) until its gauges go.
    if (seen || Load(series.states_shown)) {
      for (int state = 0; state < kStates; ++state) {
        Store(series.states[state], seen ? series.state_count[state] : 0u);
      }
      Store(series.states_shown, true);
    }
    uint32_t at_risk_shown = Load(series.at_risk_shown);
    for (int reason = 1; reason < kAtRiskReasons; ++reason) {
      const uint32_t count = seen ? series.at_risk_count[reason] : 0;
      if (count == 0 && (at_risk_shown & (1u << reason)) == 0) continue;
      Store(series.at_risk[reason], count);
      at_risk_shown |= 1u << reason;
    }
    Store(series.at_risk_shown, at_risk_shown);
    ShowHalfOpen(series);
  }
  Publish();
}

void WorkloadMetrics::ShowHalfOpen(Series& series) {
  if (!live_) return;
  uint32_t shown = Load(series.half_open_shown);
  for (int reason = 1; reason < kHalfOpenReasons; ++reason) {
    if (Load(series.half_open[reason]) > 0) shown |= 1u << reason;
  }
  Store(series.half_open_shown, shown);
}

void WorkloadMetrics::ClearGauges() {
  absl::MutexLock lock(&mu_);
  live_ = false;
  for (auto& [key, series] : series_) series->ClearGauges();
}

std::string WorkloadMetrics::AddHalfOpen(const v1::Origin& origin, v1::HalfOpenReason reason,
                                         absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (removed_) return std::string();
  Series* series = Resolve(origin, now, /*allocate=*/true);
  if (series == nullptr) return std::string();
  series->half_open[Index(reason, kHalfOpenReasons)].fetch_add(1, std::memory_order_relaxed);
  ShowHalfOpen(*series);
  std::string key = series->key;
  Publish();
  return key;
}

void WorkloadMetrics::RemoveHalfOpen(const std::string& key, v1::HalfOpenReason reason) {
  absl::MutexLock lock(&mu_);
  auto it = series_.find(key);
  if (it == series_.end()) return;
  std::atomic<uint32_t>& count = it->second->half_open[Index(reason, kHalfOpenReasons)];
  if (Load(count) > 0) count.fetch_sub(1, std::memory_order_relaxed);
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
      for (const auto& count : series->half_open) half_open = half_open || Load(count) > 0;
    }
    if (half_open) continue;
    for (Series* series : slot.series) {
      const std::string key = series->key;  // erasing destroys the series
      series_.erase(key);
    }
    slots_.erase(current);
    changed_ = true;
  }
  for (auto it = ports_.begin(); it != ports_.end();) {
    auto current = it++;
    if (now - current->second->last_active < limits_.slot_expiry) continue;
    ports_.erase(current);
    changed_ = true;
  }
  if (other_port_ != nullptr && now - other_port_->last_active >= limits_.slot_expiry) {
    other_port_.reset();
    changed_ = true;
  }
  Publish();
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
