// Recognises the cgroup layouts of the container runtimes, one path component at a time.
#include "agent/cgroup_path.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tcpscope::agent {
namespace {

constexpr size_t kContainerIdLength = 64;

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool IsContainerId(absl::string_view id) {
  if (id.size() != kContainerIdLength) return false;
  for (char c : id) {
    if (!IsLowerHex(c)) return false;
  }
  return true;
}

// Pod uids are UUIDs (36 characters), or for static pods the 32 hex digits of a hash.
bool IsPodUid(absl::string_view uid) {
  if (uid.size() < 32 || uid.size() > 36) return false;
  for (char c : uid) {
    if (!IsLowerHex(c) && c != '-') return false;
  }
  return true;
}

// The pod uid a kubepods component names: "pod<uid>" (cgroupfs) or
// "kubepods[-<qos>]-pod<uid with _>.slice" (systemd; kind's are "kubelet-kubepods-...").
std::optional<std::string> PodUidOf(absl::string_view component, bool under_kubepods) {
  if (absl::ConsumeSuffix(&component, ".slice")) {
    if (!absl::StartsWith(component, "kubepods-") &&
        !absl::StartsWith(component, "kubelet-kubepods-")) {
      return std::nullopt;
    }
    const size_t at = component.rfind("-pod");
    if (at == absl::string_view::npos) return std::nullopt;
    std::string uid = absl::StrReplaceAll(component.substr(at + 4), {{"_", "-"}});
    if (!IsPodUid(uid)) return std::nullopt;
    return uid;
  }
  if (under_kubepods && absl::ConsumePrefix(&component, "pod") && IsPodUid(component)) {
    return std::string(component);
  }
  return std::nullopt;
}

struct Named {
  absl::string_view prefix;
  v1::ContainerRuntime runtime;
  bool scope_only;  // the name exists only as a systemd scope
};

// "crio-conmon-<id>" and "libpod-conmon-<id>" (the monitor, not the container) fail the id check.
constexpr Named kNamed[] = {
    {"docker-", v1::CONTAINER_RUNTIME_DOCKER, true},
    {"cri-containerd-", v1::CONTAINER_RUNTIME_CONTAINERD, true},
    {"crio-", v1::CONTAINER_RUNTIME_CRIO, false},
    {"libpod-", v1::CONTAINER_RUNTIME_PODMAN, false},
};

// The container a component names, given its parent component (empty at the top) and whether
// the parent is a pod's cgroup.
std::optional<CgroupContainer> ContainerOf(absl::string_view component, absl::string_view parent,
                                           bool parent_is_pod) {
  const bool scope = absl::ConsumeSuffix(&component, ".scope");
  for (const Named& named : kNamed) {
    absl::string_view rest = component;
    if (named.scope_only && !scope) continue;
    if (absl::ConsumePrefix(&rest, named.prefix) && IsContainerId(rest)) {
      return CgroupContainer{named.runtime, std::string(rest), ""};
    }
  }
  if (scope || !IsContainerId(component)) return std::nullopt;
  if (parent == "docker")
    return CgroupContainer{v1::CONTAINER_RUNTIME_DOCKER, std::string(component), ""};
  // A bare id in a pod (cgroupfs driver): containerd's CRI plugin and cri-dockerd both.
  if (parent_is_pod) {
    return CgroupContainer{v1::CONTAINER_RUNTIME_UNSPECIFIED, std::string(component), ""};
  }
  return std::nullopt;
}

}  // namespace

std::optional<CgroupContainer> ParseCgroupPath(absl::string_view path) {
  const std::vector<absl::string_view> components = absl::StrSplit(path, '/', absl::SkipEmpty());
  std::optional<CgroupContainer> innermost;
  bool under_kubepods = false;
  absl::string_view parent;
  std::optional<std::string> parent_pod;
  for (absl::string_view component : components) {
    std::optional<CgroupContainer> container =
        ContainerOf(component, parent, parent_pod.has_value());
    if (container.has_value()) {
      if (parent_pod.has_value()) container->pod_uid = *parent_pod;
      innermost = std::move(container);
    }
    // A kind node's pods sit below the node's own container: kubepods restarts inside it.
    if (absl::StartsWith(component, "kubepods") ||
        absl::StartsWith(component, "kubelet-kubepods")) {
      under_kubepods = true;
    }
    parent_pod = PodUidOf(component, under_kubepods);
    parent = component;
  }
  return innermost;
}

}  // namespace tcpscope::agent
