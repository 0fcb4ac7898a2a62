// The resolver: cgroup tree (a directory tree made by the test; inodes stand for cgroup ids) ->
// path -> runtime (fakes) -> validated Workload; the cache (hits, negative entries and their
// retry, the bound), the choice of runtimes, a hung runtime's backoff, hostile names, metrics.
#include "agent/workload_resolver.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"

namespace tcpscope::agent {
namespace {

const std::string kId = "3f4e1d1b9a0c7e2f5b6a8d9c0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b";
const std::string kUid = "8dbe1f2a-4c3b-4e5d-9f60-7a8b9c0d1e2f";

std::string IdOf(int i) {
  std::string id = absl::StrCat(i);
  return std::string(64 - id.size(), 'a') + id;
}

// A runtime with a fixed table of containers; counts its questions.
class FakeRuntime : public RuntimeClient {
 public:
  FakeRuntime(v1::ContainerRuntime runtime, std::string name)
      : runtime_(runtime), name_(std::move(name)) {}
  v1::ContainerRuntime runtime() const override { return runtime_; }
  absl::string_view name() const override { return name_; }
  bool Present() const override { return present; }
  absl::StatusOr<ContainerRecord> Inspect(absl::string_view id, absl::Duration) override {
    ++calls;
    absl::SleepFor(delay);
    if (!error.ok()) return error;
    auto it = containers.find(std::string(id));
    if (it == containers.end()) return absl::NotFoundError("no such container");
    return it->second;
  }

  std::atomic<bool> present{true};
  std::atomic<int> calls{0};
  absl::Duration delay;  // a slow runtime
  absl::Status error;
  std::map<std::string, ContainerRecord> containers;

 private:
  const v1::ContainerRuntime runtime_;
  const std::string name_;
};

class WorkloadResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/workload_resolver_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
    options_.retry_after = absl::Minutes(1);
    options_.runtime_backoff = absl::Seconds(10);
  }
  void TearDown() override {
    resolver_.reset();
    std::filesystem::remove_all(root_);
  }

  uint64_t Cgroup(const std::string& path) {
    std::filesystem::create_directories(root_ + path);
    struct stat st;
    EXPECT_EQ(stat((root_ + path).c_str(), &st), 0);
    return st.st_ino;
  }

  FakeRuntime* AddRuntime(v1::ContainerRuntime runtime, const std::string& name) {
    auto fake = std::make_unique<FakeRuntime>(runtime, name);
    FakeRuntime* raw = fake.get();
    runtimes_.push_back(std::move(fake));
    return raw;
  }

  void Start() {
    CgroupIndexOptions index_options;
    index_options.root = root_;
    index_options.now = [this] { return now_.load(); };
    resolver_ = std::make_unique<CgroupWorkloadResolver>(
        std::make_unique<CgroupIndex>(index_options), std::move(runtimes_), options_, registry_,
        [this] { return now_.load(); });
  }

  double Metric(const std::string& name, const std::map<std::string, std::string>& labels) {
    for (const prometheus::MetricFamily& family : registry_.Collect()) {
      if (family.name != name) continue;
      for (const prometheus::ClientMetric& metric : family.metric) {
        std::map<std::string, std::string> have;
        for (const auto& label : metric.label) have[label.name] = label.value;
        if (have != labels) continue;
        return family.type == prometheus::MetricType::Gauge ? metric.gauge.value
                                                            : metric.counter.value;
      }
    }
    ADD_FAILURE() << "no " << name;
    return -1;
  }

  std::string root_;
  std::atomic<absl::Time> now_{absl::FromUnixSeconds(1000000)};
  WorkloadResolverOptions options_;
  std::vector<std::unique_ptr<RuntimeClient>> runtimes_;
  prometheus::Registry registry_;
  std::unique_ptr<CgroupWorkloadResolver> resolver_;
};

TEST_F(WorkloadResolverTest, DockerContainerIsNamedAndCached) {
  FakeRuntime* docker = AddRuntime(v1::CONTAINER_RUNTIME_DOCKER, "docker");
  FakeRuntime* containerd = AddRuntime(v1::CONTAINER_RUNTIME_CONTAINERD, "containerd");
  docker->containers[kId] = ContainerRecord{.name = "web"};
  const uint64_t cgroup = Cgroup("/system.slice/docker-" + kId + ".scope");
  Start();
  std::shared_ptr<const Workload> workload = resolver_->Resolve(cgroup);
  ASSERT_NE(workload, nullptr);
  EXPECT_EQ(workload->container_id, kId);
  EXPECT_EQ(workload->container_name, "web");
  EXPECT_EQ(workload->runtime, v1::CONTAINER_RUNTIME_DOCKER);
  EXPECT_EQ(workload->pod, "");
  EXPECT_EQ(workload->pod_namespace, "");
  EXPECT_EQ(workload->pod_uid, "");
  // Cached for good: no question to any runtime, the same object.
  now_ = now_.load() + absl::Hours(5);
  EXPECT_EQ(resolver_->Resolve(cgroup), workload);
  EXPECT_EQ(docker->calls, 1);
  EXPECT_EQ(containerd->calls, 0);
  EXPECT_EQ(
      Metric("tcpscope_agent_workload_lookups_total", {{"runtime", "docker"}, {"result", "found"}}),
      1);
  EXPECT_EQ(Metric("tcpscope_agent_workload_resolutions_total", {{"result", "container"}}), 1);
  EXPECT_EQ(Metric("tcpscope_agent_workload_cache_entries", {}), 1);
  v1::Origin origin;
  workload->FillOrigin(&origin);
  EXPECT_EQ(origin.container_name(), "web");
  EXPECT_EQ(origin.runtime(), v1::CONTAINER_RUNTIME_DOCKER);
}

TEST_F(WorkloadResolverTest, KubernetesPodFromContainerdLabels) {
  FakeRuntime* containerd = AddRuntime(v1::CONTAINER_RUNTIME_CONTAINERD, "containerd");
  containerd->containers[kId] = ContainerRecord{
      .pod_name = "web-0", .pod_namespace = "shop", .pod_uid = kUid, .container_name = "app"};
  const uint64_t cgroup =
      Cgroup("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
             std::string("8dbe1f2a_4c3b_4e5d_9f60_7a8b9c0d1e2f") + ".slice/cri-containerd-" + kId +
             ".scope");
  Start();
  std::shared_ptr<const Workload> workload = resolver_->Resolve(cgroup);
  ASSERT_NE(workload, nullptr);
  EXPECT_EQ(workload->container_id, kId);
  EXPECT_EQ(workload->container_name, "app");
  EXPECT_EQ(workload->pod, "web-0");
  EXPECT_EQ(workload->pod_namespace, "shop");
  EXPECT_EQ(workload->pod_uid, kUid);
  EXPECT_EQ(workload->runtime, v1::CONTAINER_RUNTIME_CONTAINERD);
}

TEST_F(WorkloadResolverTest, UnsaidRuntimeAsksEachPresentOne) {
  // A bare id in a cgroupfs pod: containerd (absent here), CRI-O (does not know it), then
  // Docker (cri-dockerd: the kubelet's labels, and Docker's composite name which loses).
  FakeRuntime* containerd = AddRuntime(v1::CONTAINER_RUNTIME_CONTAINERD, "containerd");
  FakeRuntime* crio = AddRuntime(v1::CONTAINER_RUNTIME_CRIO, "crio");
  FakeRuntime* docker = AddRuntime(v1::CONTAINER_RUNTIME_DOCKER, "docker");
  FakeRuntime* podman = AddRuntime(v1::CONTAINER_RUNTIME_PODMAN, "podman");
  containerd->present = false;
  docker->containers[kId] = ContainerRecord{.name = "k8s_app_web-0_shop_" + kUid + "_0",
                                            .pod_name = "web-0",
                                            .pod_namespace = "shop",
                                            .container_name = "app"};
  const uint64_t cgroup = Cgroup("/kubepods/besteffort/pod" + kUid + "/" + kId);
  Start();
  std::shared_ptr<const Workload> workload = resolver_->Resolve(cgroup);
  ASSERT_NE(workload, nullptr);
  EXPECT_EQ(workload->runtime, v1::CONTAINER_RUNTIME_DOCKER);
  EXPECT_EQ(workload->container_name, "app");
  EXPECT_EQ(workload->pod, "web-0");
  EXPECT_EQ(workload->pod_uid, kUid);  // from the path: the runtime did not say
  EXPECT_EQ(containerd->calls, 0);
  EXPECT_EQ(crio->calls, 1);
  EXPECT_EQ(docker->calls, 1);
  EXPECT_EQ(podman->calls, 0);
  EXPECT_EQ(Metric("tcpscope_agent_workload_lookups_total",
                   {{"runtime", "crio"}, {"result", "not_found"}}),
            1);
}

TEST_F(WorkloadResolverTest, DockerContainerFromContainerdWhenDockerdIsAway) {
  FakeRuntime* docker = AddRuntime(v1::CONTAINER_RUNTIME_DOCKER, "docker");
  FakeRuntime* containerd = AddRuntime(v1::CONTAINER_RUNTIME_CONTAINERD, "containerd");
  docker->present = false;
  containerd->containers[kId] = ContainerRecord{};  // namespace moby: no names
  const uint64_t cgroup = Cgroup("/docker/" + kId);
  Start();
  std::shared_ptr<const Workload> workload = resolver_->Resolve(cgroup);
  ASSERT_NE(workload, nullptr);
  EXPECT_EQ(workload->runtime, v1::CONTAINER_RUNTIME_DOCKER);
  EXPECT_EQ(workload->container_id, kId);
  EXPECT_EQ(workload->container_name, "");
  EXPECT_EQ(containerd->calls, 1);
}

TEST_F(WorkloadResolverTest, HostCgroupsAndUnknownIds) {
  FakeRuntime* docker = AddRuntime(v1::CONTAINER_RUNTIME_DOCKER, "docker");
  const uint64_t host = Cgroup("/system.slice/sshd.service");
  Start();
  EXPECT_EQ(resolver_->Resolve(0), nullptr);
  EXPECT_EQ(resolver_->Resolve(host), nullptr);
  EXPECT_EQ(resolver_->Resolve(host), nullptr);
  EXPECT_EQ(Metric("tcpscope_agent_workload_resolutions_total", {{"result", "not_container"}}), 1);
  // An id that is no cgroup: negative, cached, looked up again after retry_after.
  EXPECT_EQ(resolver_->Resolve(987654321987), nullptr);
  EXPECT_EQ(Metric("tcpscope_agent_workload_resolutions_total", {{"result", "cgroup_not_found"}}),
            1);
  now_ = now_.load() + absl::Seconds(30);
  EXPECT_EQ(resolver_->Resolve(987654321987), nullptr);
  EXPECT_EQ(Metric("tcpscope_agent_workload_resolutions_total", {{"result", "cgroup_not_found"}}),
            1);
  now_ = now_.load() + absl::Seconds(31);
  EXPECT_EQ(resolver_->Resolve(987654321987), nullptr);
  EXPECT_EQ(Metric("tcpscope_agent_workload_resolutions_total", {{"result", "cgroup_not_found"}}),
            2);
  EXPECT_EQ(docker->calls, 0);
}

TEST_F(WorkloadResolverTest, NewCgroupSeenAfterTheThrottle) {
  FakeRuntime* docker = AddRuntime(v1::CONTAINER_RUNTIME_DOCKER, "docker");
  docker->containers[kId] = ContainerRecord{.name = "late"};
  Cgroup("/system.slice");
  Start();
  EXPECT_EQ(resolver_->Resolve(55555), nullptr);  // walks once
  const uint64_t cgroup = Cgroup("/system.slice/docker-" + kId + ".scope");
  now_ = now_.load() + absl::Milliseconds(50);
  // Too soon for another walk: not found, and not cached as absent.
  EXPECT_EQ(resolver_->Resolve(cgroup), nullptr);
  now_ = now_.load() + absl::Seconds(1);
  std::shared_ptr<const Workload> workload = resolver_->Resolve(cgroup);
  ASSERT_NE(workload, nullptr);
  EXPECT_EQ(workload->container_name, "late");
}

TEST_F(WorkloadResolverTest, UnansweredContainerIsRetried) {
  FakeRuntime* docker = AddRuntime(v1::CONTAINER_RUNTIME_DOCKER, "docker");
  const uint64_t cgroup = Cgroup("/docker/" + kId);
  Start();
  // No runtime knows it yet: what the path says, retried after a minute.
  std::shared_ptr<const Workload> workload = resolver_->Resolve(cgroup);
  ASSERT_NE(workload, nullptr);
  EXPECT_EQ(workload->container_id, kId);
  EXPECT_EQ(workload->runtime, v1::CONTAINER_RUNTIME_DOCKER);
  EXPECT_EQ(workload->container_name, "");
  EXPECT_EQ(resolver_->Resolve(cgroup), workload);
  EXPECT_EQ(docker->calls, 1);
  docker->containers[kId] = ContainerRecord{.name = "web"};
  now_ = now_.load() + absl::Minutes(2);
  workload = resolver_->Resolve(cgroup);
  ASSERT_NE(workload, nullptr);
  EXPECT_EQ(workload->container_name, "web");
  EXPECT_EQ(docker->calls, 2);
}

TEST_F(WorkloadResolverTest, HungRuntimeIsSkippedForAWhile) {
  FakeRuntime* docker = AddRuntime(v1::CONTAINER_RUNTIME_DOCKER, "docker");
  docker->error = absl::DeadlineExceededError("timed out");
  const uint64_t first = Cgroup("/docker/" + IdOf(1));
  const uint64_t second = Cgroup("/docker/" + IdOf(2));
  const uint64_t third = Cgroup("/docker/" + IdOf(3));
  Start();
  ASSERT_NE(resolver_->Resolve(first), nullptr);
  ASSERT_NE(resolver_->Resolve(second), nullptr);  // within the backoff: not asked
  EXPECT_EQ(docker->calls, 1);
  EXPECT_EQ(Metric("tcpscope_agent_workload_lookups_total",
                   {{"runtime", "docker"}, {"result", "timeout"}}),
            1);
  now_ = now_.load() + absl::Seconds(11);
  docker->error = absl::OkStatus();
  docker->containers[IdOf(3)] = ContainerRecord{.name = "back"};
  std::shared_ptr<const Workload> workload = resolver_->Resolve(third);
  ASSERT_NE(workload, nullptr);
  EXPECT_EQ(workload->container_name, "back");
  EXPECT_EQ(docker->calls, 2);
  // Other errors do not back off.
  docker->error = absl::UnavailableError("HTTP 500");
  const uint64_t fourth = Cgroup("/docker/" + IdOf(4));
  now_ = now_.load() + absl::Seconds(2);  // past the walk throttle
  resolver_->Resolve(fourth);
  const uint64_t fifth = Cgroup("/docker/" + IdOf(5));
  now_ = now_.load() + absl::Seconds(2);
  resolver_->Resolve(fifth);
  EXPECT_EQ(docker->calls, 4);
  EXPECT_EQ(
      Metric("tcpscope_agent_workload_lookups_total", {{"runtime", "docker"}, {"result", "error"}}),
      2);
}

TEST_F(WorkloadResolverTest, HostileNamesAreDroppedAndCounted) {
  FakeRuntime* containerd = AddRuntime(v1::CONTAINER_RUNTIME_CONTAINERD, "containerd");
  containerd->containers[kId] = ContainerRecord{.pod_name = "web-0\n# HELP injected",
                                                .pod_namespace = std::string(254, 'a'),
                                                .pod_uid = "-leading-dash",
                                                .container_name = "app\"}"};
  const uint64_t cgroup = Cgroup("/kubepods/burstable/pod" + kUid + "/" + kId);
  containerd->containers[IdOf(7)] = ContainerRecord{
      .pod_name = "ok", .pod_namespace = "", .container_name = std::string("a\0b", 3)};
  const uint64_t other = Cgroup("/kubepods/burstable/pod" + kUid + "/" + IdOf(7));
  Start();
  std::shared_ptr<const Workload> workload = resolver_->Resolve(cgroup);
  ASSERT_NE(workload, nullptr);
  EXPECT_EQ(workload->container_id, kId);
  EXPECT_EQ(workload->container_name, "");
  EXPECT_EQ(workload->pod, "");
  EXPECT_EQ(workload->pod_namespace, "");
  EXPECT_EQ(workload->pod_uid, "");  // the runtime's bad uid wins over the path's, and is dropped
  workload = resolver_->Resolve(other);
  ASSERT_NE(workload, nullptr);
  EXPECT_EQ(workload->pod, "ok");
  EXPECT_EQ(workload->container_name, "");
  EXPECT_EQ(workload->pod_uid, kUid);
  EXPECT_EQ(Metric("tcpscope_agent_workload_names_dropped_total", {{"field", "container_name"}}),
            2);
  EXPECT_EQ(Metric("tcpscope_agent_workload_names_dropped_total", {{"field", "pod"}}), 1);
  EXPECT_EQ(Metric("tcpscope_agent_workload_names_dropped_total", {{"field", "pod_namespace"}}), 1);
  EXPECT_EQ(Metric("tcpscope_agent_workload_names_dropped_total", {{"field", "pod_uid"}}), 1);
  EXPECT_EQ(Metric("tcpscope_agent_workload_names_dropped_total", {{"field", "container_id"}}), 0);
}

TEST_F(WorkloadResolverTest, CacheIsBoundedAndKeepsTheRecentlyUsed) {
  options_.max_cached_cgroups = 10;
  FakeRuntime* docker = AddRuntime(v1::CONTAINER_RUNTIME_DOCKER, "docker");
  std::vector<uint64_t> cgroups;
  for (int i = 0; i < 50; ++i) {
    docker->containers[IdOf(i)] = ContainerRecord{.name = absl::StrCat("c", i)};
    cgroups.push_back(Cgroup("/docker/" + IdOf(i)));
  }
  Start();
  ASSERT_NE(resolver_->Resolve(cgroups[0]), nullptr);
  for (int i = 1; i < 50; ++i) {
    ASSERT_NE(resolver_->Resolve(cgroups[i]), nullptr);
    ASSERT_NE(resolver_->Resolve(cgroups[0]), nullptr);  // kept in use
    EXPECT_LE(resolver_->cached(), 10u);
  }
  EXPECT_EQ(docker->calls, 50);  // cgroup 0 never evicted
  EXPECT_EQ(Metric("tcpscope_agent_workload_cache_entries", {}), 10);
  // An evicted one is looked up again, and named the same.
  std::shared_ptr<const Workload> again = resolver_->Resolve(cgroups[1]);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->container_name, "c1");
  EXPECT_EQ(docker->calls, 51);
}

TEST_F(WorkloadResolverTest, ConcurrentCallers) {
  FakeRuntime* docker = AddRuntime(v1::CONTAINER_RUNTIME_DOCKER, "docker");
  options_.max_cached_cgroups = 16;
  std::vector<uint64_t> cgroups;
  for (int i = 0; i < 40; ++i) {
    docker->containers[IdOf(i)] = ContainerRecord{.name = absl::StrCat("c", i)};
    cgroups.push_back(Cgroup("/docker/" + IdOf(i)));
  }
  Start();
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 200; ++round) {
        const int i = (round * 7 + t) % 40;
        std::shared_ptr<const Workload> workload = resolver_->Resolve(cgroups[i]);
        if (workload == nullptr || workload->container_name != absl::StrCat("c", i)) ++wrong;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_LE(resolver_->cached(), 16u);
}

TEST_F(WorkloadResolverTest, ConcurrentCallersOfOneNewCgroupAskTheRuntimeOnce) {
  FakeRuntime* docker = AddRuntime(v1::CONTAINER_RUNTIME_DOCKER, "docker");
  docker->delay = absl::Milliseconds(100);
  docker->containers[kId] = ContainerRecord{.name = "evil\"name"};  // dropped: counted once
  const uint64_t cgroup = Cgroup("/docker/" + kId);
  Start();
  std::vector<std::thread> threads;
  std::atomic<int> named{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::shared_ptr<const Workload> workload = resolver_->Resolve(cgroup);
      if (workload != nullptr && workload->container_id == kId) ++named;
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(named, 4);
  EXPECT_EQ(docker->calls, 1);
  EXPECT_EQ(Metric("tcpscope_agent_workload_names_dropped_total", {{"field", "container_name"}}),
            1);
}

}  // namespace
}  // namespace tcpscope::agent
