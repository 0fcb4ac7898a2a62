// Snapshots of every connection in one network namespace, or in every namespace of the kernel
// (found through /proc/*/ns/net and /run/netns), each dumped over its own sock_diag socket.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/connection_tracker.h"
#include "agent/sock_diag_netlink.h"
#include "agent/socket_owner_index.h"
#include "tcpscope/v1/events.pb.h"

namespace tcpscope::agent {

struct NamespaceFile {
  uint64_t inode;
  std::string path;
};

// Every network namespace a process or a /run/netns bind mount holds, one path per inode.
std::vector<NamespaceFile> ListNetworkNamespaces(const std::string& proc = "/proc",
                                                 const std::string& run_netns = "/run/netns");

class SnapshotCollector {
 public:
  // One namespace: the given dumper's. `attribution` names each end's process and workload.
  static std::unique_ptr<SnapshotCollector> ForNamespace(std::unique_ptr<SockDiagDumper> dumper,
                                                         Attribution attribution = {});
  // Every namespace, rediscovered at each Collect().
  static std::unique_ptr<SnapshotCollector> ForAllNamespaces(Attribution attribution = {});

  struct Result {
    v1::Snapshot snapshot;
    size_t namespaces = 0;
    size_t failed_namespaces = 0;  // vanished or not dumpable this time
    // Owners of the snapshot's ends, by socket cookie (sticky: see ConnectionTracker::Update).
    absl::flat_hash_map<uint64_t, OwnerRef> owners;
  };
  // Dumps every namespace, then scans socket owners (so every dumped socket can be in the
  // scan), then diffs each dump.
  Result Collect(absl::Time now);

  size_t tracked() const;

 private:
  struct View {
    std::unique_ptr<SockDiagDumper> dumper;
    std::unique_ptr<ConnectionTracker> tracker;
  };
  SnapshotCollector(bool all, Attribution attribution) : all_(all), attribution_(attribution) {}
  void Rescan();

  const bool all_;
  const Attribution attribution_;
  absl::flat_hash_map<uint64_t, View> views_;  // by namespace inode
};

}  // namespace tcpscope::agent
