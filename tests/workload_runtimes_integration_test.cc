// The workload resolver against the REAL runtimes, started by the test with private state (no
// system daemon is used or changed): Debian's containerd (+ runc) with its own config, root,
// state and socket, and Debian's dockerd with its own data root and socket. Containers run a
// rootfs the test makes from the host's /usr/bin/sleep and its libraries (no image download).
//
// containerd: the container is created in namespace k8s.io with the labels the kubelet gives a
// container through CRI (the CRI plugin copies them to containerd labels: the test sets them
// itself, as no kubelet runs here) and in a cgroup laid out as the kubelet's cgroupfs driver
// does (/kubepods/besteffort/pod<uid>/<id>). Every field the resolver returns is checked exactly.
//
// Needs root, containerd, ctr and runc (dockerd and the docker client for the Docker case); skips
// loudly without them, fails instead where TCPSCOPE_REQUIRE_ROOT_TESTS=1.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "agent/agent_metrics.h"
#include "agent/cgroup_index.h"
#include "agent/workload_resolver.h"
#include "gtest/gtest.h"
#include "tests/harness/netns.h"
#include "tests/harness/process.h"

namespace tcpscope::agent {
namespace {

using testing::CommandResult;
using testing::RunCommand;
using testing::Subprocess;

#define REQUIRE_TOOLS(...)                                                                  \
  for (const char* tool : {__VA_ARGS__}) {                                                  \
    if (RunCommand(absl::StrCat("command -v ", tool, " >/dev/null")).exit_code != 0) {      \
      if (::tcpscope::testing::RootTestsRequired()) {                                       \
        FAIL() << "TCPSCOPE_REQUIRE_ROOT_TESTS is set but " << tool << " is not installed"; \
      }                                                                                     \
      GTEST_SKIP() << tool << " is not installed (scripts/setup installs it)";              \
    }                                                                                       \
  }

std::string Trimmed(const std::string& text) {
  return std::string(absl::StripAsciiWhitespace(text));
}

std::string RandomHex64() {
  return Trimmed(RunCommand("head -c 32 /dev/urandom | sha256sum | cut -c1-64").output);
}

std::string Which(const std::string& tool) {
  return Trimmed(RunCommand("command -v " + tool).output);
}

bool WaitForSocket(const std::string& path, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (IsUnixSocket(path)) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

class WorkloadRuntimesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/wrt.XXXXXX";  // short: unix socket paths live below it
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    for (const std::string& command : cleanup_) RunCommand(command + " >/dev/null 2>&1");
    if (daemon_ != nullptr) daemon_->Stop(absl::Seconds(10));
    // Only when nothing is mounted below it any more (a daemon that did not stop cleanly).
    if (RunCommand(absl::StrCat("grep -q ' ", dir_, "/' /proc/mounts")).exit_code != 0) {
      std::filesystem::remove_all(dir_);
    } else {
      ADD_FAILURE() << "mounts left under " << dir_;
    }
  }

  // A root filesystem holding /usr/bin/sleep and the libraries it loads.
  std::string MakeRootfs() {
    const std::string rootfs = dir_ + "/rootfs";
    const CommandResult copied = RunCommand(
        absl::StrCat("set -e; for f in /usr/bin/sleep $(ldd /usr/bin/sleep | grep -o '/[^ ]*'); do "
                     "mkdir -p ",
                     rootfs, "$(dirname $f); cp -L $f ", rootfs, "$f; done 2>&1"));
    EXPECT_EQ(copied.exit_code, 0) << copied.output;
    return rootfs;
  }

  // The cgroup id of a process: the inode of its cgroup v2 directory.
  uint64_t CgroupIdOf(const std::string& pid) {
    std::ifstream file("/proc/" + pid + "/cgroup");
    std::string line, path;
    while (std::getline(file, line)) {
      if (line.rfind("0::", 0) == 0) path = line.substr(3);
    }
    EXPECT_FALSE(path.empty()) << "no cgroup v2 line for pid " << pid;
    absl::StatusOr<std::string> mount = FindCgroup2Mount();
    EXPECT_TRUE(mount.ok()) << mount.status();
    struct stat st;
    EXPECT_EQ(stat((*mount + path).c_str(), &st), 0) << *mount << path;
    cgroup_path_ = path;
    return st.st_ino;
  }

  std::string dir_;
  std::string cgroup_path_;
  std::unique_ptr<Subprocess> daemon_;
  std::vector<std::string> cleanup_;  // run in order at the end
};

TEST_F(WorkloadRuntimesTest, ContainerdKubernetesContainer) {
  TCPSCOPE_REQUIRE_ROOT();
  REQUIRE_TOOLS("containerd", "ctr", "runc", "ldd", "sha256sum");
  const std::string socket = dir_ + "/containerd.sock";
  {
    std::ofstream config(dir_ + "/config.toml");
    config << "version = 2\nroot = \"" << dir_ << "/root\"\nstate = \"" << dir_
           << "/state\"\n"
              "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
              "[grpc]\n  address = \""
           << socket << "\"\n";
  }
  absl::StatusOr<std::unique_ptr<Subprocess>> containerd = Subprocess::Start(
      {Which("containerd"), "--config", dir_ + "/config.toml"}, dir_ + "/containerd.log");
  ASSERT_TRUE(containerd.ok()) << containerd.status();
  daemon_ = *std::move(containerd);
  ASSERT_TRUE(WaitForSocket(socket, absl::Seconds(20))) << daemon_->Log();
  const std::string rootfs = MakeRootfs();

  const std::string id = RandomHex64();
  const std::string pod_uid = Trimmed(RunCommand("cat /proc/sys/kernel/random/uuid").output);
  const std::string ctr = absl::StrCat("ctr -a ", socket, " -n k8s.io ");
  cleanup_.push_back(ctr + "task kill -s KILL " + id);
  cleanup_.push_back("sleep 0.3");
  cleanup_.push_back(ctr + "task delete " + id);
  cleanup_.push_back(ctr + "container delete " + id);
  // runc removes the container's cgroup, not the pod's made on its way.
  cleanup_.push_back("rmdir /sys/fs/cgroup/*/kubepods/besteffort/pod" + pod_uid);
  // The labels the kubelet sets on a container through CRI (set by the test: no kubelet here).
  const CommandResult run = RunCommand(absl::StrCat(
      ctr, "run -d --rootfs --label io.kubernetes.pod.name=web-0",
      " --label io.kubernetes.pod.namespace=shop --label io.kubernetes.pod.uid=", pod_uid,
      " --label io.kubernetes.container.name=app --cgroup /kubepods/besteffort/pod", pod_uid, "/",
      id, " ", rootfs, " ", id, " /usr/bin/sleep 60 2>&1"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  // A container of ctr's own namespace (no Kubernetes labels), in a CRI-like systemd scope
  // name: found in the third namespace asked.
  const std::string plain = RandomHex64();
  const std::string ctr_default = absl::StrCat("ctr -a ", socket, " -n default ");
  cleanup_.push_back(ctr_default + "task kill -s KILL " + plain);
  cleanup_.push_back("sleep 0.3");
  cleanup_.push_back(ctr_default + "task delete " + plain);
  cleanup_.push_back(ctr_default + "container delete " + plain);
  cleanup_.push_back("rmdir /sys/fs/cgroup/*/tcpscope-test.slice");
  const CommandResult run_plain = RunCommand(
      absl::StrCat(ctr_default, "run -d --rootfs --cgroup /tcpscope-test.slice/cri-containerd-",
                   plain, ".scope ", rootfs, " ", plain, " /usr/bin/sleep 60 2>&1"));
  ASSERT_EQ(run_plain.exit_code, 0) << run_plain.output;

  const std::string pid =
      Trimmed(RunCommand(ctr + "task ls | awk -v id=" + id + " '$1 == id {print $2}'").output);
  ASSERT_FALSE(pid.empty());
  const uint64_t cgroup = CgroupIdOf(pid);
  EXPECT_EQ(cgroup_path_, absl::StrCat("/kubepods/besteffort/pod", pod_uid, "/", id));
  const std::string plain_pid = Trimmed(
      RunCommand(ctr_default + "task ls | awk -v id=" + plain + " '$1 == id {print $2}'").output);
  ASSERT_FALSE(plain_pid.empty());
  const uint64_t plain_cgroup = CgroupIdOf(plain_pid);

  AgentMetrics metrics("test-host");
  WorkloadResolverOptions options;
  options.containerd_socket = socket;
  options.docker_socket = options.podman_socket = options.crio_socket = "";
  absl::StatusOr<std::unique_ptr<WorkloadResolver>> resolver =
      NewWorkloadResolver(options, metrics);
  ASSERT_TRUE(resolver.ok()) << resolver.status();
  const absl::Time start = absl::Now();
  std::shared_ptr<const Workload> workload = (*resolver)->Resolve(cgroup);
  const absl::Duration took = absl::Now() - start;
  ASSERT_NE(workload, nullptr);
  EXPECT_EQ(workload->container_id, id);
  EXPECT_EQ(workload->container_name, "app");
  EXPECT_EQ(workload->pod, "web-0");
  EXPECT_EQ(workload->pod_namespace, "shop");
  EXPECT_EQ(workload->pod_uid, pod_uid);
  EXPECT_EQ(workload->runtime, v1::CONTAINER_RUNTIME_CONTAINERD);
  std::cout << "first resolution (cgroup walk + containerd Get): " << took << "\n";

  std::shared_ptr<const Workload> other = (*resolver)->Resolve(plain_cgroup);
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->container_id, plain);
  EXPECT_EQ(other->container_name, "");
  EXPECT_EQ(other->pod, "");
  EXPECT_EQ(other->pod_namespace, "");
  EXPECT_EQ(other->pod_uid, "");
  EXPECT_EQ(other->runtime, v1::CONTAINER_RUNTIME_CONTAINERD);

  // The test's own cgroup is no container.
  EXPECT_EQ((*resolver)->Resolve(CgroupIdOf(std::to_string(getpid()))), nullptr);
  // Cached: the same answer without asking again.
  EXPECT_EQ((*resolver)->Resolve(cgroup), workload);
}

TEST_F(WorkloadRuntimesTest, DockerContainer) {
  TCPSCOPE_REQUIRE_ROOT();
  REQUIRE_TOOLS("dockerd", "/usr/bin/docker", "ldd", "tar");
  const std::string socket = dir_ + "/docker.sock";
  { std::ofstream(dir_ + "/daemon.json") << "{}"; }  // the host's daemon.json does not apply
  // Its own data root, exec root and socket; no bridge and no iptables rules.
  absl::StatusOr<std::unique_ptr<Subprocess>> dockerd = Subprocess::Start(
      {Which("dockerd"), "--config-file", dir_ + "/daemon.json", "--data-root", dir_ + "/data",
       "--exec-root", dir_ + "/exec", "--pidfile", dir_ + "/dockerd.pid", "--host",
       "unix://" + socket, "--bridge=none", "--iptables=false", "--ip6tables=false",
       "--ip-forward=false", "--ip-masq=false"},
      dir_ + "/dockerd.log");
  ASSERT_TRUE(dockerd.ok()) << dockerd.status();
  daemon_ = *std::move(dockerd);
  const std::string docker = absl::StrCat("/usr/bin/docker -H unix://", socket, " ");
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (RunCommand(docker + "info >/dev/null 2>&1").exit_code != 0) {
    ASSERT_LT(absl::Now(), deadline) << "dockerd did not start:\n" << daemon_->Log();
    ASSERT_TRUE(daemon_->Running()) << daemon_->Log();
    absl::SleepFor(absl::Milliseconds(200));
  }
  const std::string rootfs = MakeRootfs();
  const CommandResult imported = RunCommand(
      absl::StrCat("tar -C ", rootfs, " -c . | ", docker, "import - tcpscope-sleep:test 2>&1"));
  ASSERT_EQ(imported.exit_code, 0) << imported.output;

  const std::string name = absl::StrCat("web-", getpid());
  cleanup_.push_back(docker + "rm -f " + name + " k8s_app_" + name);
  const CommandResult run = RunCommand(absl::StrCat(
      docker, "run -d --name ", name, " --network none tcpscope-sleep:test /usr/bin/sleep 60"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const std::string id = Trimmed(run.output);
  // As cri-dockerd makes a pod's container: the kubelet's labels and a composite name.
  const CommandResult run_pod = RunCommand(
      absl::StrCat(docker, "run -d --name k8s_app_", name,
                   " --network none --label io.kubernetes.pod.name=web-0",
                   " --label io.kubernetes.pod.namespace=shop --label io.kubernetes.pod.uid=",
                   "8dbe1f2a-4c3b-4e5d-9f60-7a8b9c0d1e2f --label io.kubernetes.container.name=app",
                   " tcpscope-sleep:test /usr/bin/sleep 60"));
  ASSERT_EQ(run_pod.exit_code, 0) << run_pod.output;
  const std::string pod_id = Trimmed(run_pod.output);

  const uint64_t cgroup =
      CgroupIdOf(Trimmed(RunCommand(docker + "inspect -f '{{.State.Pid}}' " + name).output));
  std::cout << "Docker container's cgroup: " << cgroup_path_ << "\n";
  const uint64_t pod_cgroup = CgroupIdOf(
      Trimmed(RunCommand(docker + "inspect -f '{{.State.Pid}}' k8s_app_" + name).output));

  AgentMetrics metrics("test-host");
  WorkloadResolverOptions options;
  options.docker_socket = socket;
  options.containerd_socket = options.podman_socket = options.crio_socket = "";
  absl::StatusOr<std::unique_ptr<WorkloadResolver>> resolver =
      NewWorkloadResolver(options, metrics);
  ASSERT_TRUE(resolver.ok()) << resolver.status();
  std::shared_ptr<const Workload> workload = (*resolver)->Resolve(cgroup);
  ASSERT_NE(workload, nullptr);
  EXPECT_EQ(workload->container_id, id);
  EXPECT_EQ(workload->container_name, name);
  EXPECT_EQ(workload->pod, "");
  EXPECT_EQ(workload->pod_namespace, "");
  EXPECT_EQ(workload->pod_uid, "");
  EXPECT_EQ(workload->runtime, v1::CONTAINER_RUNTIME_DOCKER);

  std::shared_ptr<const Workload> pod = (*resolver)->Resolve(pod_cgroup);
  ASSERT_NE(pod, nullptr);
  EXPECT_EQ(pod->container_id, pod_id);
  EXPECT_EQ(pod->container_name, "app");
  EXPECT_EQ(pod->pod, "web-0");
  EXPECT_EQ(pod->pod_namespace, "shop");
  EXPECT_EQ(pod->pod_uid, "8dbe1f2a-4c3b-4e5d-9f60-7a8b9c0d1e2f");
  EXPECT_EQ(pod->runtime, v1::CONTAINER_RUNTIME_DOCKER);
}

}  // namespace
}  // namespace tcpscope::agent
