// The cgroup layouts of Docker, containerd (CRI), CRI-O and Podman under the systemd and cgroupfs
// drivers, nested ones (Docker-in-Docker, kind), and paths that must say nothing.
#include "agent/cgroup_path.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tcpscope::agent {
namespace {

using v1::CONTAINER_RUNTIME_CONTAINERD;
using v1::CONTAINER_RUNTIME_CRIO;
using v1::CONTAINER_RUNTIME_DOCKER;
using v1::CONTAINER_RUNTIME_PODMAN;
using v1::CONTAINER_RUNTIME_UNSPECIFIED;

const std::string kId = "3f4e1d1b9a0c7e2f5b6a8d9c0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b";
const std::string kOuter = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kUid = "8dbe1f2a-4c3b-4e5d-9f60-7a8b9c0d1e2f";
const std::string kUidUnderscored = "8dbe1f2a_4c3b_4e5d_9f60_7a8b9c0d1e2f";
const std::string kStaticUid = "6d7d1e5c0f1c8b5b3f7a0e9f3e2d1c0b";  // a static pod's hash

struct Case {
  std::string path;
  std::optional<CgroupContainer> want;
};

CgroupContainer C(v1::ContainerRuntime runtime, const std::string& id,
                  const std::string& uid = "") {
  return CgroupContainer{runtime, id, uid};
}

TEST(CgroupPathTest, RecognisesEveryLayout) {
  const Case cases[] = {
      // Docker: cgroupfs and systemd drivers.
      {"/docker/" + kId, C(CONTAINER_RUNTIME_DOCKER, kId)},
      {"/system.slice/docker-" + kId + ".scope", C(CONTAINER_RUNTIME_DOCKER, kId)},
      // A container running systemd, or one that made cgroups of its own.
      {"/system.slice/docker-" + kId + ".scope/init.scope", C(CONTAINER_RUNTIME_DOCKER, kId)},
      {"/docker/" + kId + "/system.slice/nginx.service", C(CONTAINER_RUNTIME_DOCKER, kId)},
      // Rootless Docker under the user's systemd.
      {"/user.slice/user-1000.slice/user@1000.service/docker.service/docker/" + kId,
       C(CONTAINER_RUNTIME_DOCKER, kId)},
      // containerd's CRI plugin, systemd driver, every QoS class.
      {"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidUnderscored +
           ".slice/cri-containerd-" + kId + ".scope",
       C(CONTAINER_RUNTIME_CONTAINERD, kId, kUid)},
      {"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidUnderscored +
           ".slice/cri-containerd-" + kId + ".scope",
       C(CONTAINER_RUNTIME_CONTAINERD, kId, kUid)},
      {"/kubepods.slice/kubepods-pod" + kUidUnderscored + ".slice/cri-containerd-" + kId + ".scope",
       C(CONTAINER_RUNTIME_CONTAINERD, kId, kUid)},
      {"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kStaticUid +
           ".slice/cri-containerd-" + kId + ".scope",
       C(CONTAINER_RUNTIME_CONTAINERD, kId, kStaticUid)},
      // cgroupfs driver: a bare id in the pod's cgroup (containerd, or cri-dockerd).
      {"/kubepods/besteffort/pod" + kUid + "/" + kId, C(CONTAINER_RUNTIME_UNSPECIFIED, kId, kUid)},
      {"/kubepods/burstable/pod" + kUid + "/" + kId, C(CONTAINER_RUNTIME_UNSPECIFIED, kId, kUid)},
      {"/kubepods/pod" + kUid + "/" + kId, C(CONTAINER_RUNTIME_UNSPECIFIED, kId, kUid)},
      // cri-dockerd with the systemd driver.
      {"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidUnderscored +
           ".slice/docker-" + kId + ".scope",
       C(CONTAINER_RUNTIME_DOCKER, kId, kUid)},
      // CRI-O: systemd and cgroupfs.
      {"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidUnderscored +
           ".slice/crio-" + kId + ".scope",
       C(CONTAINER_RUNTIME_CRIO, kId, kUid)},
      {"/kubepods/besteffort/pod" + kUid + "/crio-" + kId, C(CONTAINER_RUNTIME_CRIO, kId, kUid)},
      // CRI-O's container with its own cgroups below (crun's "container" leaf).
      {"/kubepods.slice/kubepods-pod" + kUidUnderscored + ".slice/crio-" + kId + ".scope/container",
       C(CONTAINER_RUNTIME_CRIO, kId, kUid)},
      // Podman: root (machine.slice), rootless (user slice), cgroupfs, and its "container" leaf.
      {"/machine.slice/libpod-" + kId + ".scope", C(CONTAINER_RUNTIME_PODMAN, kId)},
      {"/machine.slice/libpod-" + kId + ".scope/container", C(CONTAINER_RUNTIME_PODMAN, kId)},
      {"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + kId + ".scope",
       C(CONTAINER_RUNTIME_PODMAN, kId)},
      {"/libpod_parent/libpod-" + kId, C(CONTAINER_RUNTIME_PODMAN, kId)},
      // A Podman pod (systemd): the pod's slice holds its containers.
      {"/machine.slice/machine-libpod_pod_" + kOuter + ".slice/libpod-" + kId + ".scope",
       C(CONTAINER_RUNTIME_PODMAN, kId)},
      // Docker-in-Docker: the innermost container is the owner.
      {"/docker/" + kOuter + "/docker/" + kId, C(CONTAINER_RUNTIME_DOCKER, kId)},
      {"/system.slice/docker-" + kOuter + ".scope/docker/" + kId, C(CONTAINER_RUNTIME_DOCKER, kId)},
      // kind: a node is a Docker container; its pods' cgroups are below it.
      {"/system.slice/docker-" + kOuter +
           ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
           "kubelet-kubepods-besteffort-pod" +
           kUidUnderscored + ".slice/cri-containerd-" + kId + ".scope",
       C(CONTAINER_RUNTIME_CONTAINERD, kId, kUid)},
      {"/docker/" + kOuter + "/kubelet/kubepods/besteffort/pod" + kUid + "/" + kId,
       C(CONTAINER_RUNTIME_UNSPECIFIED, kId, kUid)},
      // The node's own processes (kubelet, containerd) belong to the node's container.
      {"/system.slice/docker-" + kOuter + ".scope/system.slice/containerd.service",
       C(CONTAINER_RUNTIME_DOCKER, kOuter)},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ParseCgroupPath(c.path), c.want) << c.path;
  }
}

TEST(CgroupPathTest, SaysNothingOfOtherPaths) {
  const std::string not_containers[] = {
      "/",
      "",
      "/init.scope",
      "/system.slice/sshd.service",
      "/system.slice/docker.service",
      "/system.slice/containerd.service",
      "/user.slice/user-1000.slice/session-3.scope",
      // A pod's own cgroup, not one of its containers.
      "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidUnderscored +
          ".slice",
      "/kubepods/besteffort/pod" + kUid,
      // The monitors of CRI-O and Podman run beside the container, not in it.
      "/kubepods.slice/kubepods-pod" + kUidUnderscored + ".slice/crio-conmon-" + kId + ".scope",
      "/machine.slice/libpod-conmon-" + kId + ".scope",
      // A bare id whose parent says nothing of its runtime (ctr's default /<namespace>/<id>, a
      // custom --cgroup-parent): not guessed.
      "/k8s.io/" + kId,
      "/actions_job/" + kId,
      "/" + kId,
      // A bare id under a "pod" that is not in kubepods.
      "/pod" + kUid + "/" + kId,
      // Ids of the wrong length or case, or with a stray character.
      "/docker/" + kId.substr(1),
      "/docker/" + kId + "0",
      "/docker/3F4E1D1B9A0C7E2F5B6A8D9C0E1F2A3B4C5D6E7F8091A2B3C4D5E6F708192A3B",
      "/docker/" + kId.substr(0, 63) + "g",
      "/system.slice/docker-" + kId,  // a scope's name without .scope
      "/system.slice/docker-" + kId + ".service",
      "/system.slice/cri-containerd-" + kId,
      "/system.slice/docker-" + kId + ".scope.scope",
      "/system.slice/docker-.scope",
      "/docker/",
  };
  for (const std::string& path : not_containers) {
    EXPECT_EQ(ParseCgroupPath(path), std::nullopt) << path;
  }
}

TEST(CgroupPathTest, PodUidOnlyFromTheContainersOwnPod) {
  // A bad uid in the pod slice: the container is known, its pod uid is not.
  EXPECT_EQ(ParseCgroupPath("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podxyz"
                            ".slice/cri-containerd-" +
                            kId + ".scope"),
            C(CONTAINER_RUNTIME_CONTAINERD, kId));
  // A bare id below a container below a pod: not the pod's container.
  EXPECT_EQ(ParseCgroupPath("/kubepods/besteffort/pod" + kUid + "/" + kOuter + "/x/" + kId),
            C(CONTAINER_RUNTIME_UNSPECIFIED, kOuter, kUid));
}

TEST(CgroupPathTest, HostileInputIsHarmless) {
  std::string long_path;
  for (int i = 0; i < 10000; ++i) absl::StrAppend(&long_path, "/docker");
  absl::StrAppend(&long_path, "/", kId);
  EXPECT_EQ(ParseCgroupPath(long_path), C(CONTAINER_RUNTIME_DOCKER, kId));
  EXPECT_EQ(ParseCgroupPath(std::string(100000, '/')), std::nullopt);
  EXPECT_EQ(ParseCgroupPath(std::string("/docker/\0abc", 12)), std::nullopt);
}

}  // namespace
}  // namespace tcpscope::agent
