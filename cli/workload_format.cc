// The compact forms follow kubectl's habit (namespace/name) and keep a column narrow: a pod's
// uid and a container's full id are in -o json. Names pass common/names.h at the agent and the
// service; the table escapes any cell anyway (cli/table.cc).
#include "cli/workload_format.h"

#include "absl/strings/str_cat.h"

namespace tcpscope::cli {
namespace {

// Docker's short id: the first 12 characters.
constexpr size_t kShortIdLength = 12;

absl::string_view RuntimeName(v1::ContainerRuntime runtime) {
  switch (runtime) {
    case v1::CONTAINER_RUNTIME_DOCKER:
      return "docker";
    case v1::CONTAINER_RUNTIME_CONTAINERD:
      return "containerd";
    case v1::CONTAINER_RUNTIME_CRIO:
      return "crio";
    case v1::CONTAINER_RUNTIME_PODMAN:
      return "podman";
    default:
      return "container";
  }
}

}  // namespace

std::string WorkloadName(const v1::Origin& origin) {
  if (!origin.pod().empty()) {
    std::string name = absl::StrCat(origin.pod_namespace().empty() ? "?" : origin.pod_namespace(),
                                    "/", origin.pod());
    if (!origin.container_name().empty()) absl::StrAppend(&name, "/", origin.container_name());
    return name;
  }
  // A Kubernetes container's name (it has a pod uid) says little without its pod: the id does.
  if (!origin.container_name().empty() && origin.pod_uid().empty()) {
    return absl::StrCat(RuntimeName(origin.runtime()), ":", origin.container_name());
  }
  if (!origin.container_id().empty()) {
    return absl::StrCat(RuntimeName(origin.runtime()), ":",
                        absl::string_view(origin.container_id()).substr(0, kShortIdLength));
  }
  return "";
}

std::string WorkloadCell(const v1::Origin& origin) {
  std::string name = WorkloadName(origin);
  return name.empty() ? "-" : name;
}

std::string ProcessCell(const v1::Origin& origin) {
  if (origin.pid() == 0 && origin.command().empty()) return "-";
  return absl::StrCat(origin.command().empty() ? "?" : origin.command(), "[", origin.pid(), "]");
}

std::string WorkloadDetail(const v1::Origin& origin, const std::string& prefix) {
  const std::string name = WorkloadName(origin);
  if (name.empty()) return "";
  return absl::StrCat(prefix, origin.pod().empty() ? "container=" : "pod=", name);
}

}  // namespace tcpscope::cli
