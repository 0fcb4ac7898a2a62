// The iter/tcp iterator against the sock_diag dump, on the same real sockets: a namespace this
// test creates holds sockets in many states (listeners and connections over IPv4, IPv6 and
// v4-mapped IPv6, data left unread, a full send queue, keepalive, FIN_WAIT2 and CLOSE_WAIT,
// TIME_WAIT, another uid), and the iterator's record of each must equal sock_diag's, field by
// field. Fields that count time (timer expiry, last_data_* ms) must lie between two sock_diag
// dumps taken before and after the iterator's. Then both collectors over every namespace must
// find the same connections of that namespace. Needs root (BPF, setns); in CI
// (TCPSCOPE_REQUIRE_ROOT_TESTS=1) it must run.
#include "agent/tcp_socket_iterator.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/snapshot_collector.h"
#include "agent/sock_diag_netlink.h"
#include "gtest/gtest.h"
#include "tests/harness/netns.h"

namespace tcpscope::agent {
namespace {

constexpr uint32_t kOtherUid = 4321;
constexpr int kAttempts = 5;

// The sockets of the test, created inside the namespace; closed at the end.
class Sockets {
 public:
  ~Sockets() {
    for (int fd : fds_) close(fd);
  }

  // A listener on `address` (IPv4 or IPv6 text), any port; returns its fd.
  int Listen(int family, const char* address) {
    const int fd = Keep(socket(family, SOCK_STREAM, 0));
    sockaddr_storage storage = Address(family, address, 0);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&storage), sizeof(storage)), 0);
    EXPECT_EQ(listen(fd, 64), 0);
    return fd;
  }

  // A connection to `listener` from a socket of `family` to `address`; {client, server}.
  std::pair<int, int> Connect(int listener, int family, const char* address) {
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    EXPECT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &length), 0);
    const uint16_t port = bound.ss_family == AF_INET
                              ? ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port)
                              : ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
    const int client = Keep(socket(family, SOCK_STREAM, 0));
    sockaddr_storage target = Address(family, address, port);
    EXPECT_EQ(connect(client, reinterpret_cast<sockaddr*>(&target), sizeof(target)), 0)
        << strerror(errno);
    const int server = Keep(accept(listener, nullptr, nullptr));
    return {client, server};
  }

  int Keep(int fd) {
    EXPECT_GE(fd, 0) << strerror(errno);
    fds_.push_back(fd);
    return fd;
  }
  void Close(int fd) {
    fds_.erase(std::remove(fds_.begin(), fds_.end(), fd), fds_.end());
    close(fd);
  }

 private:
  static sockaddr_storage Address(int family, const char* text, uint16_t port) {
    sockaddr_storage storage{};
    if (family == AF_INET) {
      auto* in = reinterpret_cast<sockaddr_in*>(&storage);
      in->sin_family = AF_INET;
      in->sin_port = htons(port);
      inet_pton(AF_INET, text, &in->sin_addr);
    } else {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons(port);
      inet_pton(AF_INET6, text, &in6->sin6_addr);
    }
    return storage;
  }

  std::vector<int> fds_;
};

void SetInt(int fd, int level, int option, int value) {
  EXPECT_EQ(setsockopt(fd, level, option, &value, sizeof(value)), 0) << strerror(errno);
}

// Sets up one of each kind of socket the snapshots meet. Runs inside the namespace.
void MakeSockets(Sockets& sockets) {
  const int listener4 = sockets.Listen(AF_INET, "127.0.0.1");
  const int listener6 = sockets.Listen(AF_INET6, "::");

  // Established, quiet, with keepalive on the client (sk_timer pending: timer 2).
  auto [keepalive_client, keepalive_server] = sockets.Connect(listener4, AF_INET, "127.0.0.1");
  SetInt(keepalive_client, SOL_SOCKET, SO_KEEPALIVE, 1);
  (void)keepalive_server;

  // IPv6, data both ways, some left unread (recv_queue).
  auto [client6, server6] = sockets.Connect(listener6, AF_INET6, "::1");
  ASSERT_EQ(write(client6, "hello", 5), 5);
  char buffer[8];
  ASSERT_EQ(read(server6, buffer, 5), 5);
  ASSERT_EQ(write(server6, "unread data", 11), 11);

  // IPv4 through an IPv6 socket (v4-mapped addresses).
  auto [mapped_client, mapped_server] = sockets.Connect(listener6, AF_INET6, "::ffff:127.0.0.1");
  (void)mapped_client;
  (void)mapped_server;

  // A receiver that never reads: the sender's queue fills and the zero-window probe timer runs.
  auto [stuffer, stuffed] = sockets.Connect(listener4, AF_INET, "127.0.0.1");
  SetInt(stuffed, SOL_SOCKET, SO_RCVBUF, 4096);
  SetInt(stuffer, SOL_SOCKET, SO_SNDBUF, 65536);
  const int flags = MSG_DONTWAIT;
  std::vector<char> block(16384, 'x');
  for (int i = 0; i < 1000 && send(stuffer, block.data(), block.size(), flags) > 0; ++i) {
  }

  // FIN_WAIT2 and CLOSE_WAIT: the client shut its side, the server did not.
  auto [half_client, half_server] = sockets.Connect(listener4, AF_INET, "127.0.0.1");
  ASSERT_EQ(shutdown(half_client, SHUT_WR), 0);
  (void)half_server;

  // TIME_WAIT: both closed, the client first.
  auto [gone_client, gone_server] = sockets.Connect(listener4, AF_INET, "127.0.0.1");
  sockets.Close(gone_client);
  absl::SleepFor(absl::Milliseconds(20));
  sockets.Close(gone_server);

  // A connection made by another uid (sk_uid is the creator's fsuid; setfsuid is per thread).
  syscall(SYS_setfsuid, kOtherUid);
  const int other_listener = sockets.Listen(AF_INET, "127.0.0.1");
  auto [other_client, other_server] = sockets.Connect(other_listener, AF_INET, "127.0.0.1");
  syscall(SYS_setfsuid, 0);
  (void)other_client;
  (void)other_server;
  absl::SleepFor(absl::Milliseconds(50));  // let the FINs and the window settle
}

absl::flat_hash_map<uint64_t, SocketRecord> ByCookie(const std::vector<SocketRecord>& records) {
  absl::flat_hash_map<uint64_t, SocketRecord> out;
  for (const SocketRecord& record : records) out.emplace(record.cookie, record);
  return out;
}

// `value` lies between `a` and `b`, whichever order time put them in.
bool Between(uint32_t value, uint32_t a, uint32_t b) {
  return std::min(a, b) <= value && value <= std::max(a, b);
}

// The record with its time-counting fields cleared, for exact comparison of the rest.
SocketRecord Timeless(SocketRecord record) {
  record.timer_expires_ms = 0;
  if (record.tcp_info.has_value()) {
    record.tcp_info->last_data_sent_ms = 0;
    record.tcp_info->last_data_recv_ms = 0;
    record.tcp_info->last_ack_recv_ms = 0;
  }
  return record;
}

std::string Describe(const SocketRecord& r) {
  std::string text =
      absl::StrCat("family=", r.family, " state=", r.state, " timer=", static_cast<int>(r.timer),
                   "/", r.timer_retrans, "/", r.timer_expires_ms, "ms ports=", r.local_port, "->",
                   r.remote_port, " cookie=", r.cookie, " rq=", r.recv_queue, " wq=", r.send_queue,
                   " uid=", r.uid, " inode=", r.inode);
  for (const auto& address : {r.local_address, r.remote_address}) {
    absl::StrAppend(&text, " addr=");
    for (uint8_t byte : address) absl::StrAppend(&text, absl::Hex(byte, absl::kZeroPad2));
  }
  if (r.tcp_info.has_value()) {
    const TcpInfo& i = *r.tcp_info;
    absl::StrAppend(&text, " info{state=", i.state, " probes=", i.probes, " backoff=", i.backoff,
                    " rtt=", i.rtt_us, "/", i.rttvar_us, " last=", i.last_data_sent_ms, "/",
                    i.last_data_recv_ms, "/", i.last_ack_recv_ms, " retrans=", i.total_retrans,
                    " segs=", i.segs_out, "/", i.segs_in, " bytes=", i.bytes_acked, "/",
                    i.bytes_received, "}");
  } else {
    absl::StrAppend(&text, " no info");
  }
  return text;
}

bool SameInfo(const TcpInfo& a, const TcpInfo& b) {
  return a.state == b.state && a.probes == b.probes && a.backoff == b.backoff &&
         a.rtt_us == b.rtt_us && a.rttvar_us == b.rttvar_us &&
         a.last_data_sent_ms == b.last_data_sent_ms && a.last_data_recv_ms == b.last_data_recv_ms &&
         a.last_ack_recv_ms == b.last_ack_recv_ms && a.total_retrans == b.total_retrans &&
         a.segs_out == b.segs_out && a.segs_in == b.segs_in && a.bytes_acked == b.bytes_acked &&
         a.bytes_received == b.bytes_received;
}

bool SameRecord(const SocketRecord& a, const SocketRecord& b) {
  return a.family == b.family && a.state == b.state && a.timer == b.timer &&
         a.timer_retrans == b.timer_retrans && a.timer_expires_ms == b.timer_expires_ms &&
         a.local_address == b.local_address && a.remote_address == b.remote_address &&
         a.local_port == b.local_port && a.remote_port == b.remote_port && a.cookie == b.cookie &&
         a.recv_queue == b.recv_queue && a.send_queue == b.send_queue && a.uid == b.uid &&
         a.inode == b.inode && a.tcp_info.has_value() == b.tcp_info.has_value() &&
         (!a.tcp_info.has_value() || SameInfo(*a.tcp_info, *b.tcp_info));
}

// Whether `iterated` is what sock_diag said, given sock_diag's dumps `before` and `after`.
bool Matches(const SocketRecord& iterated, const SocketRecord& before, const SocketRecord& after) {
  if (!SameRecord(Timeless(iterated), Timeless(before))) return false;
  if (!Between(iterated.timer_expires_ms, before.timer_expires_ms, after.timer_expires_ms)) {
    return false;
  }
  if (!iterated.tcp_info.has_value()) return true;
  const TcpInfo &i = *iterated.tcp_info, &b = *before.tcp_info, &a = *after.tcp_info;
  return Between(i.last_data_sent_ms, b.last_data_sent_ms, a.last_data_sent_ms) &&
         Between(i.last_data_recv_ms, b.last_data_recv_ms, a.last_data_recv_ms) &&
         Between(i.last_ack_recv_ms, b.last_ack_recv_ms, a.last_ack_recv_ms);
}

class TcpSocketIteratorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TCPSCOPE_REQUIRE_ROOT();
    absl::StatusOr<std::shared_ptr<TcpSocketIterator>> iterator = TcpSocketIterator::Load();
    if (!iterator.ok()) {
      if (testing::RootTestsRequired()) FAIL() << iterator.status();
      GTEST_SKIP() << "the iter/tcp iterator does not load here: " << iterator.status();
    }
    iterator_ = *std::move(iterator);
    auto netns = testing::TestNetns::Create("iter");
    ASSERT_TRUE(netns.ok()) << netns.status();
    netns_ = *std::move(netns);
    sockets_ = std::make_unique<Sockets>();
    ASSERT_TRUE(netns_->RunInside([this] { MakeSockets(*sockets_); }).ok());
    ASSERT_FALSE(HasFatalFailure());
  }
  void TearDown() override {
    sockets_.reset();
    netns_.reset();
  }

  std::shared_ptr<TcpSocketIterator> iterator_;
  std::unique_ptr<testing::TestNetns> netns_;
  std::unique_ptr<Sockets> sockets_;
};

TEST_F(TcpSocketIteratorTest, RecordsEqualSockDiagsForEverySocket) {
  auto netlink = SockDiagDumper::Open(netns_->path());
  ASSERT_TRUE(netlink.ok()) << netlink.status();
  auto iter = IterSocketDumper::Open(iterator_, netns_->path());
  ASSERT_TRUE(iter.ok()) << iter.status();
  EXPECT_EQ((*iter)->netns_inode(), (*netlink)->netns_inode());

  // A socket may change between dumps (a window update, a probe): then try again.
  std::vector<std::string> mismatches;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    auto before = (*netlink)->Dump();
    auto iterated = (*iter)->Dump();
    auto after = (*netlink)->Dump();
    ASSERT_TRUE(before.ok() && iterated.ok() && after.ok());
    const auto before_by = ByCookie(*before), after_by = ByCookie(*after);
    const auto iter_by = ByCookie(*iterated);
    mismatches.clear();
    // 2 listeners + the other uid's, 6 connections of 2 ends, TIME_WAIT: 16 sockets, in
    // sock_diag's order (IPv4 then IPv6) for neither; counted by cookie.
    if (before->size() != 16 || after->size() != 16 || iterated->size() != 16) {
      mismatches.push_back(
          absl::StrCat("sizes ", before->size(), " ", iterated->size(), " ", after->size()));
    }
    for (const auto& [cookie, record] : before_by) {
      auto it = iter_by.find(cookie);
      auto later = after_by.find(cookie);
      if (it == iter_by.end() || later == after_by.end()) {
        mismatches.push_back(absl::StrCat("missing: ", Describe(record)));
        continue;
      }
      if (!Matches(it->second, record, later->second)) {
        mismatches.push_back(absl::StrCat("sock_diag: ", Describe(record),
                                          "\n  iterator:  ", Describe(it->second),
                                          "\n  sock_diag: ", Describe(later->second)));
      }
    }
    if (mismatches.empty()) {
      // Every state and timer of the setup was seen, so each branch was compared.
      absl::flat_hash_set<int> states, timers;
      bool other_uid = false, unread = false, unsent = false, mapped = false;
      for (const SocketRecord& record : *iterated) {
        states.insert(record.state);
        timers.insert(static_cast<int>(record.timer));
        other_uid |= record.uid == kOtherUid;
        unread |= record.recv_queue > 0 && record.state == 1;
        unsent |= record.send_queue > 0;
        mapped |= record.family == AF_INET6 && record.local_address[10] == 0xff;
      }
      EXPECT_EQ(states, (absl::flat_hash_set<int>{1, 5, 6, 8, 10}));  // EST FW2 TW CW LISTEN
      // The stuffed connection's sender waits on a retransmission (1) or a zero-window probe
      // (4), depending on how far loopback got.
      EXPECT_TRUE(timers.contains(1) || timers.contains(4));
      timers.erase(1);
      timers.erase(4);
      EXPECT_EQ(timers, (absl::flat_hash_set<int>{0, 2, 3}));
      EXPECT_TRUE(other_uid && unread && unsent && mapped);
      return;
    }
  }
  for (const std::string& mismatch : mismatches) ADD_FAILURE() << mismatch;
}

// Both collectors, over every namespace of the kernel, find the test namespace and the same
// connections in it.
TEST_F(TcpSocketIteratorTest, SeesTheNamespacesSockDiagSees) {
  auto by_netlink = SnapshotCollector::ForAllNamespaces();
  auto by_iterator = SnapshotCollector::ForAllNamespaces(
      {}, [this](const std::string& path) { return IterSocketDumper::Open(iterator_, path); });
  auto netlink = SockDiagDumper::Open(netns_->path());
  ASSERT_TRUE(netlink.ok());
  const uint64_t inode = (*netlink)->netns_inode();
  auto connections_in_test_netns = [inode](const SnapshotCollector::Result& result) {
    absl::flat_hash_set<uint64_t> ids;
    for (const v1::Connection& connection : result.snapshot.connections()) {
      if (connection.origin().netns_inode() == inode) ids.insert(connection.connection_id());
    }
    return ids;
  };
  const SnapshotCollector::Result from_netlink = by_netlink->Collect(absl::Now());
  const SnapshotCollector::Result from_iterator = by_iterator->Collect(absl::Now());
  EXPECT_EQ(from_iterator.namespaces, from_netlink.namespaces);
  EXPECT_EQ(from_iterator.failed_namespaces, 0u);
  const absl::flat_hash_set<uint64_t> ids = connections_in_test_netns(from_iterator);
  EXPECT_EQ(ids.size(), 13u);  // 6 connections of 2 ends and the TIME_WAIT
  EXPECT_EQ(ids, connections_in_test_netns(from_netlink));
}

}  // namespace
}  // namespace tcpscope::agent
