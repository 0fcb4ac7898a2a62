// The agent's WorkloadResolver: cgroup id -> path (CgroupIndex) -> container id and pod uid
// (ParseCgroupPath) -> names from the runtime that made it (RuntimeClient) -> a validated
// Workload, cached per cgroup so the hot path pays one hash lookup.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/agent_metrics.h"
#include "agent/cgroup_index.h"
#include "agent/cgroup_path.h"
#include "agent/runtime_client.h"
#include "agent/workload.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace tcpscope::agent {

struct WorkloadResolverOptions {
  std::string cgroup_root;  // empty: the cgroup2 mount in /proc/self/mountinfo
  // A runtime whose socket path is empty, or absent when asked, is not asked.
  std::string docker_socket = "/var/run/docker.sock";
  std::string podman_socket = "/run/podman/podman.sock";
  std::string containerd_socket = "/run/containerd/containerd.sock";
  std::vector<std::string> containerd_namespaces = {"k8s.io", "moby", "default"};
  std::string crio_socket = "/var/run/crio/crio.sock";
  absl::Duration runtime_timeout = absl::Milliseconds(200);  // per question to a runtime
  // A runtime that timed out is not asked again for this long (a hung runtime costs one
  // timeout per interval, not one per new cgroup).
  absl::Duration runtime_backoff = absl::Seconds(10);
  size_t max_cached_cgroups = 4096;
  // A cgroup that no runtime could name (or that was not found) is looked up again after this.
  absl::Duration retry_after = absl::Minutes(1);
};

// The resolver with the real cgroup tree and the runtimes of `options`. Fails when no cgroup2
// filesystem is found (a cgroup v1-only host): the agent then runs without workloads.
absl::StatusOr<std::unique_ptr<WorkloadResolver>> NewWorkloadResolver(
    const WorkloadResolverOptions& options, AgentMetrics& metrics);

class CgroupWorkloadResolver final : public WorkloadResolver {
 public:
  CgroupWorkloadResolver(std::unique_ptr<CgroupIndex> index,
                         std::vector<std::unique_ptr<RuntimeClient>> runtimes,
                         const WorkloadResolverOptions& options, prometheus::Registry& registry,
                         std::function<absl::Time()> now = absl::Now);
  ~CgroupWorkloadResolver() override;

  std::shared_ptr<const Workload> Resolve(uint64_t cgroup_id) override;

  size_t cached() const;

 private:
  struct Runtime;
  struct Entry {
    std::shared_ptr<const Workload> workload;
    absl::Time expires;  // InfiniteFuture for an answer that cannot change
    std::list<uint64_t>::iterator age;
  };
  struct Lookup {
    std::shared_ptr<const Workload> workload;
    bool final = false;  // cache forever
    bool cacheable = true;
  };

  Lookup LookUp(uint64_t cgroup_id);
  std::shared_ptr<const Workload> Describe(const CgroupContainer& container, bool* final);
  // `name` if it passes ValidateName, else "" (counted, logged once per field).
  std::string Checked(int field, const std::string& name);

  const std::unique_ptr<CgroupIndex> index_;
  std::vector<std::unique_ptr<Runtime>> runtimes_;
  const WorkloadResolverOptions options_;
  const std::function<absl::Time()> now_;

  prometheus::Gauge& cached_gauge_;
  std::vector<prometheus::Counter*> resolutions_;    // by Resolution
  std::vector<prometheus::Counter*> names_dropped_;  // by field
  std::unique_ptr<std::atomic<bool>[]> drop_logged_;

  mutable absl::Mutex mutex_;
  absl::flat_hash_map<uint64_t, Entry> cache_ ABSL_GUARDED_BY(mutex_);
  std::list<uint64_t> ages_ ABSL_GUARDED_BY(mutex_);  // most recently used first
  // Cgroups being looked up now: a second caller waits for the first's answer instead of asking
  // the runtimes again (each container is looked up, and each hostile name counted, once).
  absl::flat_hash_set<uint64_t> in_flight_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace tcpscope::agent
