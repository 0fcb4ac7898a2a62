// Host registry and batch application. The map lock is held only to find a host; applying a
// batch locks just that host, so agents do not contend with each other.
#include "service/aggregator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace tcpscope::service {

class HostState {
 public:
  HostState(ServiceMetrics* metrics, std::string host)
      : host_(host), metrics_(std::make_unique<HostMetrics>(metrics, std::move(host))) {}

  const std::string& host() const { return host_; }

 private:
  friend class Aggregator;
  const std::string host_;
  mutable absl::Mutex mu_;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  v1::Hello hello_ ABSL_GUARDED_BY(mu_);
  absl::Time connected_since_ ABSL_GUARDED_BY(mu_);
  absl::Time last_seen_ ABSL_GUARDED_BY(mu_);
  uint64_t last_applied_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t events_ ABSL_GUARDED_BY(mu_) = 0;
  v1::LossCounters losses_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const v1::Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<HostMetrics> metrics_ ABSL_GUARDED_BY(mu_);
};

namespace {

uint64_t UnixNanos(absl::Time time) {
  return time == absl::Time() ? 0 : static_cast<uint64_t>(absl::ToUnixNanos(time));
}

bool HasPort(const v1::Endpoints& endpoints, uint32_t port) {
  return endpoints.local_port() == port || endpoints.remote_port() == port;
}

}  // namespace

Aggregator::~Aggregator() = default;

absl::StatusOr<std::shared_ptr<HostState>> Aggregator::Connect(const v1::Hello& hello,
                                                               absl::Time now,
                                                               uint64_t* last_applied_seq) {
  std::shared_ptr<HostState> state;
  {
    absl::MutexLock lock(&mu_);
    auto& slot = hosts_[hello.host_name()];
    if (slot == nullptr) slot = std::make_shared<HostState>(metrics_, hello.host_name());
    state = slot;
  }
  absl::MutexLock lock(&state->mu_);
  if (state->connected_) {
    return absl::AlreadyExistsError(
        absl::StrCat("host ", hello.host_name(), " already has a connected agent (boot id ",
                     state->hello_.boot_id(), ", connected since ",
                     absl::FormatTime(state->connected_since_, absl::UTCTimeZone()),
                     "); two agents claim one host name: give each its own --host_name"));
  }
  if (state->hello_.instance_id() != hello.instance_id()) {
    // A new agent process numbers its batches from 1 again and counts losses from 0.
    state->last_applied_seq_ = 0;
    state->losses_.Clear();
    state->metrics_->SetLosses(v1::LossCounters());
  }
  state->hello_ = hello;
  state->connected_ = true;
  state->connected_since_ = now;
  state->last_seen_ = now;
  state->metrics_->SetUp(true);
  *last_applied_seq = state->last_applied_seq_;
  return state;
}

bool Aggregator::Apply(HostState& host, const v1::Batch& batch, absl::Time now) {
  {
    absl::MutexLock lock(&host.mu_);
    host.last_seen_ = now;
    if (batch.seq() <= host.last_applied_seq_) return false;
    // A gap means the agent dropped batches from its full buffer; batch.losses counts them.
    host.last_applied_seq_ = batch.seq();
    HostMetrics& metrics = *host.metrics_;
    for (const v1::Event& event : batch.events()) metrics.CountEvent(event);
    metrics.AddEvents(static_cast<uint64_t>(batch.events_size()));
    host.events_ += static_cast<uint64_t>(batch.events_size());
    metrics.SetLosses(batch.losses());
    host.losses_ = batch.losses();
    if (batch.has_snapshot()) {
      metrics.SetSnapshot(batch.snapshot());
      host.snapshot_ = std::make_shared<const v1::Snapshot>(batch.snapshot());
    }
  }
  hub_->Publish(host.host(), batch.events());
  return true;
}

void Aggregator::Disconnect(HostState& host, absl::Time now) {
  absl::MutexLock lock(&host.mu_);
  host.connected_ = false;
  host.last_seen_ = now;
  host.snapshot_.reset();
  host.metrics_->SetUp(false);
  host.metrics_->ClearSnapshot();
}

std::vector<v1::Agent> Aggregator::Agents() const {
  std::vector<std::shared_ptr<HostState>> hosts;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, state] : hosts_) hosts.push_back(state);
  }
  std::vector<v1::Agent> agents;
  for (const auto& state : hosts) {
    absl::MutexLock lock(&state->mu_);
    v1::Agent& agent = agents.emplace_back();
    agent.set_host_name(state->host());
    agent.set_connected(state->connected_);
    agent.set_last_seen_unix_ns(UnixNanos(state->last_seen_));
    if (state->connected_) agent.set_connected_since_unix_ns(UnixNanos(state->connected_since_));
    agent.set_agent_version(state->hello_.agent_version());
    agent.set_boot_id(state->hello_.boot_id());
    agent.set_source(state->hello_.source());
    agent.set_events(state->events_);
    *agent.mutable_losses() = state->losses_;
    if (state->snapshot_ != nullptr) {
      agent.set_connections(static_cast<uint32_t>(state->snapshot_->connections_size()));
    }
  }
  std::sort(agents.begin(), agents.end(),
            [](const auto& a, const auto& b) { return a.host_name() < b.host_name(); });
  return agents;
}

std::vector<v1::HostConnection> Aggregator::Connections(
    const v1::ListConnectionsRequest& request) const {
  std::vector<std::pair<std::string, std::shared_ptr<const v1::Snapshot>>> snapshots;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, state] : hosts_) {
      if (!request.host().empty() && name != request.host()) continue;
      absl::MutexLock host_lock(&state->mu_);
      if (state->snapshot_ != nullptr) snapshots.emplace_back(name, state->snapshot_);
    }
  }
  std::sort(snapshots.begin(), snapshots.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<v1::HostConnection> result;
  for (const auto& [host, snapshot] : snapshots) {
    for (const v1::Connection& connection : snapshot->connections()) {
      if (request.state() != v1::TCP_STATE_UNSPECIFIED && connection.state() != request.state()) {
        continue;
      }
      if (request.port() != 0 && !HasPort(connection.endpoints(), request.port())) continue;
      v1::HostConnection& entry = result.emplace_back();
      entry.set_host(host);
      *entry.mutable_connection() = connection;
    }
  }
  return result;
}

}  // namespace tcpscope::service
