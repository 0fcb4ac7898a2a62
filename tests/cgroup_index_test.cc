// cgroup id -> path: the mountinfo parser, a walk of a directory tree made by the test (inode
// numbers stand for cgroup ids), the rescan throttle, the bounds, and the real cgroup2 mount.
#include "agent/cgroup_index.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tcpscope::agent {
namespace {

TEST(Cgroup2MountTest, FindsTheUnifiedHierarchy) {
  // This machine's layout: hybrid, cgroup2 at /sys/fs/cgroup/unified.
  const std::string hybrid =
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(*Cgroup2MountFromMountinfo(hybrid), "/sys/fs/cgroup/unified");
  // cgroup v2 only, with optional fields before the separator.
  const std::string unified =
      "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
      "rw,nsdelegate,memory_recursiveprot\n";
  EXPECT_EQ(*Cgroup2MountFromMountinfo(unified), "/sys/fs/cgroup");
  // The host's hierarchy mounted into a container, with a space in its path (octal escape).
  EXPECT_EQ(*Cgroup2MountFromMountinfo(
                "900 800 0:30 / /host\\040root/cgroup ro,relatime - cgroup2 cgroup2 rw\n"),
            "/host root/cgroup");
  EXPECT_FALSE(
      Cgroup2MountFromMountinfo("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw\n").ok());
  EXPECT_FALSE(Cgroup2MountFromMountinfo("").ok());
  EXPECT_FALSE(Cgroup2MountFromMountinfo("garbage\n- cgroup2\n1 2 3 4\n").ok());
}

class CgroupIndexTest : public testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/cgroup_index_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  uint64_t MakeDir(const std::string& relative) {
    std::filesystem::create_directories(root_ + relative);
    struct stat st;
    EXPECT_EQ(stat((root_ + relative).c_str(), &st), 0);
    return st.st_ino;
  }

  CgroupIndexOptions Options() {
    CgroupIndexOptions options;
    options.root = root_;
    options.now = [this] { return now_; };
    return options;
  }

  std::string root_;
  absl::Time now_ = absl::FromUnixSeconds(1000);
};

TEST_F(CgroupIndexTest, MapsInodesToPaths) {
  const uint64_t docker = MakeDir("/system.slice/docker-abc.scope");
  const uint64_t pod = MakeDir("/kubepods/besteffort/pod1/ctr");
  std::filesystem::create_directories(root_ + "/a");
  std::filesystem::create_directories(root_ + "/b");
  // A plain file beside them is not a cgroup.
  FILE* file = fopen((root_ + "/system.slice/cgroup.procs").c_str(), "w");
  ASSERT_NE(file, nullptr);
  fclose(file);
  CgroupIndex index(Options());
  std::string path;
  ASSERT_EQ(index.PathOf(docker, &path), CgroupIndex::Result::kFound);
  EXPECT_EQ(path, "/system.slice/docker-abc.scope");
  ASSERT_EQ(index.PathOf(pod, &path), CgroupIndex::Result::kFound);
  EXPECT_EQ(path, "/kubepods/besteffort/pod1/ctr");
  struct stat st;
  ASSERT_EQ(stat(root_.c_str(), &st), 0);
  ASSERT_EQ(index.PathOf(st.st_ino, &path), CgroupIndex::Result::kFound);
  EXPECT_EQ(path, "/");
  EXPECT_EQ(index.walks(), 1u);
  EXPECT_EQ(index.size(), 9u);  // root, system.slice, docker, kubepods/besteffort/pod1/ctr, a, b
}

TEST_F(CgroupIndexTest, RescansOnAMissAtMostOncePerInterval) {
  CgroupIndex index(Options());
  std::string path;
  EXPECT_EQ(index.PathOf(12345678901, &path), CgroupIndex::Result::kNotFound);
  EXPECT_EQ(index.walks(), 1u);
  // A cgroup made after the walk: found only once the interval has passed.
  const uint64_t later = MakeDir("/docker/new");
  now_ += absl::Milliseconds(50);
  EXPECT_EQ(index.PathOf(later, &path), CgroupIndex::Result::kThrottled);
  EXPECT_EQ(index.PathOf(99, &path), CgroupIndex::Result::kThrottled);
  EXPECT_EQ(index.walks(), 1u);
  now_ += absl::Seconds(1);
  ASSERT_EQ(index.PathOf(later, &path), CgroupIndex::Result::kFound);
  EXPECT_EQ(path, "/docker/new");
  EXPECT_EQ(index.walks(), 2u);
  // A hit never walks.
  now_ += absl::Seconds(5);
  EXPECT_EQ(index.PathOf(later, &path), CgroupIndex::Result::kFound);
  EXPECT_EQ(index.walks(), 2u);
  // A removed cgroup disappears with the next walk (one made at the time of asking: not found,
  // not throttled).
  std::filesystem::remove(root_ + "/docker/new");
  EXPECT_EQ(index.PathOf(7, &path), CgroupIndex::Result::kNotFound);
  EXPECT_EQ(index.PathOf(later, &path), CgroupIndex::Result::kNotFound);
  EXPECT_EQ(index.walks(), 3u);
}

TEST_F(CgroupIndexTest, WalkIsBounded) {
  for (int i = 0; i < 50; ++i) MakeDir(absl::StrCat("/wide/", i));
  std::string deep;
  for (int i = 0; i < 40; ++i) absl::StrAppend(&deep, "/d");
  const uint64_t deepest = MakeDir(deep);
  CgroupIndexOptions options = Options();
  options.max_cgroups = 20;
  CgroupIndex small(options);
  std::string path;
  small.PathOf(1, &path);
  EXPECT_LE(small.size(), 20u);
  options.max_cgroups = 1000;
  options.max_depth = 8;
  CgroupIndex shallow(options);
  EXPECT_EQ(shallow.PathOf(deepest, &path), CgroupIndex::Result::kNotFound);
  EXPECT_LT(shallow.size(), 70u);
}

TEST_F(CgroupIndexTest, MissingRootFindsNothing) {
  CgroupIndexOptions options = Options();
  options.root = root_ + "/absent";
  CgroupIndex index(options);
  std::string path;
  EXPECT_EQ(index.PathOf(1, &path), CgroupIndex::Result::kNotFound);
  EXPECT_EQ(index.size(), 0u);
}

// On the real cgroup2 mount, a cgroup's id (its inode) maps to its path: the agent's own.
TEST(CgroupIndexRealTest, FindsOwnCgroup) {
  absl::StatusOr<std::string> mount = FindCgroup2Mount();
  if (!mount.ok()) GTEST_SKIP() << "no cgroup2 mount: " << mount.status();
  FILE* file = fopen("/proc/self/cgroup", "r");
  ASSERT_NE(file, nullptr);
  char line[4096];
  std::string own;
  while (fgets(line, sizeof(line), file) != nullptr) {
    std::string text(line);
    if (text.rfind("0::", 0) == 0) own = text.substr(3, text.find('\n') - 3);
  }
  fclose(file);
  ASSERT_FALSE(own.empty());
  struct stat st;
  ASSERT_EQ(stat((*mount + own).c_str(), &st), 0) << *mount << own;
  CgroupIndexOptions options;
  options.root = *mount;
  CgroupIndex index(options);
  std::string path;
  ASSERT_EQ(index.PathOf(st.st_ino, &path), CgroupIndex::Result::kFound);
  EXPECT_EQ(path, own);
}

}  // namespace
}  // namespace tcpscope::agent
