// The agent's current view of socket owners, shared by the snapshot thread (which rescans after
// the dumps when a snapshot has new sockets) and the eBPF consumer thread (which asks for
// listeners' owners when a server handshake has no process). Counts what it does in the agent's
// self-metrics.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/agent_metrics.h"
#include "agent/sock_diag_parser.h"
#include "agent/socket_owners.h"
#include "agent/workload.h"
#include "tcpscope/v1/events.pb.h"

namespace tcpscope::agent {

class SocketOwnerIndex {
 public:
  // `metrics` may be null (tests).
  SocketOwnerIndex(std::unique_ptr<SocketOwners> scanner, AgentMetrics* metrics);

  const char* mode() const { return scanner_->mode(); }

  // Scans now and makes the result current; on failure the last good table stays (and is
  // returned). Snapshots call it through ForSnapshot, after their dumps, so every socket they
  // saw can be in it.
  std::shared_ptr<const OwnerTable> Refresh() ABSL_LOCKS_EXCLUDED(scan_mu_, mu_);
  std::shared_ptr<const OwnerTable> current() const ABSL_LOCKS_EXCLUDED(mu_);
  // The table for the sockets of a snapshot's `dumps`, scanning only when needed: when a dumped
  // socket with a file (inode) is neither in the current table nor missed by the last scan, or
  // `full_scan_every` after the last scan (a socket passed to another process keeps its inode).
  // A host whose sockets did not change costs no scan per snapshot. One caller (the snapshot
  // thread).
  std::shared_ptr<const OwnerTable> ForSnapshot(
      const std::vector<const std::vector<SocketRecord>*>& dumps, absl::Time now)
      ABSL_LOCKS_EXCLUDED(scan_mu_, mu_);

  // The listening sockets the latest dumps saw, by (netns, port) -> socket inode: how listeners
  // are found when the scan does not report them itself (the /proc walk).
  void SetDumpListeners(absl::flat_hash_map<ListenerKey, uint64_t> listeners)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The owner of the listening socket at `key`, or null. A miss rescans, at most once per
  // `min_rescan` (counting only these rescans: a server that gets connections right after it
  // starts listening must not wait for the snapshot's scan to age) and once per key until the
  // next Refresh(): a listener opened since the last snapshot is found, and an unowned one (held
  // by no visible process) costs no scan per event.
  OwnerRef Listener(const ListenerKey& key, absl::Time now) ABSL_LOCKS_EXCLUDED(scan_mu_, mu_);

  // Sets the self-metric of snapshot ends without an owner.
  void ObserveSnapshot(const v1::Snapshot& snapshot) const;
  void CountEventWithoutOwner() const;

  // Short, so a second server started just after another's first connection is found too; each
  // unknown listener rescans once per snapshot, so this bounds only a burst of new ones.
  absl::Duration min_rescan = absl::Milliseconds(100);
  absl::Duration full_scan_every = absl::Minutes(1);

 private:
  std::shared_ptr<const OwnerTable> Scan() ABSL_EXCLUSIVE_LOCKS_REQUIRED(scan_mu_)
      ABSL_LOCKS_EXCLUDED(mu_);
  OwnerRef Find(const ListenerKey& key) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  std::unique_ptr<SocketOwners> scanner_;
  AgentMetrics* metrics_;
  uint64_t failures_ = 0;  // consecutive, under scan_mu_

  absl::Mutex scan_mu_;  // one scan at a time: the scanner keeps a buffer
  absl::Time last_miss_scan_ ABSL_GUARDED_BY(scan_mu_) = absl::InfinitePast();

  mutable absl::Mutex mu_;
  std::shared_ptr<const OwnerTable> table_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<ListenerKey, uint64_t> dump_listeners_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<ListenerKey> unknown_listeners_ ABSL_GUARDED_BY(mu_);

  // ForSnapshot's state (its one caller's thread).
  absl::Time last_snapshot_scan_ = absl::InfinitePast();
  absl::flat_hash_set<uint64_t> unowned_inodes_;  // dumped sockets the last scan found no owner of
};

// What names the process and the workload of ends and events; either may be null (not known).
struct Attribution {
  SocketOwnerIndex* owners = nullptr;
  WorkloadResolver* workloads = nullptr;
};

// The scanner `mode` asks for, wrapped in an index, with the choice logged once (and why the
// BPF iterator was not used, if it was not) and labelled in the self-metrics. Null for off; an
// error only for --socket_owners=bpf when the iterator cannot load.
absl::StatusOr<std::unique_ptr<SocketOwnerIndex>> OpenSocketOwnerIndex(OwnersMode mode,
                                                                       AgentMetrics* metrics);

// Owners by socket cookie (a snapshot's ends, sticky per cookie; see ConnectionTracker).
using OwnersByCookie = absl::flat_hash_map<uint64_t, OwnerRef>;

// Names the process and workload of `events` (the eBPF source's, before they are sent). The
// kernel context of a client's connect and of a close() is the owner's; a server's handshake and
// a close by a received RST run in softirq, without a process (pid 0). Those get their socket's
// owner from `by_cookie` (the latest snapshot), else (a connection younger than it) a server end
// gets its listening socket's, at (netns, local port). Then every event with a cgroup gets its
// workload.
void AttributeEvents(google::protobuf::RepeatedPtrField<v1::Event>* events,
                     const OwnersByCookie* by_cookie, const Attribution& attribution,
                     absl::Time now);

// The listening sockets of one namespace's dump, by (netns, port) -> inode.
void AddDumpListeners(uint64_t netns_inode, const std::vector<SocketRecord>& dump,
                      absl::flat_hash_map<ListenerKey, uint64_t>* out);

// Writes `owner`'s process (pid, command, cgroup id) into `origin`.
void FillOwner(const SocketOwner& owner, v1::Origin* origin);
// The workload of `origin`'s cgroup (if it has one and `resolver` knows it) into `origin`.
void FillWorkload(WorkloadResolver* resolver, v1::Origin* origin);

}  // namespace tcpscope::agent
