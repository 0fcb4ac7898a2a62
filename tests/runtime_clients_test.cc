// The runtime clients: Docker/Podman and CRI-O JSON (real shapes, hostile ones), the HTTP clients
// against a fake API on a unix socket, and the containerd client against an in-process fake of
// containerd's Containers service on a unix socket (namespaces, not found, a hung containerd).
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/runtime_client.h"
#include "containerd/services/containers/v1/containers.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/fake_unix_http_server.h"

namespace tcpscope::agent {
namespace {

using testing::FakeUnixHttpServer;
using testing::HttpAnswer;

const std::string kId = "3f4e1d1b9a0c7e2f5b6a8d9c0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b";

// The shape of `docker inspect` (abridged: the fields around the ones read, with their types).
const char kDockerInspect[] = R"({
  "Id": "3f4e1d1b9a0c7e2f5b6a8d9c0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b",
  "Created": "2026-12-06T10:00:00.000000000Z",
  "Path": "/usr/bin/sleep", "Args": ["60"],
  "State": {"Status": "running", "Running": true, "Pid": 4242, "ExitCode": 0},
  "Name": "/web",
  "RestartCount": 0,
  "HostConfig": {"NetworkMode": "host", "CapAdd": null, "Memory": 0},
  "Config": {
    "Hostname": "abc", "Env": ["PATH=/usr/bin"], "Cmd": ["sleep", "60"],
    "Image": "debian:bookworm", "Labels": {"com.example.team": "shop"}
  },
  "NetworkSettings": {"Networks": {"host": {"IPAddress": ""}}}
})";

// cri-dockerd: the kubelet's labels on a Docker container, and Docker's composite name.
const char kCriDockerdInspect[] = R"({
  "Id": "x", "Name": "/k8s_app_web-0_shop_8dbe1f2a-4c3b-4e5d-9f60-7a8b9c0d1e2f_0",
  "Config": {"Labels": {
    "io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop",
    "io.kubernetes.pod.uid": "8dbe1f2a-4c3b-4e5d-9f60-7a8b9c0d1e2f",
    "io.kubernetes.container.name": "app", "io.kubernetes.docker.type": "container"}}
})";

TEST(ParseDockerInspectTest, NameAndLabels) {
  absl::StatusOr<ContainerRecord> record = ParseDockerInspect(kDockerInspect);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->name, "web");
  EXPECT_EQ(record->pod_name, "");
  EXPECT_EQ(record->container_name, "");
  record = ParseDockerInspect(kCriDockerdInspect);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->name, "k8s_app_web-0_shop_8dbe1f2a-4c3b-4e5d-9f60-7a8b9c0d1e2f_0");
  EXPECT_EQ(record->pod_name, "web-0");
  EXPECT_EQ(record->pod_namespace, "shop");
  EXPECT_EQ(record->pod_uid, "8dbe1f2a-4c3b-4e5d-9f60-7a8b9c0d1e2f");
  EXPECT_EQ(record->container_name, "app");
}

TEST(ParseDockerInspectTest, OddButValidShapes) {
  // Podman's compatible API may name without "/"; labels may be null; fields may be missing or
  // of another type: what is not a string is not a name.
  absl::StatusOr<ContainerRecord> record =
      ParseDockerInspect(R"({"Name": "db", "Config": {"Labels": null}})");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->name, "db");
  record = ParseDockerInspect(
      R"({"Name": 42, "Config": {"Labels": {"io.kubernetes.pod.name": ["x"],
          "io.kubernetes.pod.namespace": {"a": 1}, "io.kubernetes.container.name": true}}})");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->name, "");
  EXPECT_EQ(record->pod_name, "");
  EXPECT_EQ(record->pod_namespace, "");
  EXPECT_EQ(record->container_name, "");
  record = ParseDockerInspect(R"({"Config": "nope"})");
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->name, "");
  // Hostile names pass through unvalidated here (the resolver checks them) but intact.
  record = ParseDockerInspect(R"({"Name": "/a\u0000b\n\"c"})");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->name, std::string("a\0b\n\"c", 6));
}

TEST(ParseDockerInspectTest, GarbageIsAnError) {
  std::string deep(100000, '[');
  const std::string garbage[] = {"",
                                 "null",
                                 "[1,2]",
                                 "\"x\"",
                                 "{",
                                 "{\"Name\": }",
                                 "<html>502",
                                 "\xff\xfe",
                                 "{\"Name\": \"\xff\"}",
                                 "{\"a\":" + deep};
  for (const std::string& json : garbage) {
    EXPECT_FALSE(ParseDockerInspect(json).ok()) << json.substr(0, 40);
  }
  std::string nested = "{\"Name\":\"/x\",\"a\":";
  for (int i = 0; i < 5000; ++i) nested += "{\"a\":";
  nested += "1";
  for (int i = 0; i < 5000; ++i) nested += "}";
  nested += "}";
  EXPECT_FALSE(ParseDockerInspect(nested).ok());  // nesting beyond the parser's bound
}

TEST(ParseCrioInspectTest, NameAndLabels) {
  // CRI-O's ContainerInfo (GET /containers/<id> on crio.sock).
  absl::StatusOr<ContainerRecord> record = ParseCrioInspect(R"({
    "name": "k8s_app_web-0_shop_8dbe1f2a-4c3b-4e5d-9f60-7a8b9c0d1e2f_0", "pid": 4242,
    "image": "docker.io/library/nginx:1", "sandbox": "0123",
    "labels": {"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop",
               "io.kubernetes.pod.uid": "8dbe1f2a-4c3b-4e5d-9f60-7a8b9c0d1e2f",
               "io.kubernetes.container.name": "app"},
    "annotations": {"io.kubernetes.container.hash": "1"}})");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->pod_name, "web-0");
  EXPECT_EQ(record->pod_namespace, "shop");
  EXPECT_EQ(record->container_name, "app");
  EXPECT_FALSE(ParseCrioInspect("]").ok());
}

TEST(DockerApiClientTest, AsksForTheContainer) {
  FakeUnixHttpServer server([](const std::string& line) {
    if (line == "GET /containers/" + kId + "/json HTTP/1.1") {
      return HttpAnswer(200, kDockerInspect);
    }
    return HttpAnswer(404, R"({"message":"No such container"})");
  });
  server.set_piece(100);
  std::unique_ptr<RuntimeClient> client =
      NewDockerApiClient(v1::CONTAINER_RUNTIME_DOCKER, server.path());
  EXPECT_TRUE(client->Present());
  EXPECT_EQ(client->name(), "docker");
  absl::StatusOr<ContainerRecord> record = client->Inspect(kId, absl::Seconds(2));
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->name, "web");
  EXPECT_TRUE(absl::IsNotFound(client->Inspect(std::string(64, 'a'), absl::Seconds(2)).status()));
}

TEST(DockerApiClientTest, ErrorsAreErrors) {
  FakeUnixHttpServer server([](const std::string&) { return HttpAnswer(500, "{}"); });
  std::unique_ptr<RuntimeClient> podman =
      NewDockerApiClient(v1::CONTAINER_RUNTIME_PODMAN, server.path());
  EXPECT_EQ(podman->name(), "podman");
  EXPECT_TRUE(absl::IsUnavailable(podman->Inspect(kId, absl::Seconds(2)).status()));
  server.set_mode(FakeUnixHttpServer::Mode::kStall);
  const absl::Time start = absl::Now();
  EXPECT_TRUE(absl::IsDeadlineExceeded(podman->Inspect(kId, absl::Milliseconds(200)).status()));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  EXPECT_FALSE(NewDockerApiClient(v1::CONTAINER_RUNTIME_DOCKER, "/nonexistent.sock")->Present());
  EXPECT_FALSE(NewDockerApiClient(v1::CONTAINER_RUNTIME_DOCKER, "")->Present());
  // A directory or a regular file is not a socket.
  EXPECT_FALSE(NewDockerApiClient(v1::CONTAINER_RUNTIME_DOCKER, "/tmp")->Present());
}

TEST(CrioClientTest, AsksForTheContainer) {
  FakeUnixHttpServer server([](const std::string& line) {
    if (line == "GET /containers/" + kId + " HTTP/1.1") {
      return HttpAnswer(200, R"({"name":"x","labels":{"io.kubernetes.pod.name":"web-0"}})");
    }
    return HttpAnswer(404, "can't find the container");
  });
  std::unique_ptr<RuntimeClient> client = NewCrioClient(server.path());
  absl::StatusOr<ContainerRecord> record = client->Inspect(kId, absl::Seconds(2));
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->pod_name, "web-0");
  EXPECT_TRUE(absl::IsNotFound(client->Inspect(std::string(64, 'b'), absl::Seconds(2)).status()));
}

namespace containers = ::containerd::services::containers::v1;

// containerd's Containers service, as far as Get goes: containers by (namespace, id).
class FakeContainerd final : public containers::Containers::Service {
 public:
  void Add(const std::string& ns, containers::Container container) {
    absl::MutexLock lock(&mutex_);
    containers_[ns + "/" + container.id()] = std::move(container);
  }
  void set_delay(absl::Duration delay) {
    absl::MutexLock lock(&mutex_);
    delay_ = delay;
  }
  std::vector<std::string> asked() {
    absl::MutexLock lock(&mutex_);
    return asked_;
  }

  grpc::Status Get(grpc::ServerContext* context, const containers::GetContainerRequest* request,
                   containers::GetContainerResponse* response) override {
    absl::Duration delay;
    std::string ns;
    {
      auto it = context->client_metadata().find("containerd-namespace");
      // containerd refuses a call without a namespace.
      if (it == context->client_metadata().end()) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "namespace is required");
      }
      ns = std::string(it->second.data(), it->second.size());
      absl::MutexLock lock(&mutex_);
      asked_.push_back(ns);
      delay = delay_;
    }
    absl::SleepFor(delay);
    absl::MutexLock lock(&mutex_);
    auto found = containers_.find(ns + "/" + request->id());
    if (found == containers_.end()) {
      return grpc::Status(
          grpc::StatusCode::NOT_FOUND,
          "container \"" + request->id() + "\" in namespace \"" + ns + "\": not found");
    }
    *response->mutable_container() = found->second;
    return grpc::Status::OK;
  }

 private:
  absl::Mutex mutex_;
  std::map<std::string, containers::Container> containers_;
  absl::Duration delay_;
  std::vector<std::string> asked_;
};

class ContainerdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/fake_containerd.XXXXXX";
    dir_ = mkdtemp(pattern);
    socket_ = dir_ + "/containerd.sock";
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix://" + socket_, grpc::InsecureServerCredentials());
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    std::filesystem::remove_all(dir_);
  }

  std::string dir_;
  std::string socket_;
  FakeContainerd fake_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(ContainerdClientTest, FindsTheContainerInItsNamespace) {
  containers::Container container;
  container.set_id(kId);
  (*container.mutable_labels())["io.kubernetes.pod.name"] = "web-0";
  (*container.mutable_labels())["io.kubernetes.pod.namespace"] = "shop";
  (*container.mutable_labels())["io.kubernetes.pod.uid"] = "8dbe1f2a-4c3b-4e5d-9f60-7a8b9c0d1e2f";
  (*container.mutable_labels())["io.kubernetes.container.name"] = "app";
  (*container.mutable_labels())["io.cri-containerd.kind"] = "container";
  fake_.Add("moby", container);
  std::unique_ptr<RuntimeClient> client =
      NewContainerdClient(socket_, {"k8s.io", "moby", "default"});
  EXPECT_TRUE(client->Present());
  EXPECT_EQ(client->runtime(), v1::CONTAINER_RUNTIME_CONTAINERD);
  absl::StatusOr<ContainerRecord> record = client->Inspect(kId, absl::Seconds(5));
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->pod_name, "web-0");
  EXPECT_EQ(record->pod_namespace, "shop");
  EXPECT_EQ(record->pod_uid, "8dbe1f2a-4c3b-4e5d-9f60-7a8b9c0d1e2f");
  EXPECT_EQ(record->container_name, "app");
  EXPECT_EQ(record->name, "");
  EXPECT_EQ(fake_.asked(), (std::vector<std::string>{"k8s.io", "moby"}));
  // Unknown in every namespace.
  EXPECT_TRUE(absl::IsNotFound(client->Inspect(std::string(64, 'c'), absl::Seconds(5)).status()));
}

TEST_F(ContainerdClientTest, HungContainerdTimesOut) {
  fake_.set_delay(absl::Seconds(1));
  std::unique_ptr<RuntimeClient> client = NewContainerdClient(socket_, {"k8s.io", "default"});
  const absl::Time start = absl::Now();
  absl::Status status = client->Inspect(kId, absl::Milliseconds(200)).status();
  EXPECT_TRUE(absl::IsDeadlineExceeded(status)) << status;
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(700));
}

TEST(ContainerdClientAbsentTest, NoSocket) {
  std::unique_ptr<RuntimeClient> client =
      NewContainerdClient("/nonexistent/containerd.sock", {"k8s.io"});
  EXPECT_FALSE(client->Present());
  const absl::Time start = absl::Now();
  EXPECT_FALSE(client->Inspect(kId, absl::Milliseconds(200)).ok());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(700));
}

}  // namespace
}  // namespace tcpscope::agent
