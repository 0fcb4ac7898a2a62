// Workload identity of a socket's owner (container, pod) and the interface that resolves it from
// the owner's cgroup: what the agent adds to v1::Origin beside the process.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tcpscope/v1/events.pb.h"

namespace tcpscope::agent {

// Every name here has passed ValidateName (common/names.h) or is empty (not known).
struct Workload {
  std::string container_id;    // as the runtime reports it
  std::string container_name;  // Docker's name, or the Kubernetes container name
  std::string pod_namespace;
  std::string pod;
  std::string pod_uid;
  v1::ContainerRuntime runtime = v1::CONTAINER_RUNTIME_UNSPECIFIED;

  void FillOrigin(v1::Origin* origin) const {
    origin->set_container_id(container_id);
    origin->set_container_name(container_name);
    origin->set_pod_namespace(pod_namespace);
    origin->set_pod(pod);
    origin->set_pod_uid(pod_uid);
    origin->set_runtime(runtime);
  }
};

class WorkloadResolver {
 public:
  virtual ~WorkloadResolver() = default;
  // The workload of the cgroup v2 with id `cgroup_id` (what bpf_get_current_cgroup_id() and the
  // cgroupfs inode number give), or nullptr for a cgroup outside any container and for one not
  // known. Thread-safe, and cached: each cgroup is looked up once (bounded cache), so the hot
  // path pays a hash lookup, never a system call per event.
  virtual std::shared_ptr<const Workload> Resolve(uint64_t cgroup_id) = 0;
};

}  // namespace tcpscope::agent
