#include "service/fleet_queries.h"

#include <algorithm>
#include <memory>

#include "common/unix_time.h"
#include "service/host_summary.h"
#include "service/query_filters.h"

namespace tcpscope::service {
namespace {

constexpr v1::AtRiskReason kNoRisk = v1::AT_RISK_REASON_UNSPECIFIED;
constexpr v1::HalfOpenReason kNoHalfOpen = v1::HALF_OPEN_REASON_UNSPECIFIED;

uint32_t Sum(const std::array<uint32_t, v1::HalfOpenReason_ARRAYSIZE>& counts) {
  uint32_t sum = 0;
  for (uint32_t count : counts) sum += count;
  return sum;
}

void RaiseAge(const HostView& view, absl::Time now, uint64_t* oldest_ms) {
  *oldest_ms = std::max<uint64_t>(
      *oldest_ms,
      static_cast<uint64_t>(std::max<int64_t>(0, absl::ToInt64Milliseconds(now - view.received))));
}

// A host's view, when it is listed (connected, with a snapshot on the current stream).
std::shared_ptr<const HostView> ListedView(const HostState& host, absl::Time now,
                                           uint64_t* oldest_ms) {
  absl::MutexLock lock(&host.mu);
  if (!host.connected || !host.view_current) return nullptr;
  RaiseAge(*host.view, now, oldest_ms);
  return host.view;
}

// With replicas: another replica's host's view of this replica's tuples, while its agent is
// connected there.
std::shared_ptr<const HostView> ListedView(const RemoteHost& host, absl::Time now,
                                           uint64_t* oldest_ms) {
  absl::MutexLock lock(&host.mu);
  if (host.view == nullptr || !host.pair->live.load()) return nullptr;
  RaiseAge(*host.view, now, oldest_ms);
  return host.view;
}

struct ListedHost {
  const std::string* name;
  std::shared_ptr<const HostView> view;
};

// The listed views of `hosts` here and of `remote` hosts, by host name.
std::vector<ListedHost> ListedHosts(const std::vector<std::shared_ptr<HostState>>& hosts,
                                    const std::vector<std::shared_ptr<RemoteHost>>& remote,
                                    absl::Time now, uint64_t* oldest_ms) {
  std::vector<ListedHost> listed;
  for (const auto& state : hosts) {
    if (auto view = ListedView(*state, now, oldest_ms); view != nullptr) {
      listed.push_back({&state->host(), std::move(view)});
    }
  }
  for (const auto& host : remote) {
    if (auto view = ListedView(*host, now, oldest_ms); view != nullptr) {
      listed.push_back({&host->pair->name, std::move(view)});
    }
  }
  std::stable_sort(listed.begin(), listed.end(),
                   [](const ListedHost& a, const ListedHost& b) { return *a.name < *b.name; });
  return listed;
}

// Calls fn(host name, view, end, status) for every end in this replica's tuples of every listed
// host, with its status in the pair index (and its peer).
template <typename Fn>
void ForEachListedEnd(const PairIndex& pairs, const std::vector<ListedHost>& hosts, Fn fn) {
  for (const ListedHost& host : hosts) {
    std::vector<EndStatus> statuses = pairs.Describe(*host.view, /*with_peers=*/true);
    for (size_t i = 0; i < host.view->ends.size(); ++i) {
      if (statuses[i].owned) fn(*host.name, *host.view, host.view->ends[i], statuses[i]);
    }
  }
}

void FillPeer(const PeerFacts& facts, v1::PeerEnd* peer) {
  peer->set_host(facts.host->name);
  *peer->mutable_connection() = facts.connection;
  peer->set_present(facts.present);
  if (!facts.present) peer->set_lost_unix_ns(UnixNanos(facts.lost_at));
}

// Whether a pair is listed from this end: the end whose peer is lost or not listed (its host
// is disconnected), else the client's end, else the end on the host that sorts first.
bool ListsPair(const std::string& host, v1::Role role, const EndStatus& status) {
  if (!status.peer_listed) return true;
  const v1::Role peer_role = status.peer->connection.role();
  if (role != peer_role) {
    if (role == v1::ROLE_CLIENT) return true;
    if (peer_role == v1::ROLE_CLIENT) return false;
  }
  return host < status.peer->host->name;
}

}  // namespace

std::vector<v1::Agent> FleetQueries::Agents() const {
  std::vector<v1::Agent> agents;
  for (const auto& state : aggregator_->Hosts("")) {
    absl::MutexLock lock(&state->mu);
    if (state->metrics == nullptr) continue;  // expired since listed
    v1::Agent& agent = agents.emplace_back();
    agent.set_host_name(state->host());
    agent.set_connected(state->connected);
    agent.set_last_seen_unix_ns(UnixNanos(state->last_seen));
    if (state->connected) agent.set_connected_since_unix_ns(UnixNanos(state->connected_since));
    agent.set_agent_version(state->hello.agent_version());
    agent.set_boot_id(state->hello.boot_id());
    agent.set_source(state->hello.source());
    agent.set_events(state->metrics->totals().events);
    *agent.mutable_losses() = state->losses;
    *agent.mutable_source_health() = state->source_health;
    if (state->connected && state->view_current) {
      agent.set_connections(static_cast<uint32_t>(state->view->ends.size()));
      const auto& at_risk = state->snapshot_counts.at_risk;
      agent.set_at_risk(at_risk[1] + at_risk[2] + at_risk[3]);
      agent.set_half_open(Sum(state->HalfOpenCounts()));
    }
  }
  return agents;
}

v1::ListConnectionsResponse FleetQueries::Connections(const v1::ListConnectionsRequest& request,
                                                      absl::Time now) const {
  const absl::StatusOr<ConnectionMatcher> matcher = ConnectionMatcher::Create(request);
  v1::ListConnectionsResponse response;
  if (!matcher.ok()) return response;
  uint64_t oldest_ms = 0;
  const PairIndex& pairs = aggregator_->pairs();
  if (!matcher->paired()) {
    // Every paired end names its peer (host, state, process, container, pod).
    ForEachListedEnd(
        pairs,
        ListedHosts(aggregator_->Hosts(request.host()), Remote(request.host()), now, &oldest_ms),
        [&](const std::string& host, const HostView& view, const EndRecord& end,
            EndStatus& status) {
          v1::Connection connection = view.ConnectionOf(end);
          if (!matcher->Matches(connection, end.at_risk_reason(), status.half_open)) {
            return;
          }
          v1::HostConnection* entry = response.add_connections();
          entry->set_host(host);
          *entry->mutable_connection() = std::move(connection);
          entry->set_at_risk(end.at_risk_reason());
          entry->set_pairing(status.pairing);
          entry->set_half_open(status.half_open);
          if (status.peer.has_value()) FillPeer(*status.peer, entry->mutable_peer());
        });
    response.set_snapshot_age_ms_max(oldest_ms);
    return response;
  }
  // Pairs are listed once, from one end. With a host filter, only that host's ends and their
  // peers can match (the filter takes either end), so only its view is walked, unless it has
  // none listed: then its peers list the pairs, and every host is walked.
  bool walk_all = request.host().empty();
  if (!walk_all) {
    uint64_t unused = 0;
    walk_all = ListedHosts(aggregator_->Hosts(request.host()), Remote(request.host()), now, &unused)
                   .empty();
  }
  struct Listed {
    std::string host;
    v1::HostConnection entry;
  };
  std::vector<Listed> listed;
  const std::string& walked = walk_all ? std::string() : request.host();
  ForEachListedEnd(
      pairs, ListedHosts(aggregator_->Hosts(walked), Remote(walked), now, &oldest_ms),
      [&](const std::string& host, const HostView& view, const EndRecord& end, EndStatus& status) {
        if (status.pairing != v1::PAIRING_PAIRED || !status.peer.has_value()) return;
        const PeerFacts& peer = *status.peer;
        if (!matcher->MatchesHost(host) && !matcher->MatchesHost(peer.host->name)) return;
        const bool here = ListsPair(host, end.end_role(), status);
        // Walking every host, the peer's host lists the pair itself when it is its turn.
        if (!here && walk_all) return;
        v1::Connection connection = view.ConnectionOf(end);
        // The listing end's status counts; its peer matches on its connection alone. A lost peer
        // end's last state does not match filters: it is no longer there.
        const bool matches =
            here ? matcher->Matches(connection, end.at_risk_reason(), status.half_open) ||
                       (peer.present && matcher->Matches(peer.connection, kNoRisk, kNoHalfOpen))
                 : matcher->Matches(peer.connection, peer.at_risk, peer.half_open) ||
                       matcher->Matches(connection, kNoRisk, kNoHalfOpen);
        if (!matches) return;
        Listed& item = listed.emplace_back();
        v1::HostConnection& entry = item.entry;
        if (here) {
          item.host = host;
          entry.set_host(host);
          *entry.mutable_connection() = std::move(connection);
          entry.set_at_risk(end.at_risk_reason());
          entry.set_pairing(status.pairing);
          entry.set_half_open(status.half_open);
          FillPeer(peer, entry.mutable_peer());
        } else {
          // Listed from the peer's end (present and listed, or it would list here): its status
          // is its host's, this end is its peer.
          item.host = peer.host->name;
          entry.set_host(peer.host->name);
          *entry.mutable_connection() = peer.connection;
          entry.set_at_risk(peer.at_risk);
          entry.set_pairing(v1::PAIRING_PAIRED);
          entry.set_half_open(peer.half_open);
          v1::PeerEnd* self = entry.mutable_peer();
          self->set_host(host);
          *self->mutable_connection() = std::move(connection);
          self->set_present(true);
        }
      });
  std::stable_sort(listed.begin(), listed.end(),
                   [](const Listed& a, const Listed& b) { return a.host < b.host; });
  for (Listed& item : listed) *response.add_connections() = std::move(item.entry);
  response.set_snapshot_age_ms_max(oldest_ms);
  return response;
}

std::vector<std::shared_ptr<RemoteHost>> FleetQueries::Remote(const std::string& only) const {
  std::vector<std::shared_ptr<RemoteHost>> hosts = aggregator_->RemoteHosts();
  if (!only.empty()) {
    std::erase_if(hosts, [&](const auto& host) { return host->pair->name != only; });
  }
  return hosts;
}

v1::SummaryResponse FleetQueries::Summary(const std::string& host) const {
  v1::SummaryResponse response;
  for (const auto& state : aggregator_->Hosts(host)) {
    absl::MutexLock lock(&state->mu);
    if (state->metrics == nullptr) continue;  // expired since listed
    v1::HostSummary* summary = response.add_hosts();
    summary->set_host(state->host());
    summary->set_agents(1);
    summary->set_agents_connected(state->connected ? 1 : 0);
    *summary->mutable_losses() = state->losses;
    SnapshotCounts counts = state->snapshot_counts;
    if (state->connected && state->view_current) {
      const auto half_open = state->HalfOpenCounts();
      std::copy(half_open.begin(), half_open.end(), counts.half_open.begin());
    }
    FillSummary(state->metrics->totals(), counts, summary);
  }
  *response.mutable_fleet() = FleetTotal(response.hosts());
  const EventLog::Stats history = aggregator_->log().stats();
  response.set_history_events(history.events);
  response.set_history_oldest_unix_ns(history.oldest_unix_ns);
  return response;
}

}  // namespace tcpscope::service
