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

void HalfOpenReporter::Report(Findings findings, absl::Time now) {
  // One published batch per host, hosts in the order first found.
  std::vector<std::pair<std::shared_ptr<HostState>, std::shared_ptr<v1::Batch>>> batches;
  absl::flat_hash_map<const HostState*, size_t> batch_of;
  for (const HalfOpenFinding& finding : findings.half_open) {
    std::shared_ptr<HostState> host = lookup_(finding.host->name);
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
    if (std::shared_ptr<HostState> host = lookup_(changed->name); host != nullptr) {
      Refresh(*host, now);
    }
  }
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
  // The workload series: what the index says now replaces what was counted before.
  for (const auto& [series, reason] : host.half_open_series) {
    host.workloads->RemoveHalfOpen(series, reason);
  }
  host.half_open_series.clear();
  for (size_t i = 0; i < statuses.size(); ++i) {
    const v1::HalfOpenReason reason = statuses[i].half_open;
    if (reason == v1::HALF_OPEN_REASON_UNSPECIFIED) continue;
    std::string series = host.workloads->AddHalfOpen(view->OriginOf(view->ends[i]), reason, now);
    if (!series.empty()) host.half_open_series.emplace_back(std::move(series), reason);
  }
  absl::MutexLock lock(&host.mu);
  if (listed && host.connected && host.metrics != nullptr) {
    host.metrics->SetHalfOpen(host.pair->HalfOpenCounts());
  }
}

}  // namespace tcpscope::service
