// What the agent asks of a container runtime: the names of one container, by id. One
// implementation per runtime API (Docker/Podman HTTP, CRI-O HTTP, containerd gRPC), each optional:
// a runtime whose socket is not there is not asked.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tcpscope/v1/events.pb.h"

namespace tcpscope::agent {

// A container as its runtime describes it; unvalidated (the resolver checks every name).
// Default member initializers, so designated initializers may name only some fields.
struct ContainerRecord {
  std::string name{};  // Docker's or Podman's name without the leading "/"; empty if none
  // The labels the kubelet gives the runtime through CRI, empty when absent.
  std::string pod_name{};        // io.kubernetes.pod.name
  std::string pod_namespace{};   // io.kubernetes.pod.namespace
  std::string pod_uid{};         // io.kubernetes.pod.uid
  std::string container_name{};  // io.kubernetes.container.name
};

inline constexpr absl::string_view kPodNameLabel = "io.kubernetes.pod.name";
inline constexpr absl::string_view kPodNamespaceLabel = "io.kubernetes.pod.namespace";
inline constexpr absl::string_view kPodUidLabel = "io.kubernetes.pod.uid";
inline constexpr absl::string_view kContainerNameLabel = "io.kubernetes.container.name";

class RuntimeClient {
 public:
  virtual ~RuntimeClient() = default;
  virtual v1::ContainerRuntime runtime() const = 0;
  // Its metric label: "docker", "containerd", "crio", "podman".
  virtual absl::string_view name() const = 0;
  // Whether its socket exists now (checked per lookup: a runtime may start after the agent).
  virtual bool Present() const = 0;
  // The container `id` (64 hex characters). NotFound when the runtime does not know it; other
  // errors (DeadlineExceeded, Unavailable, InvalidArgument for a garbled answer) otherwise.
  virtual absl::StatusOr<ContainerRecord> Inspect(absl::string_view id, absl::Duration timeout) = 0;
};

// True when `path` exists and is a unix socket.
bool IsUnixSocket(const std::string& path);

// Docker's API, or Podman's Docker-compatible one: GET /containers/<id>/json.
std::unique_ptr<RuntimeClient> NewDockerApiClient(v1::ContainerRuntime runtime,
                                                  std::string socket_path);
// CRI-O's inspect endpoint: GET /containers/<id>.
std::unique_ptr<RuntimeClient> NewCrioClient(std::string socket_path);
// containerd's Containers.Get, in each of `namespaces` in turn.
std::unique_ptr<RuntimeClient> NewContainerdClient(std::string socket_path,
                                                   std::vector<std::string> namespaces);

// The parsers of the HTTP runtimes' answers (exposed for tests).
absl::StatusOr<ContainerRecord> ParseDockerInspect(absl::string_view json);
absl::StatusOr<ContainerRecord> ParseCrioInspect(absl::string_view json);

}  // namespace tcpscope::agent
