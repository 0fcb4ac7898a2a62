// Namespace discovery and per-namespace dumps merged into one snapshot.
#include "agent/snapshot_collector.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cctype>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "agent/sock_diag_netlink.h"
#include "common/log.h"
#include "google/protobuf/repeated_ptr_field.h"

namespace tcpscope::agent {
namespace {

void AddIfNew(const std::string& path, absl::flat_hash_set<uint64_t>& seen,
              std::vector<NamespaceFile>& out) {
  struct stat info {};
  if (stat(path.c_str(), &info) != 0) return;  // the process exited meanwhile
  if (seen.insert(info.st_ino).second) out.push_back({info.st_ino, path});
}

bool IsNumber(const char* name) {
  if (*name == '\0') return false;
  for (; *name != '\0'; ++name) {
    if (!std::isdigit(static_cast<unsigned char>(*name))) return false;
  }
  return true;
}

}  // namespace

std::vector<NamespaceFile> ListNetworkNamespaces(const std::string& proc,
                                                 const std::string& run_netns) {
  std::vector<NamespaceFile> namespaces;
  absl::flat_hash_set<uint64_t> seen;
  AddIfNew(absl::StrCat(proc, "/self/ns/net"), seen, namespaces);
  if (DIR* dir = opendir(run_netns.c_str()); dir != nullptr) {
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      AddIfNew(absl::StrCat(run_netns, "/", entry->d_name), seen, namespaces);
    }
    closedir(dir);
  }
  if (DIR* dir = opendir(proc.c_str()); dir != nullptr) {
    while (dirent* entry = readdir(dir)) {
      if (!IsNumber(entry->d_name)) continue;
      AddIfNew(absl::StrCat(proc, "/", entry->d_name, "/ns/net"), seen, namespaces);
    }
    closedir(dir);
  }
  return namespaces;
}

std::unique_ptr<SnapshotCollector> SnapshotCollector::ForNamespace(
    std::unique_ptr<SocketDumper> dumper, Attribution attribution) {
  std::unique_ptr<SnapshotCollector> collector(new SnapshotCollector(false, attribution, nullptr));
  const uint64_t inode = dumper->netns_inode();
  collector->views_[inode] = {
      std::move(dumper), std::make_unique<ConnectionTracker>(inode, attribution.workloads,
                                                             ConnectionTracker::Events::kNone)};
  return collector;
}

std::unique_ptr<SnapshotCollector> SnapshotCollector::ForAllNamespaces(Attribution attribution,
                                                                       SocketDumperOpener open) {
  if (open == nullptr) {
    open = [](const std::string& path) -> absl::StatusOr<std::unique_ptr<SocketDumper>> {
      absl::StatusOr<std::unique_ptr<SockDiagDumper>> dumper = SockDiagDumper::Open(path);
      if (!dumper.ok()) return dumper.status();
      return std::unique_ptr<SocketDumper>(std::move(*dumper));
    };
  }
  return std::unique_ptr<SnapshotCollector>(
      new SnapshotCollector(true, attribution, std::move(open)));
}

void SnapshotCollector::Rescan() {
  const std::vector<NamespaceFile> namespaces = ListNetworkNamespaces();
  absl::flat_hash_set<uint64_t> present;
  for (const NamespaceFile& ns : namespaces) {
    present.insert(ns.inode);
    if (views_.contains(ns.inode)) continue;
    absl::StatusOr<std::unique_ptr<SocketDumper>> dumper = open_(ns.path);
    if (!dumper.ok()) continue;  // gone already, or not ours to enter
    views_[ns.inode] = {std::move(*dumper),
                        std::make_unique<ConnectionTracker>(ns.inode, attribution_.workloads,
                                                            ConnectionTracker::Events::kNone)};
  }
  // A namespace nothing holds any more has no sockets left to report.
  for (auto it = views_.begin(); it != views_.end();) {
    auto current = it++;
    if (!present.contains(current->first)) views_.erase(current);
  }
}

SnapshotCollector::Result SnapshotCollector::Collect(absl::Time now,
                                                     std::optional<SocketBirths> births) {
  if (all_) Rescan();
  Result result;
  result.snapshot.set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(now)));
  std::vector<std::pair<View*, std::vector<SocketRecord>>> dumps;
  dumps.reserve(views_.size());
  for (auto& [inode, view] : views_) {
    std::vector<SocketRecord> records;  // skipped: what a walk would find
    if (births.has_value() && view.empty_at_generation == births->generation) {
      ++result.skipped_namespaces;
    } else {
      view.empty_at_generation.reset();
      absl::StatusOr<std::vector<SocketRecord>> dump = view.dumper->Dump();
      if (!dump.ok()) {
        ++result.failed_namespaces;
        continue;
      }
      records = *std::move(dump);
      if (births.has_value() && records.empty() &&
          births->walk_started_ns >= births->last_birth_ns + kBirthSettleNs) {
        view.empty_at_generation = births->generation;
      }
    }
    ++result.namespaces;
    dumps.emplace_back(&view, std::move(records));
  }
  std::shared_ptr<const OwnerTable> owners;
  if (attribution_.owners != nullptr) {
    std::vector<const std::vector<SocketRecord>*> records;
    for (const auto& [view, dump] : dumps) records.push_back(&dump);
    owners = attribution_.owners->ForSnapshot(records, now);
    absl::flat_hash_map<ListenerKey, uint64_t> listeners;
    for (const auto& [view, dump] : dumps) {
      AddDumpListeners(view->dumper->netns_inode(), dump, &listeners);
    }
    attribution_.owners->SetDumpListeners(std::move(listeners));
  }
  for (auto& [view, dump] : dumps) {
    TrackerUpdate update = view->tracker->Update(dump, now, owners.get());
    std::vector<SocketRecord>().swap(dump);  // the records are done with: free them early
    result.snapshot.set_listeners(result.snapshot.listeners() + update.snapshot.listeners());
    // The ends move over, not copied: one namespace's list is swapped in whole.
    google::protobuf::RepeatedPtrField<v1::Connection>* from =
        update.snapshot.mutable_connections();
    google::protobuf::RepeatedPtrField<v1::Connection>* to = result.snapshot.mutable_connections();
    if (to->empty()) {
      to->Swap(from);
    } else {
      std::vector<v1::Connection*> moved(static_cast<size_t>(from->size()));
      from->ExtractSubrange(0, from->size(), moved.data());
      to->Reserve(to->size() + static_cast<int>(moved.size()));
      for (v1::Connection* connection : moved) to->AddAllocated(connection);
    }
    if (result.owners.empty()) {
      result.owners = std::move(update.owners);
    } else {
      result.owners.insert(update.owners.begin(), update.owners.end());
    }
  }
  if (attribution_.owners != nullptr) attribution_.owners->ObserveSnapshot(result.snapshot);
  return result;
}

size_t SnapshotCollector::tracked() const {
  size_t total = 0;
  for (const auto& [inode, view] : views_) total += view.tracker->tracked();
  return total;
}

}  // namespace tcpscope::agent
