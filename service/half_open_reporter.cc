#include "service/half_open_reporter.h"

#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/tcp_names.h"
#include "common/unix_time.h"

namespace tcpscope::service {
namespace {

v1::Event EventOf(const HalfOpenFinding& finding, absl::Time now) {
  const v1::Connection& connection = finding.connection;
  const v1::Connection& peer = finding.peer.connection;
  v1::Event event;
  event.set_time_unix_ns(UnixNanos(now));
  event.set_connection_id(connection.connection_id());
  *event.mutable_origin() = connection.origin();
  *event.mutable_endpoints() = connection.endpoints();
  event.set_role(connection.role());
  v1::HalfOpen* half_open = event.mutable_half_open();
  half_open->set_reason(finding.reason);
  half_open->set_peer_host(finding.peer.host->name);
  half_open->set_peer_connection_id(peer.connection_id());
  half_open->set_peer_last_state(peer.state());
  half_open->set_peer_lost_unix_ns(UnixNanos(finding.peer_lost));
  *half_open->mutable_peer_origin() = peer.origin();
  return event;
}

void Log(const HalfOpenFinding& finding, absl::Time now) {
  const v1::Endpoints& endpoints = finding.connection.endpoints();
  TS_LOG(INFO) << "half-open: " << finding.host->name << " "
               << FormatAddress(endpoints.local_address(), endpoints.local_port()) << " -> "
               << FormatAddress(endpoints.remote_address(), endpoints.remote_port())
               << " is ESTABLISHED, its peer's end on " << finding.peer.host->name << " is gone ("
               << HalfOpenReasonName(finding.reason) << ", "
               << (finding.peer_lost == absl::Time()
                       ? std::string("when unknown")
                       : absl::StrCat(absl::FormatDuration(absl::Trunc(now - finding.peer_lost,
                                                                       absl::Milliseconds(1))),
                                      " ago"))
               << ")";
}

}  // namespace

namespace {

// Where a host's reports go: its state here, or its record of another replica's host. A host
// homed here wins while its agent is connected; otherwise its record elsewhere does.
struct Route {
  std::shared_ptr<HostState> local;
  std::shared_ptr<RemoteHost> remote;
};

Route RouteOf(const ReportRoutes& routes, const std::string& name) {
  Route route;
  route.local = routes.local(name);
  if (routes.remote) route.remote = routes.remote(name);
  if (route.local != nullptr && route.remote != nullptr) {
    bool connected = false;
    {
      absl::MutexLock lock(&route.local->mu);
      connected = route.local->connected;
    }
    if (connected) {
      route.remote = nullptr;
    } else {
      route.local = nullptr;
    }
  }
  return route;
}

}  // namespace

void HalfOpenReporter::Report(Findings findings, absl::Time now) {
  // One published batch per host, hosts in the order first found; one message per host homed
  // on another replica.
  std::vector<std::pair<std::shared_ptr<HostState>, std::shared_ptr<v1::Batch>>> batches;
  absl::flat_hash_map<const HostState*, size_t> batch_of;
  absl::flat_hash_map<std::string, std::pair<std::shared_ptr<RemoteHost>, v1::ReplicaMessage>>
      remote;
  auto remote_findings = [&](const std::string& name, std::shared_ptr<RemoteHost> host) {
    auto [slot, added] = remote.try_emplace(name);
    if (added) {
      slot->second.first = std::move(host);
      slot->second.second.mutable_findings()->set_host(name);
    }
    return slot->second.second.mutable_findings();
  };
  for (const HalfOpenFinding& finding : findings.half_open) {
    const Route route = RouteOf(routes_, finding.host->name);
    if (route.remote != nullptr) {
      *remote_findings(finding.host->name, route.remote)->add_half_open() = EventOf(finding, now);
      continue;
    }
    const std::shared_ptr<HostState>& host = route.local;
    if (host == nullptr) continue;  // expired meanwhile
    Log(finding, now);
    {
      absl::MutexLock lock(&host->mu);
      if (host->metrics != nullptr) host->metrics->CountHalfOpenDetected(finding.reason);
    }
    auto [slot, added] = batch_of.try_emplace(host.get(), batches.size());
    if (added) batches.emplace_back(host, std::make_shared<v1::Batch>());
    *batches[slot->second].second->add_events() = EventOf(finding, now);
  }
  for (auto& [host, batch] : batches) {
    auto published = std::make_shared<PublishedBatch>();
    published->host = host->name;
    published->batch = std::move(batch);
    log_->Publish(std::move(published));
  }
  for (const auto& changed : findings.changed) {
    const Route route = RouteOf(routes_, changed->name);
    if (route.local != nullptr) {
      Refresh(*route.local, now);
      continue;
    }
    if (route.remote == nullptr) continue;
    // The home gets every half-open end of the host in this replica's tuples.
    std::shared_ptr<const HostView> view;
    {
      absl::MutexLock lock(&route.remote->mu);
      view = route.remote->view;
    }
    v1::HalfOpenEnds* now_half_open =
        remote_findings(changed->name, route.remote)->mutable_half_open_now();
    if (view == nullptr) continue;
    const std::vector<EndStatus> statuses = pairs_->Describe(*view, /*with_peers=*/false);
    for (size_t i = 0; i < statuses.size(); ++i) {
      if (statuses[i].half_open == v1::HALF_OPEN_REASON_UNSPECIFIED) continue;
      v1::HalfOpenEnd* end = now_half_open->add_ends();
      end->set_reason(statuses[i].half_open);
      *end->mutable_origin() = view->OriginOf(view->ends[i]);
    }
  }
  for (auto& [name, item] : remote) {
    std::string home;
    {
      absl::MutexLock lock(&item.first->mu);
      home = item.first->home;
    }
    routes_.send(home, std::move(item.second));
  }
}

void HalfOpenReporter::ReportFromReplica(HostState& host, const std::string& replica,
                                         v1::HostFindings& findings, absl::Time now) {
  if (findings.half_open_size() > 0) {
    auto batch = std::make_shared<v1::Batch>();
    for (v1::Event& event : *findings.mutable_half_open()) {
      const v1::Endpoints& endpoints = event.endpoints();
      const v1::HalfOpen& half_open = event.half_open();
      TS_LOG(INFO) << "half-open: " << host.host() << " "
                   << FormatAddress(endpoints.local_address(), endpoints.local_port()) << " -> "
                   << FormatAddress(endpoints.remote_address(), endpoints.remote_port())
                   << " is ESTABLISHED, its peer's end on " << half_open.peer_host() << " is gone ("
                   << HalfOpenReasonName(half_open.reason()) << ", found by replica " << replica
                   << ")";
      {
        absl::MutexLock lock(&host.mu);
        if (host.metrics != nullptr) host.metrics->CountHalfOpenDetected(half_open.reason());
      }
      *batch->add_events() = std::move(event);
    }
    auto published = std::make_shared<PublishedBatch>();
    published->host = host.name;
    published->batch = std::move(batch);
    log_->Publish(std::move(published));
  }
  if (!findings.has_half_open_now()) return;
  {
    absl::MutexLock report_lock(&host.report_mu);
    std::vector<v1::HalfOpenEnd>& ends = host.remote_half_open[replica];
    ends.assign(std::make_move_iterator(findings.mutable_half_open_now()->mutable_ends()->begin()),
                std::make_move_iterator(findings.mutable_half_open_now()->mutable_ends()->end()));
    if (ends.empty()) host.remote_half_open.erase(replica);
    std::array<uint32_t, v1::HalfOpenReason_ARRAYSIZE> counts{};
    for (const auto& [owner, owner_ends] : host.remote_half_open) {
      for (const v1::HalfOpenEnd& end : owner_ends) ++counts[end.reason()];
    }
    for (size_t i = 0; i < counts.size(); ++i) host.remote_half_open_counts[i] = counts[i];
  }
  Refresh(host, now);
}

void HalfOpenReporter::ForgetReplicaReports(HostState& host, absl::Time now) {
  {
    absl::MutexLock report_lock(&host.report_mu);
    if (host.remote_half_open.empty()) return;
    host.remote_half_open.clear();
    for (auto& count : host.remote_half_open_counts) count = 0;
  }
  Refresh(host, now);
}

void HalfOpenReporter::Refresh(HostState& host, absl::Time now) {
  absl::MutexLock report_lock(&host.report_mu);
  std::shared_ptr<const HostView> view;
  bool listed = false;
  {
    absl::MutexLock lock(&host.mu);
    view = host.view;
    listed = host.connected && host.view_current;
  }
  std::vector<EndStatus> statuses;
  if (view != nullptr) statuses = pairs_->Describe(*view, /*with_peers=*/false);
  // The workload series: what the index and the other replicas say now replaces what was
  // counted before.
  for (const auto& [series, reason] : host.half_open_series) {
    host.workloads->RemoveHalfOpen(series, reason);
  }
  host.half_open_series.clear();
  auto add = [&](const v1::Origin& origin, v1::HalfOpenReason reason) {
    std::string series = host.workloads->AddHalfOpen(origin, reason, now);
    if (!series.empty()) host.half_open_series.emplace_back(std::move(series), reason);
  };
  for (size_t i = 0; i < statuses.size(); ++i) {
    const v1::HalfOpenReason reason = statuses[i].half_open;
    if (reason != v1::HALF_OPEN_REASON_UNSPECIFIED) add(view->OriginOf(view->ends[i]), reason);
  }
  for (const auto& [owner, ends] : host.remote_half_open) {
    for (const v1::HalfOpenEnd& end : ends) add(end.origin(), end.reason());
  }
  absl::MutexLock lock(&host.mu);
  if (listed && host.connected && host.metrics != nullptr) {
    host.metrics->SetHalfOpen(host.HalfOpenCounts());
  }
}

}  // namespace tcpscope::service
