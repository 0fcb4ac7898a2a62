// Who holds a connection end, in one short table cell: its workload (Kubernetes pod and
// container, or a container outside Kubernetes) and its process.
#pragma once

#include <string>

#include "tcpscope/v1/events.pb.h"

namespace tcpscope::cli {

// "shop/web-0/app" (namespace/pod/container) when the pod is known; "docker:redis" (runtime and
// container name, else the first 12 characters of its id) for a container outside Kubernetes;
// "" for a host process or when nothing is known.
std::string WorkloadName(const v1::Origin& origin);

// WorkloadName, or "-" when there is none.
std::string WorkloadCell(const v1::Origin& origin);

// "nginx[4242]"; "?[4242]" when only the pid is known, "-" when neither is.
std::string ProcessCell(const v1::Origin& origin);

// For event details, with `prefix` ("" or "peer_"): "pod=shop/web-0/app" when the pod is known,
// "container=docker:redis" for another container, "" when there is no workload.
std::string WorkloadDetail(const v1::Origin& origin, const std::string& prefix);

}  // namespace tcpscope::cli
