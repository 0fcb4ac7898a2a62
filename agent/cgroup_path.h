// What a cgroup v2 path says about the container that owns it: the runtime that made it, the
// container id and, for Kubernetes pods, the pod uid. A pure parser of the path layouts that
// Docker, containerd (CRI), CRI-O and Podman create under the systemd and cgroupfs drivers; a path
// it does not recognise says nothing (never a guess).
#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "tcpscope/v1/events.pb.h"

namespace tcpscope::agent {

struct CgroupContainer {
  // The runtime the path names (docker-*.scope, cri-containerd-*.scope, crio-*, libpod-*), or
  // UNSPECIFIED when the layout is shared by several (a bare id in a kubepods pod: containerd and
  // cri-dockerd both make those).
  v1::ContainerRuntime runtime_hint = v1::CONTAINER_RUNTIME_UNSPECIFIED;
  std::string container_id;  // 64 lowercase hex characters
  std::string pod_uid;       // with dashes; empty outside a kubepods pod

  bool operator==(const CgroupContainer&) const = default;
};

// `path` is relative to the cgroup2 mount and starts with "/" ("/system.slice/docker-<id>.scope").
// A nested container (Docker-in-Docker, a kind node's pods) gives the innermost container: the one
// the process actually runs in. Cgroups below a container's own (systemd's init.scope inside a
// container, Podman's "container" leaf) still belong to that container.
std::optional<CgroupContainer> ParseCgroupPath(absl::string_view path);

}  // namespace tcpscope::agent
