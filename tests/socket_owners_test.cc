// Socket owners without a kernel: the BPF iterator's record decoding, the /proc walk over a fake
// /proc tree, the rule for a socket several processes hold, and the cgroup v2 helpers.
#include "agent/socket_owners.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/bpf/socket_owner.h"
#include "gtest/gtest.h"

namespace tcpscope::agent {
namespace {

tcpscope_socket_owner Record(uint64_t inode, uint32_t tgid, const char* comm,
                             uint64_t cgroup_id = 0, uint8_t state = 1, uint16_t port = 0,
                             uint32_t netns = 4026531840u) {
  tcpscope_socket_owner record;
  std::memset(&record, 0, sizeof(record));
  record.inode = inode;
  record.tgid = tgid;
  record.cgroup_id = cgroup_id;
  record.state = state;
  record.local_port = port;
  record.netns_ino = netns;
  record.family = 2;
  std::strncpy(record.comm, comm, sizeof(record.comm));
  return record;
}

std::vector<uint8_t> Bytes(const std::vector<tcpscope_socket_owner>& records) {
  std::vector<uint8_t> bytes(records.size() * sizeof(tcpscope_socket_owner));
  if (!records.empty()) std::memcpy(bytes.data(), records.data(), bytes.size());
  return bytes;
}

TEST(SocketOwnerRecordTest, LayoutIsFixed) {
  // Kernel and user space share the struct: no hidden padding, 8-byte aligned size.
  EXPECT_EQ(sizeof(tcpscope_socket_owner), 48u);
  EXPECT_EQ(offsetof(tcpscope_socket_owner, comm), 32u);
}

TEST(DecodeOwnerRecordsTest, OwnersByInodeAndListenersByNamespaceAndPort) {
  const std::vector<uint8_t> bytes =
      Bytes({Record(100, 10, "server", 7, /*state=*/10, /*port=*/8080),
             Record(101, 10, "server", 7, /*state=*/1, /*port=*/8080),
             Record(200, 20, "client", 9, /*state=*/1, /*port=*/40000)});
  OwnerTable table;
  ASSERT_TRUE(DecodeOwnerRecords(bytes, &table).ok());
  ASSERT_EQ(table.sockets.size(), 3u);
  EXPECT_EQ(*table.sockets.at(100), (SocketOwner{.pid = 10, .cgroup_id = 7, .command = "server"}));
  EXPECT_EQ(*table.sockets.at(200), (SocketOwner{.pid = 20, .cgroup_id = 9, .command = "client"}));
  // One SocketOwner per process, shared by its sockets.
  EXPECT_EQ(table.sockets.at(100).get(), table.sockets.at(101).get());
  EXPECT_EQ(table.processes, 2u);
  ASSERT_EQ(table.listeners.size(), 1u);
  EXPECT_EQ(table.listeners.at(ListenerKey{4026531840u, 8080})->pid, 10u);
  EXPECT_FALSE(table.listeners.contains(ListenerKey{4026531841u, 8080}));
}

TEST(DecodeOwnerRecordsTest, SharedSocketGoesToTheHighestPidWhateverTheOrder) {
  // ss -p lists the process it found last in /proc's ascending pid order first: the highest pid.
  for (const bool ascending : {true, false}) {
    std::vector<tcpscope_socket_owner> records = {Record(5, 300, "parent", 0, 10, 80),
                                                  Record(5, 301, "child", 0, 10, 80),
                                                  Record(5, 299, "other", 0, 10, 80)};
    if (!ascending) std::swap(records[0], records[1]);
    OwnerTable table;
    ASSERT_TRUE(DecodeOwnerRecords(Bytes(records), &table).ok());
    EXPECT_EQ(table.sockets.at(5)->pid, 301u);
    EXPECT_EQ(table.sockets.at(5)->command, "child");
    EXPECT_EQ(table.listeners.at(ListenerKey{4026531840u, 80})->pid, 301u);
  }
}

TEST(DecodeOwnerRecordsTest, CommandsArePrintableAndBounded) {
  tcpscope_socket_owner record = Record(1, 2, "");
  std::memcpy(record.comm,
              "ab\x01\xff"
              "cdefghijklmnop",
              16);  // no terminating NUL
  OwnerTable table;
  ASSERT_TRUE(DecodeOwnerRecords(Bytes({record}), &table).ok());
  EXPECT_EQ(table.sockets.at(1)->command, "ab??cdefghijklmn");
}

TEST(DecodeOwnerRecordsTest, PartialRecordIsAnErrorButWholeOnesStay) {
  std::vector<uint8_t> bytes = Bytes({Record(1, 2, "a"), Record(3, 4, "b")});
  bytes.resize(bytes.size() - 5);
  OwnerTable table;
  EXPECT_FALSE(DecodeOwnerRecords(bytes, &table).ok());
  EXPECT_EQ(table.sockets.size(), 1u);
  EXPECT_TRUE(DecodeOwnerRecords({}, &table).ok());
}

TEST(CgroupTest, V2PathFromProcPidCgroup) {
  EXPECT_EQ(CgroupV2Path("4:memory:/x\n0::/system.slice/docker-abc.scope\n"),
            "/system.slice/docker-abc.scope");
  EXPECT_EQ(CgroupV2Path("0::/\n"), "/");
  EXPECT_EQ(CgroupV2Path("1:cpu:/\n"), "");
  EXPECT_EQ(CgroupV2Path(""), "");
}

TEST(CgroupTest, MountPointOfTheHierarchyRoot) {
  const std::string hybrid =
      "25 30 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
      "26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime shared:5 - cgroup cgroup rw,cpu\n"
      "36 25 0:31 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(Cgroup2MountPoint(hybrid), "/sys/fs/cgroup/unified");
  // A container's view of a sub-cgroup is skipped: its inode numbers are right but paths are not.
  EXPECT_EQ(Cgroup2MountPoint("40 30 0:31 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
            "");
  EXPECT_EQ(Cgroup2MountPoint("garbage\n\n - \n"), "");
}

TEST(OwnersModeTest, Parse) {
  EXPECT_EQ(*ParseOwnersMode("auto"), OwnersMode::kAuto);
  EXPECT_EQ(*ParseOwnersMode("bpf"), OwnersMode::kBpf);
  EXPECT_EQ(*ParseOwnersMode("proc"), OwnersMode::kProc);
  EXPECT_EQ(*ParseOwnersMode("off"), OwnersMode::kOff);
  EXPECT_FALSE(ParseOwnersMode("ebpf").ok());
}

// A fake /proc: each process has fd symlinks (the targets need not exist), comm and cgroup.
class ProcWalkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/socket_owners_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
    std::filesystem::create_directories(root_ + "/proc/self");
    std::filesystem::create_directories(root_ + "/cgroup2/app.slice");
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  void AddProcess(int pid, const std::string& comm, const std::string& cgroup,
                  const std::vector<std::string>& fds) {
    const std::string base = absl::StrCat(root_, "/proc/", pid);
    std::filesystem::create_directories(base + "/fd");
    std::ofstream(base + "/comm") << comm << "\n";
    std::ofstream(base + "/cgroup") << "1:cpu:/\n0::" << cgroup << "\n";
    for (size_t i = 0; i < fds.size(); ++i) {
      std::filesystem::create_symlink(fds[i], absl::StrCat(base, "/fd/", i));
    }
  }

  uint64_t Inode(const std::string& path) {
    struct stat info {};
    EXPECT_EQ(stat(path.c_str(), &info), 0) << path;
    return info.st_ino;
  }

  std::string root_;
};

TEST_F(ProcWalkTest, SocketsOfEveryProcessWithCommandAndCgroup) {
  AddProcess(10, "nginx", "/app.slice", {"socket:[1000]", "/dev/null", "socket:[1001]"});
  AddProcess(11, "curl", "/", {"pipe:[5]", "socket:[2000]", "anon_inode:[eventfd]"});
  AddProcess(12, "idle", "/", {"/dev/null"});
  // The ss rule: 21 is found after 20 and listed first by ss.
  AddProcess(20, "parent", "/", {"socket:[3000]"});
  AddProcess(21, "child", "/", {"socket:[3000]"});
  std::filesystem::create_directories(root_ + "/proc/not-a-pid/fd");

  std::unique_ptr<SocketOwners> owners = NewProcSocketOwners(root_ + "/proc", root_ + "/cgroup2");
  EXPECT_STREQ(owners->mode(), "proc");
  absl::StatusOr<OwnerTable> table = owners->Scan();
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_EQ(table->sockets.size(), 4u);
  EXPECT_EQ(*table->sockets.at(1000),
            (SocketOwner{
                .pid = 10, .cgroup_id = Inode(root_ + "/cgroup2/app.slice"), .command = "nginx"}));
  EXPECT_EQ(table->sockets.at(1000).get(), table->sockets.at(1001).get());
  EXPECT_EQ(*table->sockets.at(2000),
            (SocketOwner{.pid = 11, .cgroup_id = Inode(root_ + "/cgroup2"), .command = "curl"}));
  EXPECT_EQ(table->sockets.at(3000)->pid, 21u);
  EXPECT_EQ(table->processes, 4u);  // "idle" holds no socket
  EXPECT_TRUE(table->listeners.empty());
}

TEST_F(ProcWalkTest, UnknownCgroupIsZeroAndMissingProcIsAnError) {
  AddProcess(10, "gone", "/no/such/cgroup", {"socket:[1]"});
  absl::StatusOr<OwnerTable> table =
      NewProcSocketOwners(root_ + "/proc", root_ + "/cgroup2")->Scan();
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->sockets.at(1)->cgroup_id, 0u);
  EXPECT_FALSE(NewProcSocketOwners(root_ + "/absent", root_ + "/cgroup2")->Scan().ok());
}

}  // namespace
}  // namespace tcpscope::agent
