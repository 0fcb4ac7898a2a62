// cgroup v2 id -> path: the id the kernel gives (bpf_get_current_cgroup_id, sock_diag's cgroup
// id) is the inode number of the cgroup's directory in the cgroup2 mount, so a walk of the mount
// maps every id to its path. Rescanned when an id is missing, at most once per interval, so a
// flood of unknown ids costs one bounded walk per interval.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tcpscope::agent {

// The mount point of the cgroup2 filesystem in a /proc/<pid>/mountinfo text (the unified
// hierarchy: /sys/fs/cgroup on cgroup v2 hosts, /sys/fs/cgroup/unified on hybrid ones).
absl::StatusOr<std::string> Cgroup2MountFromMountinfo(absl::string_view mountinfo);
// The same, read from /proc/self/mountinfo.
absl::StatusOr<std::string> FindCgroup2Mount();
// `root` itself when it is a cgroup2 filesystem, else its `unified` directory when that is (a
// hybrid host's /sys/fs/cgroup mounted into a container as --cgroup_root): the walk must never
// mix in a cgroup v1 hierarchy, whose inode numbers are not cgroup ids.
absl::StatusOr<std::string> Cgroup2Root(const std::string& root);

struct CgroupIndexOptions {
  std::string root;  // the cgroup2 mount (or a host's mount seen inside a container)
  // A new container's cgroup appears between two walks; a short interval names the first
  // connections of a container started just after a walk (a walk of a node's tree takes
  // milliseconds), while a storm of unknown ids still costs at most ten walks a second.
  absl::Duration min_rescan_interval = absl::Milliseconds(100);
  size_t max_cgroups = 200000;  // a walk stops there (and says so once)
  int max_depth = 32;
  std::function<absl::Time()> now = absl::Now;
};

class CgroupIndex {
 public:
  explicit CgroupIndex(CgroupIndexOptions options);

  enum class Result {
    kFound,
    kNotFound,   // not in a walk made after the call began: the cgroup is gone or never was
    kThrottled,  // not in the last walk, and it is too soon for another
  };
  // The path of cgroup `id`, relative to the root and starting with "/" ("/" for the root).
  Result PathOf(uint64_t id, std::string* path);

  size_t size() const;
  uint64_t walks() const;

 private:
  void Rescan() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const CgroupIndexOptions options_;
  mutable absl::Mutex mutex_;
  absl::flat_hash_map<uint64_t, std::string> paths_ ABSL_GUARDED_BY(mutex_);
  absl::Time last_walk_ ABSL_GUARDED_BY(mutex_) = absl::InfinitePast();
  uint64_t walks_ ABSL_GUARDED_BY(mutex_) = 0;
  bool truncation_logged_ ABSL_GUARDED_BY(mutex_) = false;
};

}  // namespace tcpscope::agent
