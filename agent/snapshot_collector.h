// Snapshots of every connection in one network namespace, or in every namespace of the kernel
// (found through /proc/*/ns/net and /run/netns), each dumped by its own SocketDumper (the
// iter/tcp iterator or a sock_diag socket).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/connection_tracker.h"
#include "agent/socket_dumper.h"
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

// Sockets coming into being in the watched namespaces: connect() and listen(), the only ways
// into the TCP hash tables, which the eBPF program notes. `generation` changes with every birth;
// the times are on the monotonic clock. A namespace whose walk found nothing, every birth so far
// at least kBirthSettleNs before that walk, is empty for as long as the generation stays: it is
// not walked again until it changes (an empty namespace costs nothing between snapshots).
struct SocketBirths {
  uint64_t generation = 0;
  uint64_t last_birth_ns = 0;
  uint64_t walk_started_ns = 0;
};

class SnapshotCollector {
 public:
  // A socket enters the hash tables within the connect() or listen() call that noted its birth;
  // a second covers any preemption in between.
  static constexpr uint64_t kBirthSettleNs = 1'000'000'000;

  // One namespace: the given dumper's. `attribution` names each end's process and workload.
  static std::unique_ptr<SnapshotCollector> ForNamespace(std::unique_ptr<SocketDumper> dumper,
                                                         Attribution attribution = {});
  // Every namespace, rediscovered at each Collect(), each dumped by a dumper `open` makes
  // (default: a sock_diag socket).
  static std::unique_ptr<SnapshotCollector> ForAllNamespaces(Attribution attribution = {},
                                                             SocketDumperOpener open = nullptr);

  struct Result {
    v1::Snapshot snapshot;
    size_t namespaces = 0;
    size_t failed_namespaces = 0;   // vanished or not dumpable this time
    size_t skipped_namespaces = 0;  // empty, and no socket born since: not walked
    // Owners of the snapshot's ends, by socket cookie (sticky: see ConnectionTracker::Update).
    absl::flat_hash_map<uint64_t, OwnerRef> owners;
  };
  // Dumps every namespace (but those `births` shows empty still), then scans socket owners (so
  // every dumped socket can be in the scan), then diffs each dump.
  Result Collect(absl::Time now, std::optional<SocketBirths> births = std::nullopt);

  size_t tracked() const;

 private:
  struct View {
    std::unique_ptr<SocketDumper> dumper;
    std::unique_ptr<ConnectionTracker> tracker;
    // The births' generation of the walk that found this namespace empty, while it lasts.
    std::optional<uint64_t> empty_at_generation;
  };
  SnapshotCollector(bool all, Attribution attribution, SocketDumperOpener open)
      : all_(all), attribution_(attribution), open_(std::move(open)) {}
  void Rescan();

  const bool all_;
  const Attribution attribution_;
  const SocketDumperOpener open_;
  absl::flat_hash_map<uint64_t, View> views_;  // by namespace inode
};

}  // namespace tcpscope::agent
