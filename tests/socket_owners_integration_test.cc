// Socket owners against the running kernel: processes this test forks (a server, a client, and a
// child of the client that shares its connection) hold real loopback sockets; the BPF iterator
// and the /proc walk must both name exactly the right pid and command for each socket inode, and
// a real sock_diag dump must come out of the tracker with those owners. Needs root (BPF, other
// processes' /proc/PID/fd); in CI (TCPSCOPE_REQUIRE_ROOT_TESTS=1) it must run.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/connection_tracker.h"
#include "agent/sock_diag_netlink.h"
#include "agent/socket_owners.h"
#include "gtest/gtest.h"
#include "tests/harness/netns.h"

namespace tcpscope::agent {
namespace {

uint64_t InodeOf(int fd) {
  struct stat info {};
  return fstat(fd, &info) == 0 ? info.st_ino : 0;
}

// What a forked process reports through a pipe as its sockets are set up.
struct Report {
  pid_t pid = 0;
  uint16_t port = 0;
  uint64_t inodes[2] = {};
  pid_t child = 0;  // the client's own forked child, which shares its connection
};

// A forked process, renamed `name`: runs `body(report, send)`, where send() writes the report to
// the test, then waits until the test closes its end of the stop pipe (or dies), so its sockets
// stay open while the test scans.
class Forked {
 public:
  template <typename Body>
  static std::unique_ptr<Forked> Start(const char* name, Body body) {
    int report_pipe[2], stop_pipe[2];
    if (pipe(report_pipe) != 0 || pipe(stop_pipe) != 0) return nullptr;
    const pid_t pid = fork();
    if (pid < 0) return nullptr;
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      prctl(PR_SET_NAME, name);
      close(report_pipe[0]);
      close(stop_pipe[1]);
      Report report;
      report.pid = getpid();
      const int out = report_pipe[1];
      body(report, [&report, out] { (void)!write(out, &report, sizeof(report)); });
      char byte;
      while (read(stop_pipe[0], &byte, 1) > 0) {
      }
      _exit(0);
    }
    close(report_pipe[1]);
    close(stop_pipe[0]);
    return std::unique_ptr<Forked>(new Forked(pid, report_pipe[0], stop_pipe[1]));
  }
  ~Forked() {
    close(reports_);
    close(stop_);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }

  // The next report; false if the process died first.
  bool Read(Report* report) {
    return read(reports_, report, sizeof(*report)) == static_cast<ssize_t>(sizeof(*report));
  }

 private:
  Forked(pid_t pid, int reports, int stop) : pid_(pid), reports_(reports), stop_(stop) {}
  pid_t pid_;
  int reports_;
  int stop_;
};

sockaddr_in Loopback(uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

std::string Describe(const SocketOwner* owner) {
  return owner == nullptr ? "none" : absl::StrCat(owner->command, "/", owner->pid);
}

class SocketOwnersIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TCPSCOPE_REQUIRE_ROOT();
    struct stat netns {};
    ASSERT_EQ(stat("/proc/self/ns/net", &netns), 0);
    netns_ = netns.st_ino;
    // Server: a listener; then the connection it accepts.
    server_ = Forked::Start("tso-server", [](Report& report, auto send) {
      const int listener = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in address = Loopback(0);
      socklen_t length = sizeof(address);
      if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
          listen(listener, 16) != 0 ||
          getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        return;
      }
      report.port = ntohs(address.sin_port);
      report.inodes[0] = InodeOf(listener);
      send();
      report.inodes[1] = InodeOf(accept(listener, nullptr, nullptr));
      send();
    });
    ASSERT_NE(server_, nullptr);
    ASSERT_TRUE(server_->Read(&server_report_));
    ASSERT_NE(server_report_.port, 0);
    // Client: one connection, which a forked child of its own shares, and one socket (bound,
    // never connected) that only the client holds.
    const uint16_t port = server_report_.port;
    client_ = Forked::Start("tso-client", [port](Report& report, auto send) {
      const int connection = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in address = Loopback(port);
      if (connect(connection, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) return;
      const int alone = socket(AF_INET6, SOCK_STREAM, 0);
      report.inodes[0] = InodeOf(connection);
      report.inodes[1] = InodeOf(alone);
      const pid_t child = fork();
      if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        prctl(PR_SET_NAME, "tso-child");
        close(alone);
        pause();
        _exit(0);
      }
      report.child = child;
      // The child must have renamed itself before the scans.
      for (int i = 0; i < 500; ++i) {
        char comm[32] = {};
        const int fd = open(absl::StrCat("/proc/", child, "/comm").c_str(), O_RDONLY);
        if (fd >= 0) {
          (void)!read(fd, comm, sizeof(comm) - 1);
          close(fd);
        }
        if (std::string(comm) == "tso-child\n") break;
        usleep(2000);
      }
      send();
    });
    ASSERT_NE(client_, nullptr);
    ASSERT_TRUE(client_->Read(&client_report_));
    ASSERT_NE(client_report_.child, 0);
    ASSERT_TRUE(server_->Read(&server_report_));
    ASSERT_NE(server_report_.inodes[1], 0u);
  }

  // Every socket of the three processes, with the owner ss -p lists first.
  void ExpectOwners(const OwnerTable& table) {
    auto owner = [&](uint64_t inode) -> const SocketOwner* {
      auto it = table.sockets.find(inode);
      return it == table.sockets.end() ? nullptr : it->second.get();
    };
    const SocketOwner* listener = owner(server_report_.inodes[0]);
    const SocketOwner* accepted = owner(server_report_.inodes[1]);
    const SocketOwner* shared = owner(client_report_.inodes[0]);
    const SocketOwner* alone = owner(client_report_.inodes[1]);
    ASSERT_NE(listener, nullptr);
    EXPECT_EQ(Describe(listener), absl::StrCat("tso-server/", server_report_.pid));
    EXPECT_EQ(Describe(accepted), absl::StrCat("tso-server/", server_report_.pid));
    // The highest pid of the two holders, as ss -p lists it first (normally the child).
    const bool child_first = client_report_.child > client_report_.pid;
    EXPECT_EQ(Describe(shared), child_first ? absl::StrCat("tso-child/", client_report_.child)
                                            : absl::StrCat("tso-client/", client_report_.pid));
    EXPECT_EQ(Describe(alone), absl::StrCat("tso-client/", client_report_.pid));
    EXPECT_NE(listener->cgroup_id, 0u);
  }

  uint64_t netns_ = 0;
  std::unique_ptr<Forked> server_;
  std::unique_ptr<Forked> client_;
  Report server_report_;
  Report client_report_;
};

TEST_F(SocketOwnersIntegrationTest, BpfIteratorNamesEveryOwner) {
  for (const bool compat : {false, true}) {
    SCOPED_TRACE(compat ? "probe-read variant (5.8+)" : "direct-read variant (5.11+)");
    absl::StatusOr<std::unique_ptr<SocketOwners>> owners = OpenBpfSocketOwners(compat);
    ASSERT_TRUE(owners.ok()) << owners.status();
    EXPECT_STREQ((*owners)->mode(), "bpf");
    absl::StatusOr<OwnerTable> table = (*owners)->Scan();
    ASSERT_TRUE(table.ok()) << table.status();
    ExpectOwners(*table);
    // Listeners by (netns, port), for server handshakes that have no process.
    auto listener = table->listeners.find(ListenerKey{netns_, server_report_.port});
    ASSERT_NE(listener, table->listeners.end());
    EXPECT_EQ(listener->second->pid, static_cast<uint32_t>(server_report_.pid));
    // A second scan (a new iterator file on the same link) sees the same.
    absl::StatusOr<OwnerTable> again = (*owners)->Scan();
    ASSERT_TRUE(again.ok());
    ExpectOwners(*again);
  }
}

TEST_F(SocketOwnersIntegrationTest, ProcWalkNamesEveryOwner) {
  absl::StatusOr<OwnerTable> table = NewProcSocketOwners()->Scan();
  ASSERT_TRUE(table.ok()) << table.status();
  ExpectOwners(*table);
}

TEST_F(SocketOwnersIntegrationTest, BothScansGiveTheCgroupV2Id) {
  // The server moves to a cgroup of its own: both scans must give that directory's inode, which
  // is the id bpf_get_current_cgroup_id() reports for it.
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::stringstream text;
  text << mountinfo.rdbuf();
  const std::string mount = Cgroup2MountPoint(text.str());
  ASSERT_FALSE(mount.empty()) << "no cgroup2 mount";
  const std::string dir = absl::StrCat(mount, "/tcpscope-owners-test-", getpid());
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << dir << ": " << strerror(errno);
  struct stat info {};
  ASSERT_EQ(stat(dir.c_str(), &info), 0);
  std::ofstream(dir + "/cgroup.procs") << server_report_.pid << std::endl;
  absl::StatusOr<std::unique_ptr<SocketOwners>> bpf = OpenBpfSocketOwners();
  ASSERT_TRUE(bpf.ok()) << bpf.status();
  absl::StatusOr<std::unique_ptr<SocketOwners>> compat = OpenBpfSocketOwners(/*compat=*/true);
  ASSERT_TRUE(compat.ok()) << compat.status();
  absl::StatusOr<OwnerTable> from_bpf = (*bpf)->Scan();
  absl::StatusOr<OwnerTable> from_compat = (*compat)->Scan();
  absl::StatusOr<OwnerTable> from_proc = NewProcSocketOwners()->Scan();
  // Back to the root cgroup, so the directory can go.
  std::ofstream(mount + "/cgroup.procs") << server_report_.pid << std::endl;
  rmdir(dir.c_str());
  ASSERT_TRUE(from_bpf.ok() && from_compat.ok() && from_proc.ok());
  const uint64_t listener = server_report_.inodes[0];
  ASSERT_TRUE(from_compat->sockets.contains(listener));
  EXPECT_EQ(from_compat->sockets.at(listener)->cgroup_id, info.st_ino);
  ASSERT_TRUE(from_bpf->sockets.contains(listener) && from_proc->sockets.contains(listener));
  EXPECT_EQ(from_bpf->sockets.at(listener)->cgroup_id, info.st_ino);
  EXPECT_EQ(from_proc->sockets.at(listener)->cgroup_id, info.st_ino);
  const uint64_t client = client_report_.inodes[1];
  ASSERT_TRUE(from_bpf->sockets.contains(client) && from_proc->sockets.contains(client));
  EXPECT_NE(from_bpf->sockets.at(client)->cgroup_id, info.st_ino);
  EXPECT_EQ(from_bpf->sockets.at(client)->cgroup_id, from_proc->sockets.at(client)->cgroup_id);
}

TEST_F(SocketOwnersIntegrationTest, DumpedEndsCarryTheirOwners) {
  absl::StatusOr<std::unique_ptr<SockDiagDumper>> dumper = SockDiagDumper::Open("");
  ASSERT_TRUE(dumper.ok()) << dumper.status();
  absl::StatusOr<std::vector<SocketRecord>> dump = (*dumper)->Dump();
  ASSERT_TRUE(dump.ok()) << dump.status();
  absl::StatusOr<std::unique_ptr<SocketOwners>> bpf = OpenBpfSocketOwners();
  ASSERT_TRUE(bpf.ok()) << bpf.status();
  absl::StatusOr<OwnerTable> table = (*bpf)->Scan();
  ASSERT_TRUE(table.ok());
  ConnectionTracker tracker((*dumper)->netns_inode());
  TrackerUpdate update = tracker.Update(*dump, absl::Now(), &*table);
  const uint32_t port = server_report_.port;
  int client_ends = 0, server_ends = 0;
  for (const v1::Connection& connection : update.snapshot.connections()) {
    if (connection.endpoints().remote_port() == port) {
      ++client_ends;
      EXPECT_EQ(connection.role(), v1::ROLE_CLIENT);
      EXPECT_EQ(connection.origin().pid(),
                static_cast<uint32_t>(std::max(client_report_.pid, client_report_.child)));
    } else if (connection.endpoints().local_port() == port) {
      ++server_ends;
      EXPECT_EQ(connection.role(), v1::ROLE_SERVER);
      EXPECT_EQ(connection.origin().pid(), static_cast<uint32_t>(server_report_.pid));
      EXPECT_EQ(connection.origin().command(), "tso-server");
    }
  }
  EXPECT_EQ(client_ends, 1);
  EXPECT_EQ(server_ends, 1);
}

}  // namespace
}  // namespace tcpscope::agent
