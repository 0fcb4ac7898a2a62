#include "service/aggregator.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/unix_time.h"
#include "service/batch_validator.h"
#include "service/fragment_split.h"
#include "service/packed_ends.h"

namespace tcpscope::service {
Aggregator::Aggregator(ServiceMetrics* metrics, EventLog* log, AggregatorOptions options)
    : metrics_(metrics),
      log_(log),
      options_(options),
      pairs_(options.half_open),
      reporter_(&pairs_, log,
                {.local = [this](const std::string& host) { return Find(host); },
                 .remote = [this](const std::string& host) { return FindRemote(host); },
                 .send =
                     [this](const std::string& replica, v1::ReplicaMessage message) {
                       if (sender_ != nullptr) sender_->Send(replica, std::move(message));
                     }}) {}

Aggregator::~Aggregator() = default;

absl::StatusOr<std::shared_ptr<HostState>> Aggregator::Connect(const v1::Hello& hello,
                                                               absl::Time now,
                                                               uint64_t* last_applied_seq) {
  std::shared_ptr<HostState> connected;
  std::shared_ptr<RemoteHost> moved;  // the host was another replica's: its record here
  {
    absl::MutexLock lock(&mu_);  // held, so expiry cannot remove the host while it connects
    absl::StatusOr<std::shared_ptr<HostState>> slot = ConnectLocked(hello, now, last_applied_seq);
    if (!slot.ok()) return slot.status();
    connected = *std::move(slot);
    if (auto node = remote_.extract(hello.host_name()); !node.empty()) moved = node.mapped();
    pending_.erase(hello.host_name());
  }
  // The host's own call to the index, under its pass lock (not under the registry's: a pass
  // reports, and reporting looks hosts up).
  absl::MutexLock pass_lock(&connected->pair->pass_mu);
  const std::string previous_boot_id = connected->pair->boot_id;
  if (pairs_.Connected(*connected->pair, hello.boot_id())) {
    TS_LOG(INFO) << "host " << hello.host_name() << " rebooted (boot id " << previous_boot_id
                 << " -> " << hello.boot_id()
                 << "): ends its next snapshot lacks are lost with the reboot";
  }
  if (moved != nullptr) {
    // The index's ends of the host point into the view its former home sent last: the host's
    // next snapshot here is judged against it.
    std::shared_ptr<const HostView> view;
    {
      absl::MutexLock lock(&moved->mu);
      view = moved->view;
    }
    absl::MutexLock lock(&connected->mu);
    if (view != nullptr) connected->view = std::move(view);
    metrics_->replica_remote_hosts.Decrement();
  }
  return connected;
}

absl::StatusOr<std::shared_ptr<HostState>> Aggregator::ConnectLocked(const v1::Hello& hello,
                                                                     absl::Time now,
                                                                     uint64_t* last_applied_seq) {
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
  std::string boot_id;
  {
    absl::MutexLock lock(&host.mu);
    boot_id = host.hello.boot_id();
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
  {
    absl::MutexLock pass_lock(&host.pair->pass_mu);
    if (!closes.empty()) pairs_.ApplyCloses(*host.pair, closes);
    if (view != nullptr) {
      reporter_.Report(pairs_.ApplySnapshot(*host.pair, view, previous.get()), now);
    }
  }
  if (first_view) reporter_.Refresh(host, now);  // its half-open gauges show again
  if (sender_ != nullptr && (view != nullptr || !closes.empty())) {
    Forward(host.host(), boot_id, view.get(), batch->events());
  }
  if (batch->events_size() == 0) return true;
  auto published = std::make_shared<PublishedBatch>();
  published->host = host.name;
  if (batch->has_snapshot()) {
    // Subscribers must not keep a snapshot alive, nor the history serialize it (it can be far
    // larger than the events): the events of such a batch, rare (one per snapshot interval),
    // are copied out of it, with the origins they refer to.
    auto events = std::make_shared<v1::Batch>();
    events->set_seq(batch->seq());
    *events->mutable_events() = batch->events();
    *events->mutable_origins() = batch->origins();
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
  {
    absl::MutexLock pass_lock(&host.pair->pass_mu);
    pairs_.Disconnected(*host.pair);
  }
  ForwardStatus(host.host(), v1::HostStatus::CHANGE_DISCONNECTED, now);
  std::optional<PendingFragment> pending;
  {
    absl::MutexLock lock(&mu_);
    if (auto node = pending_.extract(host.host()); !node.empty())
      pending = std::move(node.mapped());
  }
  if (pending.has_value()) {
    // The host moved on before this stream ended: its new home's view is the one to index.
    if (absl::Status status =
            ApplyFragment(pending->from, pending->ring_id, pending->fragment, now);
        !status.ok()) {
      TS_LOG(WARNING) << "host " << host.host() << ": its new home's fragment: " << status;
    }
  }
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
    // A host now homed on another replica is not lost: its record here carries on.
    if (!remote_.contains(current->first)) pairs_.Forget(current->first);
    hosts_.erase(current);
  }
  for (const std::string& host : expired) {
    pairs_.Release(host);
    ForwardStatus(host, v1::HostStatus::CHANGE_EXPIRED, now);
  }
  if (!expired.empty()) {
    metrics_->hosts.Set(static_cast<double>(hosts_.size()));
    metrics_->hosts_expired.Increment(static_cast<double>(expired.size()));
  }
  return expired;
}

void Aggregator::CheckSilentHosts(absl::Time now) {
  for (const auto& state : Hosts("")) {
    if (FindRemote(state->host()) != nullptr) continue;  // homed on another replica now
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
    {
      absl::MutexLock pass_lock(&state->pair->pass_mu);
      reporter_.Report(pairs_.SetDown(*state->pair, down, last_seen, view.get()), now);
    }
    ForwardStatus(state->host(), down ? v1::HostStatus::CHANGE_DOWN : v1::HostStatus::CHANGE_UP,
                  last_seen);
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

void Aggregator::SetReplicaSender(ReplicaSender* sender) { sender_ = sender; }

void Aggregator::Forward(const std::string& host, const std::string& boot_id, const HostView* view,
                         const google::protobuf::RepeatedPtrField<v1::Event>& events) {
  const std::shared_ptr<const Ring> ring = pairs_.ring();
  if (ring == nullptr || ring->size() < 2) return;
  uint64_t forwarded = 0;
  std::vector<v1::HostFragment> fragments = SplitByOwner(view, events, *ring, &forwarded);
  for (size_t i = 0; i < fragments.size(); ++i) {
    v1::HostFragment& fragment = fragments[i];
    if (i == ring->self || (!fragment.has_ends() && fragment.closes_size() == 0)) continue;
    fragment.set_host(host);
    fragment.set_boot_id(boot_id);
    v1::ReplicaMessage message;
    message.set_ring(ring->id);
    *message.mutable_fragment() = std::move(fragment);
    sender_->Send(ring->member(i), std::move(message));
  }
  metrics_->replica_forwarded_ends.Increment(static_cast<double>(forwarded));
}

void Aggregator::ForwardStatus(const std::string& host, v1::HostStatus::Change change,
                               absl::Time last_seen) {
  if (sender_ == nullptr) return;
  const std::shared_ptr<const Ring> ring = pairs_.ring();
  if (ring == nullptr) return;
  for (size_t i = 0; i < ring->size(); ++i) {
    if (i == ring->self) continue;
    v1::ReplicaMessage message;
    v1::HostStatus& status = *message.mutable_status();
    status.set_host(host);
    status.set_change(change);
    status.set_last_seen_unix_ns(UnixNanos(last_seen));
    sender_->Send(ring->member(i), std::move(message));
  }
}

void Aggregator::OnRing(std::shared_ptr<const Ring> ring, absl::Time now) {
  std::vector<std::string> dropped;
  {
    absl::WriterMutexLock apply_lock(&remote_apply_mu_);
    pairs_.SetRing(ring, options_.ring_quiet);
    absl::MutexLock lock(&mu_);
    for (const auto& [name, remote] : remote_) dropped.push_back(name);
    remote_.clear();
    pending_.clear();
  }
  metrics_->replica_remote_hosts.Set(0);
  for (const std::string& name : dropped) pairs_.Release(name);
  TS_LOG(INFO) << "ring " << ring->epoch << " (" << ring->size()
               << " replicas): pairing rebuilt from the hosts' views; nothing is judged "
                  "half-open for "
               << absl::FormatDuration(options_.ring_quiet);
  for (const auto& state : Hosts("")) {
    reporter_.ForgetReplicaReports(*state, now);
    {
      absl::MutexLock pass_lock(&state->pair->pass_mu);
      std::shared_ptr<const HostView> view;
      {
        absl::MutexLock lock(&state->mu);
        if (state->connected && state->view_current) view = state->view;
      }
      // A host that rebooted keeps its flag for its next snapshot.
      if (view == nullptr || state->pair->rebooted) continue;
      reporter_.Report(pairs_.ApplySnapshot(*state->pair, view, nullptr), now);
    }
    reporter_.Refresh(*state, now);
  }
  if (sender_ == nullptr) return;
  for (size_t i = 0; i < ring->size(); ++i) {
    if (i != ring->self) OnAgreement(ring->member(i));
  }
}

void Aggregator::OnAgreement(const std::string& replica) {
  if (sender_ == nullptr) return;
  const std::shared_ptr<const Ring> ring = pairs_.ring();
  if (ring == nullptr) return;
  size_t index = ring->size();
  for (size_t i = 0; i < ring->size(); ++i) {
    if (ring->member(i) == replica) index = i;
  }
  if (index == ring->size() || index == ring->self) return;
  uint64_t forwarded_total = 0;
  for (const auto& state : Hosts("")) {
    std::shared_ptr<const HostView> view;
    std::string boot_id;
    {
      absl::MutexLock lock(&state->mu);
      if (!state->connected || !state->view_current) continue;
      view = state->view;
      boot_id = state->hello.boot_id();
    }
    uint64_t forwarded = 0;
    std::vector<v1::HostFragment> fragments = SplitByOwner(view.get(), {}, *ring, &forwarded);
    v1::HostFragment& fragment = fragments[index];
    forwarded_total += fragment.ends().records().size() / kPackedEndSize;
    fragment.set_host(state->host());
    fragment.set_boot_id(boot_id);
    v1::ReplicaMessage message;
    message.set_ring(ring->id);
    *message.mutable_fragment() = std::move(fragment);
    sender_->Send(replica, std::move(message));
  }
  metrics_->replica_forwarded_ends.Increment(static_cast<double>(forwarded_total));
}

absl::Status Aggregator::ApplyReplicaMessage(const std::string& from, v1::ReplicaMessage& message,
                                             absl::Time now) {
  switch (message.kind_case()) {
    case v1::ReplicaMessage::kFragment:
      return ApplyFragment(from, message.ring(), *message.mutable_fragment(), now);
    case v1::ReplicaMessage::kStatus:
      return ApplyStatus(from, message.status(), now);
    case v1::ReplicaMessage::kFindings: {
      v1::HostFindings& findings = *message.mutable_findings();
      if (absl::Status status = ValidateFindings(findings, now); !status.ok()) return status;
      if (std::shared_ptr<HostState> host = Find(findings.host()); host != nullptr) {
        reporter_.ReportFromReplica(*host, from, findings, now);
      }
      return absl::OkStatus();
    }
    case v1::ReplicaMessage::KIND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("replica message without a kind");
}

absl::Status Aggregator::ApplyFragment(const std::string& from, uint64_t ring_id,
                                       v1::HostFragment& fragment, absl::Time now) {
  if (absl::Status status = ValidateFragment(fragment, now); !status.ok()) return status;
  absl::ReaderMutexLock apply_lock(&remote_apply_mu_);
  const std::shared_ptr<const Ring> ring = pairs_.ring();
  if (ring == nullptr || ring->id != ring_id) {
    metrics_->replica_fragments_ignored.Add({{"reason", "other_ring"}}).Increment();
    return absl::OkStatus();
  }
  std::shared_ptr<RemoteHost> remote;
  std::shared_ptr<const HostView> local_view;  // the view the index last had of the host
  {
    absl::MutexLock lock(&mu_);
    auto local = hosts_.find(fragment.host());
    if (local != hosts_.end()) {
      absl::MutexLock host_lock(&local->second->mu);
      if (local->second->connected) {
        metrics_->replica_fragments_ignored.Add({{"reason", "homed_here"}}).Increment();
        if (fragment.has_ends()) {
          pending_[fragment.host()] = {from, ring_id, std::move(fragment)};
        }
        return absl::OkStatus();
      }
      local_view = local->second->view;
    }
    std::shared_ptr<RemoteHost>& slot = remote_[fragment.host()];
    if (slot == nullptr) {
      slot = std::make_shared<RemoteHost>(pairs_.Host(fragment.host()), from);
      metrics_->replica_remote_hosts.Increment();
    }
    remote = slot;
  }
  absl::MutexLock apply(&remote->apply_mu);
  absl::MutexLock pass_lock(&remote->pair->pass_mu);
  std::shared_ptr<const HostView> previous;
  uint64_t round = 0;
  {
    absl::MutexLock lock(&remote->mu);
    // Two replicas' streams are not ordered with each other: while a host moves, its former
    // home's last fragments may come after its new home's. Its agent's snapshot times decide.
    if (remote->home != from && remote->view != nullptr &&
        (!fragment.has_ends() ||
         TimeFromUnixNanos(fragment.ends().time_unix_ns()) < remote->view->taken)) {
      metrics_->replica_fragments_ignored.Add({{"reason", "stale"}}).Increment();
      return absl::OkStatus();
    }
    remote->home = from;
    previous = remote->view != nullptr ? remote->view : local_view;
    round = std::max(remote->round, previous != nullptr ? previous->round : 0) + 1;
  }
  if (pairs_.Connected(*remote->pair, fragment.boot_id())) {
    TS_LOG(INFO) << "host " << fragment.host() << " (homed on replica " << from
                 << ") rebooted: its ends in this replica's tuples that its next view lacks are "
                    "lost with the reboot";
  }
  std::vector<PairIndex::Close> closes;
  closes.reserve(static_cast<size_t>(fragment.closes_size()));
  for (const v1::FragmentClose& close : fragment.closes()) {
    closes.push_back(
        {close.connection_id(), &close.endpoints(), TimeFromUnixNanos(close.time_unix_ns())});
  }
  if (!closes.empty()) pairs_.ApplyCloses(*remote->pair, closes);
  if (!fragment.has_ends()) return absl::OkStatus();
  std::shared_ptr<const HostView> view =
      HostView::Unpack(fragment.ends(), remote->pair, round, now, &remote->origins);
  metrics_->replica_received_ends.Increment(static_cast<double>(view->ends.size()));
  {
    absl::MutexLock lock(&remote->mu);
    remote->view = view;
    remote->round = round;
  }
  reporter_.Report(pairs_.ApplySnapshot(*remote->pair, view, previous.get()), now);
  return absl::OkStatus();
}

absl::Status Aggregator::ApplyStatus(const std::string& from, const v1::HostStatus& status,
                                     absl::Time now) {
  if (absl::Status valid = ValidateHostStatus(status); !valid.ok()) return valid;
  absl::ReaderMutexLock apply_lock(&remote_apply_mu_);
  std::shared_ptr<RemoteHost> remote = FindRemote(status.host());
  if (remote == nullptr) return absl::OkStatus();  // no ends here
  {
    absl::MutexLock lock(&remote->mu);
    if (remote->home != from) return absl::OkStatus();  // the host moved on since
  }
  absl::MutexLock apply(&remote->apply_mu);
  switch (status.change()) {
    case v1::HostStatus::CHANGE_DISCONNECTED: {
      absl::MutexLock pass_lock(&remote->pair->pass_mu);
      pairs_.Disconnected(*remote->pair);
      break;
    }
    case v1::HostStatus::CHANGE_DOWN:
    case v1::HostStatus::CHANGE_UP: {
      std::shared_ptr<const HostView> view;
      {
        absl::MutexLock lock(&remote->mu);
        view = remote->view;
      }
      absl::MutexLock pass_lock(&remote->pair->pass_mu);
      reporter_.Report(pairs_.SetDown(*remote->pair, status.change() == v1::HostStatus::CHANGE_DOWN,
                                      TimeFromUnixNanos(status.last_seen_unix_ns()), view.get()),
                       now);
      break;
    }
    case v1::HostStatus::CHANGE_EXPIRED: {
      bool homed_here = false;
      {
        absl::MutexLock lock(&mu_);
        remote_.erase(status.host());
        homed_here = hosts_.contains(status.host());
      }
      metrics_->replica_remote_hosts.Decrement();
      if (!homed_here) pairs_.Forget(status.host());
      pairs_.Release(status.host());
      break;
    }
    default:
      break;
  }
  return absl::OkStatus();
}

std::shared_ptr<RemoteHost> Aggregator::FindRemote(const std::string& host) const {
  absl::MutexLock lock(&mu_);
  auto it = remote_.find(host);
  return it == remote_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<RemoteHost>> Aggregator::RemoteHosts() const {
  std::vector<std::pair<std::string, std::shared_ptr<RemoteHost>>> named;
  {
    absl::MutexLock lock(&mu_);
    named.assign(remote_.begin(), remote_.end());
  }
  std::sort(named.begin(), named.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::shared_ptr<RemoteHost>> hosts;
  hosts.reserve(named.size());
  for (auto& [name, host] : named) hosts.push_back(std::move(host));
  return hosts;
}

}  // namespace tcpscope::service
