// The runtimes with an HTTP API on a unix socket: Docker and Podman (Docker's API) and CRI-O.
// Their JSON goes through protobuf's parser into a google.protobuf.Struct: no JSON library of our
// own, and a parser that bounds nesting.
#include <sys/stat.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "agent/runtime_client.h"
#include "agent/unix_http_client.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace tcpscope::agent {
namespace {

constexpr size_t kMaxResponseBytes = 1 << 20;  // an inspect is a few KiB; 1 MiB is generous

absl::StatusOr<google::protobuf::Struct> ParseObject(absl::string_view json) {
  google::protobuf::Struct object;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &object);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("not a JSON object: ", status.ToString()));
  }
  return object;
}

// The string at `key`, or "" when absent or not a string.
std::string StringAt(const google::protobuf::Struct& object, const std::string& key) {
  auto it = object.fields().find(key);
  if (it == object.fields().end() || !it->second.has_string_value()) return "";
  return it->second.string_value();
}

// The object at `key`, or nullptr when absent, null or not an object.
const google::protobuf::Struct* ObjectAt(const google::protobuf::Struct& object,
                                         const std::string& key) {
  auto it = object.fields().find(key);
  if (it == object.fields().end() || !it->second.has_struct_value()) return nullptr;
  return &it->second.struct_value();
}

void FillKubernetesLabels(const google::protobuf::Struct* labels, ContainerRecord* record) {
  if (labels == nullptr) return;
  record->pod_name = StringAt(*labels, std::string(kPodNameLabel));
  record->pod_namespace = StringAt(*labels, std::string(kPodNamespaceLabel));
  record->pod_uid = StringAt(*labels, std::string(kPodUidLabel));
  record->container_name = StringAt(*labels, std::string(kContainerNameLabel));
}

// What an HTTP answer means: 200 with a body, 404 not found, anything else an error.
absl::StatusOr<std::string> BodyOf(absl::StatusOr<HttpResponse> response, absl::string_view id) {
  if (!response.ok()) return response.status();
  if (response->status == 404) return absl::NotFoundError(absl::StrCat("no container ", id));
  if (response->status != 200) {
    return absl::UnavailableError(absl::StrCat("runtime answered HTTP ", response->status));
  }
  return std::move(response->body);
}

// A runtime whose local API inspects a container with `GET /containers/<id><suffix>`: Docker and
// Podman (suffix "/json") and CRI-O (none), each with its own JSON.
class HttpInspectClient : public RuntimeClient {
 public:
  using Parser = absl::StatusOr<ContainerRecord> (*)(absl::string_view json);
  HttpInspectClient(v1::ContainerRuntime runtime, absl::string_view name, std::string socket_path,
                    absl::string_view suffix, Parser parse)
      : runtime_(runtime),
        name_(name),
        socket_path_(std::move(socket_path)),
        suffix_(suffix),
        parse_(parse) {}

  v1::ContainerRuntime runtime() const override { return runtime_; }
  absl::string_view name() const override { return name_; }
  bool Present() const override { return IsUnixSocket(socket_path_); }

  absl::StatusOr<ContainerRecord> Inspect(absl::string_view id, absl::Duration timeout) override {
    UnixHttpOptions options;
    options.timeout = timeout;
    options.max_response_bytes = kMaxResponseBytes;
    absl::StatusOr<std::string> body =
        BodyOf(UnixHttpGet(socket_path_, absl::StrCat("/containers/", id, suffix_), options), id);
    if (!body.ok()) return body.status();
    return parse_(*body);
  }

 private:
  const v1::ContainerRuntime runtime_;
  const absl::string_view name_;  // a literal
  const std::string socket_path_;
  const absl::string_view suffix_;  // a literal
  const Parser parse_;
};

}  // namespace

bool IsUnixSocket(const std::string& path) {
  struct stat st;
  return !path.empty() && stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

absl::StatusOr<ContainerRecord> ParseDockerInspect(absl::string_view json) {
  absl::StatusOr<google::protobuf::Struct> object = ParseObject(json);
  if (!object.ok()) return object.status();
  ContainerRecord record;
  record.name = StringAt(*object, "Name");
  absl::string_view name = record.name;
  if (absl::ConsumePrefix(&name, "/")) record.name = std::string(name);
  if (const google::protobuf::Struct* config = ObjectAt(*object, "Config")) {
    FillKubernetesLabels(ObjectAt(*config, "Labels"), &record);
  }
  return record;
}

absl::StatusOr<ContainerRecord> ParseCrioInspect(absl::string_view json) {
  // CRI-O's ContainerInfo: {"name": ..., "labels": {...}, "annotations": {...}, ...}.
  absl::StatusOr<google::protobuf::Struct> object = ParseObject(json);
  if (!object.ok()) return object.status();
  ContainerRecord record;
  record.name = StringAt(*object, "name");
  FillKubernetesLabels(ObjectAt(*object, "labels"), &record);
  return record;
}

std::unique_ptr<RuntimeClient> NewDockerApiClient(v1::ContainerRuntime runtime,
                                                  std::string socket_path) {
  return std::make_unique<HttpInspectClient>(
      runtime, runtime == v1::CONTAINER_RUNTIME_PODMAN ? "podman" : "docker",
      std::move(socket_path), "/json", &ParseDockerInspect);
}

std::unique_ptr<RuntimeClient> NewCrioClient(std::string socket_path) {
  return std::make_unique<HttpInspectClient>(v1::CONTAINER_RUNTIME_CRIO, "crio",
                                             std::move(socket_path), "", &ParseCrioInspect);
}

}  // namespace tcpscope::agent
