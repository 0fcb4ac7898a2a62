// Merging the replicas' parts of each Observer answer.
#include "service/fleet_merge.h"

#include <algorithm>
#include <map>
#include <queue>
#include <string>
#include <utility>

#include "service/host_summary.h"

namespace tcpscope::service {
namespace {

// Whether `candidate` describes the host better than `chosen`: connected first, then the one
// seen last.
bool Fresher(const v1::Agent& candidate, const v1::Agent& chosen) {
  if (candidate.connected() != chosen.connected()) return candidate.connected();
  return candidate.last_seen_unix_ns() > chosen.last_seen_unix_ns();
}

}  // namespace

v1::ListAgentsResponse MergeAgents(std::vector<v1::ListAgentsResponse> parts) {
  std::map<std::string, v1::Agent> by_host;
  for (v1::ListAgentsResponse& part : parts) {
    for (v1::Agent& agent : *part.mutable_agents()) {
      auto [it, inserted] = by_host.try_emplace(agent.host_name(), agent);
      if (inserted) continue;
      const uint64_t events = it->second.events() + agent.events();
      if (Fresher(agent, it->second)) it->second = std::move(agent);
      it->second.set_events(events);
    }
  }
  v1::ListAgentsResponse merged;
  for (auto& [host, agent] : by_host) *merged.add_agents() = std::move(agent);
  return merged;
}

v1::ListConnectionsResponse MergeConnections(std::vector<v1::ListConnectionsResponse> parts) {
  std::vector<v1::HostConnection> all;
  uint64_t oldest_ms = 0;
  for (v1::ListConnectionsResponse& part : parts) {
    for (v1::HostConnection& entry : *part.mutable_connections()) all.push_back(std::move(entry));
    oldest_ms = std::max(oldest_ms, part.snapshot_age_ms_max());
  }
  std::stable_sort(
      all.begin(), all.end(),
      [](const v1::HostConnection& a, const v1::HostConnection& b) { return a.host() < b.host(); });
  v1::ListConnectionsResponse merged;
  merged.mutable_connections()->Reserve(static_cast<int>(all.size()));
  for (v1::HostConnection& entry : all) *merged.add_connections() = std::move(entry);
  merged.set_snapshot_age_ms_max(oldest_ms);
  return merged;
}

v1::SummaryResponse MergeSummaries(std::vector<v1::SummaryResponse> parts) {
  std::map<std::string, v1::HostSummary> by_host;
  uint64_t history_events = 0;
  uint64_t history_oldest = 0;
  for (const v1::SummaryResponse& part : parts) {
    for (const v1::HostSummary& host : part.hosts()) {
      auto [it, inserted] = by_host.try_emplace(host.host());
      v1::HostSummary& merged = it->second;
      const v1::LossCounters losses = merged.losses();
      AddHostSummary(host, &merged);
      merged.set_host(host.host());
      merged.set_agents(std::min<uint32_t>(merged.agents(), 1));
      merged.set_agents_connected(std::min<uint32_t>(merged.agents_connected(), 1));
      merged.mutable_losses()->set_kernel(std::max(losses.kernel(), host.losses().kernel()));
      merged.mutable_losses()->set_agent(std::max(losses.agent(), host.losses().agent()));
    }
    history_events += part.history_events();
    if (part.history_oldest_unix_ns() != 0 &&
        (history_oldest == 0 || part.history_oldest_unix_ns() < history_oldest)) {
      history_oldest = part.history_oldest_unix_ns();
    }
  }
  v1::SummaryResponse merged;
  for (auto& [host, summary] : by_host) *merged.add_hosts() = std::move(summary);
  *merged.mutable_fleet() = FleetTotal(merged.hosts());
  merged.set_history_events(history_events);
  merged.set_history_oldest_unix_ns(history_oldest);
  return merged;
}

std::vector<v1::HostEvent> MergeEventHistories(std::vector<std::vector<v1::HostEvent>> parts,
                                               uint32_t last) {
  // A k-way merge on each part's next event: a part's own order (publication order) is kept.
  struct Head {
    uint64_t time;
    size_t part;
    size_t index;
  };
  const auto later = [](const Head& a, const Head& b) {
    return a.time != b.time ? a.time > b.time : a.part > b.part;
  };
  std::priority_queue<Head, std::vector<Head>, decltype(later)> heads(later);
  size_t total = 0;
  for (size_t p = 0; p < parts.size(); ++p) {
    total += parts[p].size();
    if (!parts[p].empty()) heads.push({parts[p][0].event().time_unix_ns(), p, 0});
  }
  std::vector<v1::HostEvent> merged;
  merged.reserve(total);
  while (!heads.empty()) {
    const Head head = heads.top();
    heads.pop();
    merged.push_back(std::move(parts[head.part][head.index]));
    if (head.index + 1 < parts[head.part].size()) {
      heads.push(
          {parts[head.part][head.index + 1].event().time_unix_ns(), head.part, head.index + 1});
    }
  }
  if (last != 0 && merged.size() > last) merged.erase(merged.begin(), merged.end() - last);
  return merged;
}

}  // namespace tcpscope::service
