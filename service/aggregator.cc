// Host registry and batch application. The map lock is held only to find a host (and, in the
// rare Connect and expiry, while deciding about it); applying a batch locks just that host, so
// agents do not contend with each other. Lock order: mu_, then a host's mu_, then pairs_'s
// own lock, a leaf.
#include "service/aggregator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/unix_time.h"
#include "service/host_summary.h"
#include "service/query_filters.h"

namespace tcpscope::service {

class HostState {
 public:
  HostState(ServiceMetrics* metrics, std::string host, WorkloadLimits limits)
      : host_(std::make_shared<const std::string>(host)),
        workloads_(std::make_shared<WorkloadMetrics>(metrics, host, limits)),
        metrics_(std::make_shared<HostMetrics>(metrics, std::move(host))) {}

  const std::string& host() const { return *host_; }

 private:
  friend class Aggregator;
  const std::shared_ptr<const std::string> host_;
  // Shared with the pairing index, which counts half-open ends into it; it has its own lock.
  const std::shared_ptr<WorkloadMetrics> workloads_;
  mutable absl::Mutex mu_;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  v1::Hello hello_ ABSL_GUARDED_BY(mu_);
  absl::Time connected_since_ ABSL_GUARDED_BY(mu_);
  absl::Time last_seen_ ABSL_GUARDED_BY(mu_);
  uint64_t last_applied_seq_ ABSL_GUARDED_BY(mu_) = 0;
  v1::LossCounters losses_ ABSL_GUARDED_BY(mu_);
  // The latest snapshot, its receipt time, and each connection's at-risk reason.
  std::shared_ptr<const v1::Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  absl::Time snapshot_received_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const std::vector<v1::AtRiskReason>> at_risk_ ABSL_GUARDED_BY(mu_);
  SnapshotCounts snapshot_counts_ ABSL_GUARDED_BY(mu_);
  // Shared with the pairing index, which reports the host's half-open ends into it.
  std::shared_ptr<HostMetrics> metrics_ ABSL_GUARDED_BY(mu_);
};

namespace {

// Whether a pair is listed from this end: the end whose peer is lost or not listed (its host
// is disconnected), else the client's end, else the end on the host that sorts first.
bool ListsPair(const std::string& host, const v1::Connection& connection, const EndStatus& status) {
  if (!status.peer_listed) return true;
  const v1::Role peer_role = status.peer->connection().role();
  if (connection.role() != peer_role) {
    if (connection.role() == v1::ROLE_CLIENT) return true;
    if (peer_role == v1::ROLE_CLIENT) return false;
  }
  return host < status.peer->host();
}

}  // namespace

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
    slot = std::make_shared<HostState>(metrics_, hello.host_name(), limits);
    metrics_->hosts.Set(static_cast<double>(hosts_.size()));
  }
  HostState& state = *slot;
  absl::MutexLock host_lock(&state.mu_);
  if (state.connected_) {
    return absl::AlreadyExistsError(
        absl::StrCat("host ", hello.host_name(), " already has a connected agent (boot id ",
                     state.hello_.boot_id(), ", connected since ",
                     absl::FormatTime(state.connected_since_, absl::UTCTimeZone()),
                     "); two agents claim one host name: give each its own --host_name"));
  }
  if (state.hello_.instance_id() != hello.instance_id()) {
    // A new agent process numbers its batches from 1 again and counts losses from 0.
    state.last_applied_seq_ = 0;
    state.losses_.Clear();
    state.metrics_->SetLosses(v1::LossCounters());
  }
  state.hello_ = hello;
  state.connected_ = true;
  state.connected_since_ = now;
  state.last_seen_ = now;
  state.metrics_->SetUp(true);
  pairs_.Connected(state.host_, hello.boot_id(), state.workloads_, state.metrics_);
  *last_applied_seq = state.last_applied_seq_;
  return slot;
}

bool Aggregator::Apply(HostState& host, std::shared_ptr<v1::Batch> batch, absl::Time now) {
  // Classify the snapshot before taking the host's lock.
  std::shared_ptr<const v1::Snapshot> snapshot;
  std::shared_ptr<const v1::Snapshot> paired_snapshot;
  std::shared_ptr<std::vector<v1::AtRiskReason>> at_risk;
  if (batch->has_snapshot()) {
    // Shares the batch (and its arena) rather than copying the snapshot out of it.
    snapshot = std::shared_ptr<const v1::Snapshot>(batch, &batch->snapshot());
    paired_snapshot = snapshot;
    at_risk = std::make_shared<std::vector<v1::AtRiskReason>>();
    at_risk->reserve(static_cast<size_t>(snapshot->connections_size()));
    const absl::Time taken = TimeFromUnixNanos(snapshot->time_unix_ns());
    for (const v1::Connection& connection : snapshot->connections()) {
      at_risk->push_back(AtRiskReasonOf(connection, taken, options_.at_risk));
    }
  }
  {
    absl::MutexLock lock(&host.mu_);
    host.last_seen_ = now;
    if (batch->seq() <= host.last_applied_seq_) return false;
    // A gap means the agent dropped batches from its full buffer; batch.losses counts them.
    host.last_applied_seq_ = batch->seq();
    HostMetrics& metrics = *host.metrics_;
    for (const v1::Event& event : batch->events()) metrics.CountEvent(event);
    host.workloads_->CountEvents(batch->events(), now);
    metrics.AddEvents(static_cast<uint64_t>(batch->events_size()));
    metrics.SetLosses(batch->losses());
    host.losses_ = batch->losses();
    if (snapshot != nullptr) {
      host.snapshot_counts_ = CountSnapshot(*snapshot, *at_risk);
      metrics.SetSnapshot(host.snapshot_counts_);
      host.workloads_->SetSnapshot(*snapshot, *at_risk, now);
      host.snapshot_ = std::move(snapshot);
      host.at_risk_ = std::move(at_risk);
      host.snapshot_received_ = now;
    }
  }
  if (paired_snapshot != nullptr || batch->events_size() > 0) {
    pairs_.Apply(host.host_, *batch, std::move(paired_snapshot), now);
  }
  if (batch->events_size() == 0) return true;
  auto published = std::make_shared<PublishedBatch>();
  published->host = host.host_;
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
  absl::MutexLock lock(&host.mu_);
  host.connected_ = false;
  host.last_seen_ = now;
  host.snapshot_.reset();
  host.at_risk_.reset();
  host.snapshot_counts_ = SnapshotCounts();
  host.metrics_->SetUp(false);
  host.metrics_->ClearSnapshot();
  host.workloads_->ClearGauges();
  pairs_.Disconnected(host.host());
}

std::vector<std::string> Aggregator::ExpireHosts(absl::Time now) {
  std::vector<std::string> expired;
  absl::MutexLock lock(&mu_);
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    auto current = it++;
    // Kept until the host's lock is released: the erase below may drop the last reference.
    const std::shared_ptr<HostState> state = current->second;
    {
      absl::MutexLock host_lock(&state->mu_);
      if (state->connected_ || now - state->last_seen_ < options_.host_expiry) {
        state->workloads_->Expire(now);  // pods and ports idle for as long
        continue;
      }
      state->metrics_.reset();  // its series go once the pairing index forgets it too
      state->workloads_->RemoveAll();
    }
    expired.push_back(current->first);
    pairs_.Forget(current->first);
    hosts_.erase(current);
  }
  if (!expired.empty()) {
    metrics_->hosts.Set(static_cast<double>(hosts_.size()));
    metrics_->hosts_expired.Increment(static_cast<double>(expired.size()));
  }
  return expired;
}

void Aggregator::CheckSilentHosts(absl::Time now) {
  std::vector<std::pair<std::string, absl::Time>> last_seen;
  for (const auto& state : Hosts("")) {
    absl::MutexLock lock(&state->mu_);
    last_seen.emplace_back(state->host(), state->last_seen_);
  }
  pairs_.CheckSilence(last_seen, now);
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

std::vector<v1::Agent> Aggregator::Agents() const {
  std::vector<v1::Agent> agents;
  for (const auto& state : Hosts("")) {
    absl::MutexLock lock(&state->mu_);
    if (state->metrics_ == nullptr) continue;  // expired since listed
    v1::Agent& agent = agents.emplace_back();
    agent.set_host_name(state->host());
    agent.set_connected(state->connected_);
    agent.set_last_seen_unix_ns(UnixNanos(state->last_seen_));
    if (state->connected_) agent.set_connected_since_unix_ns(UnixNanos(state->connected_since_));
    agent.set_agent_version(state->hello_.agent_version());
    agent.set_boot_id(state->hello_.boot_id());
    agent.set_source(state->hello_.source());
    agent.set_events(state->metrics_->totals().events);
    *agent.mutable_losses() = state->losses_;
    if (state->snapshot_ != nullptr) {
      agent.set_connections(static_cast<uint32_t>(state->snapshot_->connections_size()));
      const auto& at_risk = state->snapshot_counts_.at_risk;
      agent.set_at_risk(at_risk[1] + at_risk[2] + at_risk[3]);
      const auto half_open = pairs_.HalfOpenCounts(state->host());
      agent.set_half_open(half_open[1] + half_open[2] + half_open[3]);
    }
  }
  return agents;
}

v1::ListConnectionsResponse Aggregator::Connections(const v1::ListConnectionsRequest& request,
                                                    absl::Time now) const {
  const absl::StatusOr<ConnectionMatcher> matcher = ConnectionMatcher::Create(request);
  v1::ListConnectionsResponse response;
  if (!matcher.ok()) return response;
  uint64_t oldest_ms = 0;
  const bool paired = matcher->paired();
  // Pairs are listed once, from one end, so every host is looked at; the host filter takes
  // either end.
  for (const auto& state : Hosts(paired ? std::string() : request.host())) {
    std::shared_ptr<const v1::Snapshot> snapshot;
    std::shared_ptr<const std::vector<v1::AtRiskReason>> at_risk;
    {
      absl::MutexLock lock(&state->mu_);
      if (state->snapshot_ == nullptr) continue;
      snapshot = state->snapshot_;
      at_risk = state->at_risk_;
      oldest_ms = std::max<uint64_t>(
          oldest_ms, static_cast<uint64_t>(std::max<int64_t>(
                         0, absl::ToInt64Milliseconds(now - state->snapshot_received_))));
    }
    // Copies outside the host's lock: snapshots are immutable once applied.
    // Every paired end names its peer (host, state, process, container, pod).
    std::vector<EndStatus> statuses =
        pairs_.Describe(state->host(), *snapshot, /*with_peers=*/true);
    for (int i = 0; i < snapshot->connections_size(); ++i) {
      const v1::Connection& connection = snapshot->connections(i);
      const v1::AtRiskReason reason = (*at_risk)[static_cast<size_t>(i)];
      EndStatus& status = statuses[static_cast<size_t>(i)];
      if (paired) {
        if (status.pairing != v1::PAIRING_PAIRED || !status.peer.has_value() ||
            !ListsPair(state->host(), connection, status)) {
          continue;
        }
        const v1::PeerEnd& peer = *status.peer;
        if (!matcher->MatchesHost(state->host()) && !matcher->MatchesHost(peer.host())) continue;
        // A lost peer end's last state does not match filters: it is no longer there.
        if (!matcher->Matches(connection, reason, status.half_open) &&
            !(peer.present() && matcher->Matches(peer.connection(), v1::AT_RISK_REASON_UNSPECIFIED,
                                                 v1::HALF_OPEN_REASON_UNSPECIFIED))) {
          continue;
        }
      } else if (!matcher->Matches(connection, reason, status.half_open)) {
        continue;
      }
      v1::HostConnection* entry = response.add_connections();
      entry->set_host(state->host());
      *entry->mutable_connection() = connection;
      entry->set_at_risk(reason);
      entry->set_pairing(status.pairing);
      entry->set_half_open(status.half_open);
      if (status.peer.has_value()) *entry->mutable_peer() = std::move(*status.peer);
    }
  }
  response.set_snapshot_age_ms_max(oldest_ms);
  return response;
}

v1::SummaryResponse Aggregator::Summary(const std::string& host) const {
  v1::SummaryResponse response;
  EventTotals fleet_totals;
  SnapshotCounts fleet_snapshot;
  v1::HostSummary* fleet = response.mutable_fleet();
  v1::LossCounters* fleet_losses = fleet->mutable_losses();
  for (const auto& state : Hosts(host)) {
    absl::MutexLock lock(&state->mu_);
    if (state->metrics_ == nullptr) continue;  // expired since listed
    v1::HostSummary* summary = response.add_hosts();
    summary->set_host(state->host());
    summary->set_agents(1);
    summary->set_agents_connected(state->connected_ ? 1 : 0);
    *summary->mutable_losses() = state->losses_;
    SnapshotCounts counts = state->snapshot_counts_;
    if (state->snapshot_ != nullptr) counts.half_open = pairs_.HalfOpenCounts(state->host());
    const EventTotals totals = state->metrics_->totals();
    FillSummary(totals, counts, summary);
    fleet_totals.Add(totals);
    fleet_snapshot.Add(counts);
    fleet->set_agents(fleet->agents() + 1);
    fleet->set_agents_connected(fleet->agents_connected() + summary->agents_connected());
    fleet_losses->set_kernel(fleet_losses->kernel() + state->losses_.kernel());
    fleet_losses->set_agent(fleet_losses->agent() + state->losses_.agent());
    fleet_losses->set_transport(fleet_losses->transport() + state->losses_.transport());
  }
  FillSummary(fleet_totals, fleet_snapshot, fleet);
  const EventLog::Stats history = log_->stats();
  response.set_history_events(history.events);
  response.set_history_oldest_unix_ns(history.oldest_unix_ns);
  return response;
}

}  // namespace tcpscope::service
