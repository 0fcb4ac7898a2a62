// containerd: Containers.Get over its gRPC socket, in each configured namespace in turn (k8s.io
// for the CRI plugin's containers, moby for Docker's, default for ctr's).
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/runtime_client.h"
#include "containerd/services/containers/v1/containers.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace tcpscope::agent {
namespace {

namespace containers = ::containerd::services::containers::v1;

std::string LabelOf(const containers::Container& container, absl::string_view key) {
  auto it = container.labels().find(std::string(key));
  return it == container.labels().end() ? "" : it->second;
}

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("containerd: ", status.error_message()));
}

class ContainerdClient : public RuntimeClient {
 public:
  ContainerdClient(std::string socket_path, std::vector<std::string> namespaces)
      : socket_path_(std::move(socket_path)), namespaces_(std::move(namespaces)) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(4 << 20);  // a container with its OCI spec: tens of KiB
    // The channel connects lazily: a containerd that starts after the agent is found then.
    stub_ = containers::Containers::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("unix://", socket_path_), grpc::InsecureChannelCredentials(), args));
  }

  v1::ContainerRuntime runtime() const override { return v1::CONTAINER_RUNTIME_CONTAINERD; }
  absl::string_view name() const override { return "containerd"; }
  bool Present() const override { return IsUnixSocket(socket_path_); }

  absl::StatusOr<ContainerRecord> Inspect(absl::string_view id, absl::Duration timeout) override {
    const absl::Time deadline = absl::Now() + timeout;
    for (const std::string& ns : namespaces_) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(deadline));
      context.AddMetadata("containerd-namespace", ns);
      containers::GetContainerRequest request;
      request.set_id(std::string(id));
      containers::GetContainerResponse response;
      const grpc::Status status = stub_->Get(&context, request, &response);
      if (status.error_code() == grpc::StatusCode::NOT_FOUND) continue;
      if (!status.ok()) return FromGrpc(status);
      if (response.container().id() != id) {
        return absl::InvalidArgumentError("containerd answered with another container");
      }
      ContainerRecord record;
      record.pod_name = LabelOf(response.container(), kPodNameLabel);
      record.pod_namespace = LabelOf(response.container(), kPodNamespaceLabel);
      record.pod_uid = LabelOf(response.container(), kPodUidLabel);
      record.container_name = LabelOf(response.container(), kContainerNameLabel);
      return record;
    }
    return absl::NotFoundError(absl::StrCat("no container ", id, " in containerd namespaces ",
                                            absl::StrJoin(namespaces_, ",")));
  }

 private:
  const std::string socket_path_;
  const std::vector<std::string> namespaces_;
  std::unique_ptr<containers::Containers::Stub> stub_;
};

}  // namespace

std::unique_ptr<RuntimeClient> NewContainerdClient(std::string socket_path,
                                                   std::vector<std::string> namespaces) {
  return std::make_unique<ContainerdClient>(std::move(socket_path), std::move(namespaces));
}

}  // namespace tcpscope::agent
