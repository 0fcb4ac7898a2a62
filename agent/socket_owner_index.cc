// Owner scans with their self-metrics, and listener lookups with a bounded rescan on a miss.
#include "agent/socket_owner_index.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace tcpscope::agent {
namespace {

constexpr uint8_t kListen = 10;

}  // namespace

SocketOwnerIndex::SocketOwnerIndex(std::unique_ptr<SocketOwners> scanner, AgentMetrics* metrics)
    : scanner_(std::move(scanner)),
      metrics_(metrics),
      table_(std::make_shared<const OwnerTable>()) {}

std::shared_ptr<const OwnerTable> SocketOwnerIndex::Scan() {
  const absl::Time start = absl::Now();
  absl::StatusOr<OwnerTable> scanned = scanner_->Scan();
  if (metrics_ != nullptr) {
    metrics_->owner_scans.Increment();
    metrics_->owner_scan_duration.Observe(absl::ToDoubleSeconds(absl::Now() - start));
  }
  if (!scanned.ok()) {
    if (metrics_ != nullptr) metrics_->owner_scan_errors.Increment();
    // The first failure and every 60th: a persistent fault does not flood the log.
    if (failures_++ % 60 == 0) {
      TS_LOG(WARNING) << "socket owner scan (" << scanner_->mode() << ") failed (" << failures_
                      << " in a row): " << scanned.status() << "; owners stay as last scanned";
    }
    return current();
  }
  if (failures_ > 0) {
    TS_LOG(INFO) << "socket owner scans work again after " << failures_ << " failures";
    failures_ = 0;
  }
  auto table = std::make_shared<const OwnerTable>(*std::move(scanned));
  absl::MutexLock lock(&mu_);
  table_ = table;
  return table;
}

std::shared_ptr<const OwnerTable> SocketOwnerIndex::Refresh() {
  std::shared_ptr<const OwnerTable> table;
  {
    absl::MutexLock scan_lock(&scan_mu_);
    table = Scan();
  }
  absl::MutexLock lock(&mu_);
  unknown_listeners_.clear();
  return table;
}

std::shared_ptr<const OwnerTable> SocketOwnerIndex::current() const {
  absl::MutexLock lock(&mu_);
  return table_;
}

std::shared_ptr<const OwnerTable> SocketOwnerIndex::ForSnapshot(
    const std::vector<const std::vector<SocketRecord>*>& dumps, absl::Time now) {
  std::shared_ptr<const OwnerTable> table = current();
  bool scan = table == nullptr || now - last_snapshot_scan_ >= full_scan_every;
  for (size_t i = 0; !scan && i < dumps.size(); ++i) {
    for (const SocketRecord& record : *dumps[i]) {
      if (record.inode != 0 && !table->sockets.contains(record.inode) &&
          !unowned_inodes_.contains(record.inode)) {
        scan = true;
        break;
      }
    }
  }
  if (!scan) return table;
  table = Refresh();
  last_snapshot_scan_ = now;
  unowned_inodes_.clear();
  for (const std::vector<SocketRecord>* dump : dumps) {
    for (const SocketRecord& record : *dump) {
      if (record.inode != 0 && !table->sockets.contains(record.inode)) {
        unowned_inodes_.insert(record.inode);
      }
    }
  }
  return table;
}

void SocketOwnerIndex::SetDumpListeners(absl::flat_hash_map<ListenerKey, uint64_t> listeners) {
  absl::MutexLock lock(&mu_);
  dump_listeners_ = std::move(listeners);
}

OwnerRef SocketOwnerIndex::Find(const ListenerKey& key) const {
  if (auto it = table_->listeners.find(key); it != table_->listeners.end()) return it->second;
  if (auto it = dump_listeners_.find(key); it != dump_listeners_.end()) {
    if (auto owner = table_->sockets.find(it->second); owner != table_->sockets.end()) {
      return owner->second;
    }
  }
  return nullptr;
}

OwnerRef SocketOwnerIndex::Listener(const ListenerKey& key, absl::Time now) {
  {
    absl::MutexLock lock(&mu_);
    if (OwnerRef owner = Find(key); owner != nullptr) return owner;
    if (unknown_listeners_.contains(key)) return nullptr;
  }
  {
    absl::MutexLock scan_lock(&scan_mu_);
    if (now - last_miss_scan_ < min_rescan) return nullptr;
    last_miss_scan_ = now;
    Scan();
  }
  absl::MutexLock lock(&mu_);
  OwnerRef owner = Find(key);
  if (owner == nullptr) unknown_listeners_.insert(key);
  return owner;
}

void SocketOwnerIndex::ObserveSnapshot(const v1::Snapshot& snapshot) const {
  if (metrics_ == nullptr) return;
  size_t unowned = 0;
  for (const v1::Connection& connection : snapshot.connections()) {
    if (connection.origin().pid() == 0) ++unowned;
  }
  metrics_->ends_without_owner.Set(static_cast<double>(unowned));
}

void SocketOwnerIndex::CountEventWithoutOwner() const {
  if (metrics_ != nullptr) metrics_->events_without_owner.Increment();
}

absl::StatusOr<std::unique_ptr<SocketOwnerIndex>> OpenSocketOwnerIndex(OwnersMode mode,
                                                                       AgentMetrics* metrics) {
  std::string fallback_reason;
  absl::StatusOr<std::unique_ptr<SocketOwners>> scanner = OpenSocketOwners(mode, &fallback_reason);
  if (!scanner.ok()) {
    return absl::Status(scanner.status().code(),
                        absl::StrCat("--socket_owners=bpf: the BPF iterator cannot load: ",
                                     scanner.status().message(),
                                     " (--socket_owners=auto falls back to a /proc walk)"));
  }
  if (*scanner == nullptr) {
    TS_LOG(INFO) << "socket owners: off (--socket_owners=off): snapshot ends and server "
                    "handshakes carry no process, container or pod";
    if (metrics != nullptr) metrics->SetOwnersMode("off");
    return nullptr;
  }
  const std::string scanner_mode = (*scanner)->mode();
  if (!fallback_reason.empty()) {
    TS_LOG(WARNING) << "socket owners: the BPF iterator (iter/task_file) cannot load ("
                    << fallback_reason
                    << "); walking /proc/*/fd instead, which costs more per snapshot and sees "
                       "other users' processes only with CAP_SYS_PTRACE";
    if (metrics != nullptr) metrics->owner_fallbacks.Increment();
  } else if (scanner_mode == "bpf") {
    TS_LOG(INFO) << "socket owners: BPF iterator over every process's files (iter/task_file), "
                    "for each snapshot with new sockets";
  } else {
    TS_LOG(INFO) << "socket owners: /proc/*/fd walk for each snapshot with new sockets "
                    "(--socket_owners=proc)";
  }
  if (metrics != nullptr) metrics->SetOwnersMode(scanner_mode);
  return std::make_unique<SocketOwnerIndex>(*std::move(scanner), metrics);
}

void AddDumpListeners(uint64_t netns_inode, const std::vector<SocketRecord>& dump,
                      absl::flat_hash_map<ListenerKey, uint64_t>* out) {
  for (const SocketRecord& record : dump) {
    if (record.state == kListen && record.inode != 0) {
      out->insert_or_assign(ListenerKey{netns_inode, record.local_port}, record.inode);
    }
  }
}

void AttributeEvents(google::protobuf::RepeatedPtrField<v1::Event>* events,
                     const OwnersByCookie* by_cookie, const Attribution& attribution,
                     absl::Time now) {
  if (attribution.owners != nullptr) {
    for (v1::Event& event : *events) {
      v1::Origin* origin = event.mutable_origin();
      if (origin->pid() != 0) continue;
      if (by_cookie != nullptr) {
        if (auto it = by_cookie->find(event.connection_id()); it != by_cookie->end()) {
          FillOwner(*it->second, origin);
          continue;
        }
      }
      OwnerRef owner;
      if (event.role() == v1::ROLE_SERVER) {
        owner = attribution.owners->Listener(
            ListenerKey{origin->netns_inode(),
                        static_cast<uint16_t>(event.endpoints().local_port())},
            now);
      }
      if (owner != nullptr) {
        FillOwner(*owner, origin);
      } else {
        attribution.owners->CountEventWithoutOwner();
      }
    }
  }
  if (attribution.workloads != nullptr) {
    // A batch's events mostly come from a few cgroups: each run of one is resolved once (the
    // resolver takes a lock and reads the clock per call).
    uint64_t cgroup_id = 0;
    std::shared_ptr<const Workload> workload;
    for (v1::Event& event : *events) {
      v1::Origin* origin = event.mutable_origin();
      if (origin->cgroup_id() == 0) continue;
      if (origin->cgroup_id() != cgroup_id) {
        cgroup_id = origin->cgroup_id();
        workload = attribution.workloads->Resolve(cgroup_id);
      }
      if (workload != nullptr) workload->FillOrigin(origin);
    }
  }
}

void FillOwner(const SocketOwner& owner, v1::Origin* origin) {
  origin->set_pid(owner.pid);
  origin->set_command(owner.command);
  origin->set_cgroup_id(owner.cgroup_id);
}

void FillWorkload(WorkloadResolver* resolver, v1::Origin* origin) {
  if (resolver == nullptr || origin->cgroup_id() == 0) return;
  if (std::shared_ptr<const Workload> workload = resolver->Resolve(origin->cgroup_id())) {
    workload->FillOrigin(origin);
  }
}

}  // namespace tcpscope::agent
