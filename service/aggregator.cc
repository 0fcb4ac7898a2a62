#include "service/aggregator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/unix_time.h"

namespace tcpscope::service {
Aggregator::Aggregator(ServiceMetrics* metrics, EventLog* log, AggregatorOptions options)
    : metrics_(metrics),
      log_(log),
      options_(options),
      pairs_(options.half_open),
      reporter_(&pairs_, log, [this](const std::string& host) { return Find(host); }) {}

Aggregator::~Aggregator() = default;

absl::StatusOr<std::shared_ptr<HostState>> Aggregator::Connect(const v1::Hello& hello,
                                                               absl::Time now,
                                                               uint64_t* last_applied_seq) {
  absl::MutexLock lock(&mu_);  // held, so expiry cannot remove the host while it connects
  auto& slot = hosts_[hello.host_name()];
  if (slot == nullptr) {
    WorkloadLimits limits;
    limits.max_pods_per_host = options_.max_pods_per_host;
    limits.max_ports_per_host = options_.max_ports_per_host;
    limits.slot_expiry = options_.host_expiry;
    slot = std::make_shared<HostState>(metrics_, pairs_.Host(hello.host_name()), limits);
    metrics_->hosts.Set(static_cast<double>(hosts_.size()));
  }
  HostState& state = *slot;
  absl::MutexLock host_lock(&state.mu);
  if (state.connected) {
    return absl::AlreadyExistsError(
        absl::StrCat("host ", hello.host_name(), " already has a connected agent (boot id ",
                     state.hello.boot_id(), ", connected since ",
                     absl::FormatTime(state.connected_since, absl::UTCTimeZone()),
                     "); two agents claim one host name: give each its own --host_name"));
  }
  if (state.hello.instance_id() != hello.instance_id()) {
    // A new agent process numbers its batches from 1 again and counts losses from 0.
    state.last_applied_seq = 0;
    state.losses.Clear();
    state.source_health.Clear();
    state.metrics->SetLosses(v1::LossCounters());
  }
  if (pairs_.Connected(*state.pair, hello.boot_id())) {
    TS_LOG(INFO) << "host " << hello.host_name() << " rebooted (boot id " << state.hello.boot_id()
                 << " -> " << hello.boot_id()
                 << "): ends its next snapshot lacks are lost with the reboot";
  }
  state.hello = hello;
  state.connected = true;
  state.connected_since = now;
  state.last_seen = now;
  state.metrics->SetUp(true);
  *last_applied_seq = state.last_applied_seq;
  return slot;
}

bool Aggregator::Apply(HostState& host, std::shared_ptr<v1::Batch> batch, absl::Time now) {
  // Classify and compact the snapshot before taking the host's lock (only this stream builds
  // the host's views).
  std::shared_ptr<const HostView> view;
  std::vector<v1::AtRiskReason> at_risk;
  if (batch->has_snapshot()) {
    const v1::Snapshot& snapshot = batch->snapshot();
    at_risk.reserve(static_cast<size_t>(snapshot.connections_size()));
    const absl::Time taken = TimeFromUnixNanos(snapshot.time_unix_ns());
    for (const v1::Connection& connection : snapshot.connections()) {
      at_risk.push_back(AtRiskReasonOf(connection, taken, options_.at_risk));
    }
  }
  std::shared_ptr<const HostView> previous;
  bool first_view = false;
  {
    absl::MutexLock lock(&host.mu);
    host.last_seen = now;
    if (batch->seq() <= host.last_applied_seq) return false;
    // A gap means the agent dropped batches from its full buffer; batch.losses counts them.
    host.last_applied_seq = batch->seq();
    HostMetrics& metrics = *host.metrics;
    for (const v1::Event& event : batch->events()) metrics.CountEvent(event);
    host.workloads->CountEvents(*batch, now);
    metrics.AddEvents(static_cast<uint64_t>(batch->events_size()));
    metrics.SetLosses(batch->losses());
    host.losses = batch->losses();
    if (batch->has_source_health()) {
      const v1::SourceHealth& health = batch->source_health();
      if (health.state() != host.source_health.state()) {
        if (health.state() == v1::SOURCE_STATE_EVENTS_FAILED) {
          TS_LOG(WARNING) << "host " << host.host()
                          << ": its agent's event feed failed (snapshots only): "
                          << health.problem();
        } else if (host.source_health.state() == v1::SOURCE_STATE_EVENTS_FAILED) {
          TS_LOG(INFO) << "host " << host.host() << ": its agent's event feed recovered";
        }
      }
      host.source_health = health;
    }
    if (batch->has_snapshot()) {
      const uint64_t round = host.view != nullptr ? host.view->round + 1 : 1;
      view = HostView::Build(batch->snapshot(), at_risk, host.pair, round, now, &host.origins);
      host.snapshot_counts = CountSnapshot(*view);
      metrics.SetSnapshot(host.snapshot_counts);
      host.workloads->SetSnapshot(batch->snapshot(), at_risk, now);
      previous = std::exchange(host.view, view);
      first_view = !std::exchange(host.view_current, true);
    }
  }
  std::vector<PairIndex::Close> closes;
  for (const v1::Event& event : batch->events()) {
    if (event.has_close()) {
      closes.push_back(
          {event.connection_id(), &event.endpoints(), TimeFromUnixNanos(event.time_unix_ns())});
    }
  }
  if (!closes.empty()) pairs_.ApplyCloses(*host.pair, closes);
  if (view != nullptr) {
    reporter_.Report(pairs_.ApplySnapshot(*host.pair, view, previous.get()), now);
    if (first_view) reporter_.Refresh(host, now);  // its half-open gauges show again
  }
  if (batch->events_size() == 0) return true;
  auto published = std::make_shared<PublishedBatch>();
  published->host = host.name;
  if (batch->has_snapshot()) {
    // The history must not keep a snapshot alive (it can be far larger than the events): the
    // events of such a batch, rare (one per snapshot interval), are copied out of it.
    auto events = std::make_shared<v1::Batch>();
    events->set_seq(batch->seq());
    *events->mutable_events() = batch->events();
    published->batch = std::move(events);
  } else {
    published->batch = std::move(batch);
  }
  log_->Publish(std::move(published));
  return true;
}

void Aggregator::Disconnect(HostState& host, absl::Time now) {
  {
    absl::MutexLock lock(&host.mu);
    host.connected = false;
    host.last_seen = now;
    host.view_current = false;
    host.snapshot_counts = SnapshotCounts();
    host.metrics->SetUp(false);
    host.metrics->ClearSnapshot();
    host.metrics->ClearHalfOpen();
    host.workloads->ClearGauges();
  }
  pairs_.Disconnected(*host.pair);
}

std::vector<std::string> Aggregator::ExpireHosts(absl::Time now) {
  std::vector<std::string> expired;
  absl::MutexLock lock(&mu_);
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    auto current = it++;
    // Kept until the host's lock is released: the erase below may drop the last reference.
    const std::shared_ptr<HostState> state = current->second;
    {
      absl::MutexLock host_lock(&state->mu);
      if (state->connected || now - state->last_seen < options_.host_expiry) {
        state->workloads->Expire(now);  // pods and ports idle for as long
        continue;
      }
      state->metrics.reset();  // removes every series of the host
      state->workloads->RemoveAll();
    }
    expired.push_back(current->first);
    pairs_.Forget(current->first);
    hosts_.erase(current);
  }
  for (const std::string& host : expired) pairs_.Release(host);
  if (!expired.empty()) {
    metrics_->hosts.Set(static_cast<double>(hosts_.size()));
    metrics_->hosts_expired.Increment(static_cast<double>(expired.size()));
  }
  return expired;
}

void Aggregator::CheckSilentHosts(absl::Time now) {
  for (const auto& state : Hosts("")) {
    absl::Time last_seen;
    std::shared_ptr<const HostView> view;
    {
      absl::MutexLock lock(&state->mu);
      last_seen = state->last_seen;
      view = state->view;
    }
    const bool down = now - last_seen >= options_.half_open.peer_down_after;
    if (down == state->pair->down.load()) continue;
    if (down) {
      TS_LOG(WARNING) << "host " << state->host() << " silent for "
                      << absl::FormatDuration(absl::Trunc(now - last_seen, absl::Seconds(1)))
                      << " (--peer_down_after): its peers' ends of "
                      << (view != nullptr ? view->ends.size() : 0)
                      << " connections are judged peer_host_down";
    }
    reporter_.Report(pairs_.SetDown(*state->pair, down, last_seen, view.get()), now);
  }
}

std::shared_ptr<HostState> Aggregator::Find(const std::string& host) const {
  absl::MutexLock lock(&mu_);
  auto it = hosts_.find(host);
  return it == hosts_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<HostState>> Aggregator::Hosts(const std::string& only) const {
  std::vector<std::shared_ptr<HostState>> hosts;
  {
    absl::MutexLock lock(&mu_);
    if (!only.empty()) {
      if (auto it = hosts_.find(only); it != hosts_.end()) hosts.push_back(it->second);
      return hosts;
    }
    for (const auto& [name, state] : hosts_) hosts.push_back(state);
  }
  std::sort(hosts.begin(), hosts.end(),
            [](const auto& a, const auto& b) { return a->host() < b->host(); });
  return hosts;
}

}  // namespace tcpscope::service
