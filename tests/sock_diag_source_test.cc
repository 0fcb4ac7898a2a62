// SockDiagDumper against the running kernel: real loopback connections in the current network
// namespace must come back with the right states, ports, timers and cookies.
#include "agent/sock_diag_source.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tcpscope::agent {
namespace {

using ::testing::HasSubstr;

constexpr uint8_t kEstablished = 1;
constexpr uint8_t kTimeWaitState = 6;
constexpr uint8_t kListen = 10;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    Reset();
    fd_ = std::exchange(other.fd_, -1);
    return *this;
  }
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

struct Endpoint {
  std::array<uint8_t, 16> address{};
  uint16_t port = 0;
};

socklen_t FillSockaddr(int family, uint16_t port, sockaddr_storage* storage) {
  std::memset(storage, 0, sizeof(*storage));
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(storage);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin->sin_port = htons(port);
    return sizeof(*sin);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(storage);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_addr = in6addr_loopback;
  sin6->sin6_port = htons(port);
  return sizeof(*sin6);
}

Endpoint LocalEndpoint(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof(storage);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length), 0) << strerror(errno);
  Endpoint endpoint;
  if (storage.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&storage);
    std::memcpy(endpoint.address.data(), &sin->sin_addr, 4);
    endpoint.port = ntohs(sin->sin_port);
  } else {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    std::memcpy(endpoint.address.data(), &sin6->sin6_addr, 16);
    endpoint.port = ntohs(sin6->sin6_port);
  }
  return endpoint;
}

// Loopback listener on an ephemeral port; nullopt when the family is unavailable (no IPv6).
std::optional<Fd> Listen(int family) {
  Fd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return std::nullopt;
  sockaddr_storage storage;
  const socklen_t length = FillSockaddr(family, 0, &storage);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&storage), length) != 0) return std::nullopt;
  if (listen(fd.get(), 8) != 0) return std::nullopt;
  return fd;
}

Fd Connect(int family, uint16_t port, bool keepalive) {
  Fd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_GE(fd.get(), 0) << strerror(errno);
  if (keepalive) {
    const int one = 1;
    const int idle_seconds = 600;
    EXPECT_EQ(setsockopt(fd.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)), 0);
    EXPECT_EQ(setsockopt(fd.get(), IPPROTO_TCP, TCP_KEEPIDLE, &idle_seconds, sizeof(idle_seconds)),
              0);
  }
  sockaddr_storage storage;
  const socklen_t length = FillSockaddr(family, port, &storage);
  EXPECT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&storage), length), 0) << strerror(errno);
  return fd;
}

Fd Accept(int listener) {
  Fd fd(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_GE(fd.get(), 0) << strerror(errno);
  return fd;
}

// Records of sockets of `family` that involve `port` on either side.
std::vector<SocketRecord> RecordsFor(const std::vector<SocketRecord>& records, int family,
                                     uint16_t port) {
  std::vector<SocketRecord> matching;
  for (const SocketRecord& record : records) {
    if (record.family == family && (record.local_port == port || record.remote_port == port)) {
      matching.push_back(record);
    }
  }
  return matching;
}

// As RecordsFor, minus TIME_WAIT leftovers: an ephemeral port can be reused while an earlier
// connection to it (from another test or process) still lingers for 60 s.
std::vector<SocketRecord> LiveRecordsFor(const std::vector<SocketRecord>& records, int family,
                                         uint16_t port) {
  std::vector<SocketRecord> live;
  for (const SocketRecord& record : RecordsFor(records, family, port)) {
    if (record.timer != DiagTimer::kTimeWait) live.push_back(record);
  }
  return live;
}

const SocketRecord* FindByLocal(const std::vector<SocketRecord>& records, const Endpoint& local,
                                uint16_t remote_port) {
  for (const SocketRecord& record : records) {
    if (record.local_port == local.port && record.remote_port == remote_port &&
        record.local_address == local.address) {
      return &record;
    }
  }
  return nullptr;
}

uint64_t CurrentNetnsInode() {
  struct stat st;
  EXPECT_EQ(stat("/proc/self/ns/net", &st), 0) << strerror(errno);
  return st.st_ino;
}

// A listener, a client and the accepted server end for one address family.
struct Connection {
  Fd listener;
  Fd client;
  Fd server;
  Endpoint listen_endpoint;
  Endpoint client_endpoint;
};

std::optional<Connection> MakeConnection(int family, bool keepalive) {
  std::optional<Fd> listener = Listen(family);
  if (!listener) return std::nullopt;
  Connection c;
  c.listener = std::move(*listener);
  c.listen_endpoint = LocalEndpoint(c.listener.get());
  c.client = Connect(family, c.listen_endpoint.port, keepalive);
  c.server = Accept(c.listener.get());
  c.client_endpoint = LocalEndpoint(c.client.get());
  return c;
}

void ExpectConnectionRecords(const std::vector<SocketRecord>& all, int family, const Connection& c,
                             DiagTimer client_timer, std::set<uint64_t>* cookies) {
  SCOPED_TRACE(family == AF_INET ? "IPv4" : "IPv6");
  const std::vector<SocketRecord> records = LiveRecordsFor(all, family, c.listen_endpoint.port);
  ASSERT_EQ(records.size(), 3u) << "expected listener, client and server end";

  const SocketRecord* listener = FindByLocal(records, c.listen_endpoint, 0);
  const SocketRecord* client = FindByLocal(records, c.client_endpoint, c.listen_endpoint.port);
  const SocketRecord* server = FindByLocal(records, c.listen_endpoint, c.client_endpoint.port);
  ASSERT_NE(listener, nullptr);
  ASSERT_NE(client, nullptr);
  ASSERT_NE(server, nullptr);

  EXPECT_EQ(listener->state, kListen);
  EXPECT_EQ(listener->remote_address, (std::array<uint8_t, 16>{}));
  EXPECT_EQ(listener->timer, DiagTimer::kNone);

  EXPECT_EQ(client->state, kEstablished);
  EXPECT_EQ(client->remote_address, c.listen_endpoint.address);
  EXPECT_EQ(client->timer, client_timer);
  if (client_timer == DiagTimer::kKeepalive) {
    EXPECT_GT(client->timer_expires_ms, 0u);
    EXPECT_LE(client->timer_expires_ms, 600u * 1000u);
    EXPECT_EQ(client->timer_retrans, 0);
  }

  EXPECT_EQ(server->state, kEstablished);
  EXPECT_EQ(server->remote_address, c.client_endpoint.address);
  EXPECT_EQ(server->timer, DiagTimer::kNone);

  for (const SocketRecord* record : {listener, client, server}) {
    EXPECT_EQ(record->address_length(), family == AF_INET ? 4u : 16u);
    EXPECT_NE(record->cookie, 0u);
    EXPECT_TRUE(cookies->insert(record->cookie).second) << "duplicate cookie " << record->cookie;
    EXPECT_NE(record->inode, 0u);
    EXPECT_EQ(record->uid, geteuid());
    ASSERT_TRUE(record->tcp_info.has_value());
    EXPECT_EQ(record->tcp_info->state, record->state);
  }
  EXPECT_GT(client->tcp_info->rtt_us, 0u);
  EXPECT_GT(client->tcp_info->segs_out, 0u);
}

TEST(SockDiagSourceTest, DumpsLoopbackConnectionsInCurrentNamespace) {
  std::optional<Connection> v4 = MakeConnection(AF_INET, /*keepalive=*/true);
  ASSERT_TRUE(v4.has_value()) << "cannot listen on 127.0.0.1";
  std::optional<Connection> v6 = MakeConnection(AF_INET6, /*keepalive=*/false);

  auto dumper = SockDiagDumper::Open("");
  ASSERT_TRUE(dumper.ok()) << dumper.status();
  EXPECT_EQ((*dumper)->netns_inode(), CurrentNetnsInode());

  auto records = (*dumper)->Dump();
  ASSERT_TRUE(records.ok()) << records.status();
  std::set<uint64_t> cookies;
  ExpectConnectionRecords(*records, AF_INET, *v4, DiagTimer::kKeepalive, &cookies);
  if (!v6) GTEST_SKIP() << "IPv6 loopback unavailable here; checked IPv4 only";
  ExpectConnectionRecords(*records, AF_INET6, *v6, DiagTimer::kNone, &cookies);
  EXPECT_EQ(cookies.size(), 6u);

  // A second dump on the same socket sees the same sockets under the same cookies.
  auto again = (*dumper)->Dump();
  ASSERT_TRUE(again.ok()) << again.status();
  std::set<uint64_t> cookies_again;
  for (int family : {AF_INET, AF_INET6}) {
    const Connection& c = family == AF_INET ? *v4 : *v6;
    for (const SocketRecord& r : LiveRecordsFor(*again, family, c.listen_endpoint.port)) {
      cookies_again.insert(r.cookie);
    }
  }
  EXPECT_EQ(cookies_again, cookies);
}

// The connection tracker follows a connection from ESTABLISHED into TIME_WAIT by cookie.
TEST(SockDiagSourceTest, TimeWaitKeepsCookie) {
  std::optional<Connection> c = MakeConnection(AF_INET, /*keepalive=*/false);
  ASSERT_TRUE(c.has_value());
  auto dumper = SockDiagDumper::Open("");
  ASSERT_TRUE(dumper.ok()) << dumper.status();

  auto before = (*dumper)->Dump();
  ASSERT_TRUE(before.ok()) << before.status();
  const std::vector<SocketRecord> records =
      LiveRecordsFor(*before, AF_INET, c->listen_endpoint.port);
  const SocketRecord* client = FindByLocal(records, c->client_endpoint, c->listen_endpoint.port);
  ASSERT_NE(client, nullptr);
  const uint64_t cookie = client->cookie;

  c->client.Reset();  // active close: the client end ends up in TIME_WAIT
  c->server.Reset();
  std::optional<SocketRecord> time_wait;
  for (int attempt = 0; attempt < 100 && !time_wait; ++attempt) {
    auto after = (*dumper)->Dump();
    ASSERT_TRUE(after.ok()) << after.status();
    const auto now = RecordsFor(*after, AF_INET, c->listen_endpoint.port);
    const SocketRecord* record = FindByLocal(now, c->client_endpoint, c->listen_endpoint.port);
    if (record != nullptr && record->state == kTimeWaitState) time_wait = *record;
    if (!time_wait) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(time_wait.has_value()) << "client never reached TIME_WAIT";
  EXPECT_EQ(time_wait->cookie, cookie);
  EXPECT_EQ(time_wait->timer, DiagTimer::kTimeWait);
  EXPECT_EQ(time_wait->inode, 0u);
  EXPECT_FALSE(time_wait->tcp_info.has_value());
}

TEST(SockDiagSourceTest, OpenByNamespacePath) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "entering a network namespace with setns() needs root (CAP_SYS_ADMIN)";
  }
  auto dumper = SockDiagDumper::Open("/proc/self/ns/net");
  if (!dumper.ok() && absl::IsPermissionDenied(dumper.status())) {
    GTEST_SKIP() << "root without CAP_SYS_ADMIN cannot setns(): " << dumper.status();
  }
  ASSERT_TRUE(dumper.ok()) << dumper.status();
  EXPECT_EQ((*dumper)->netns_inode(), CurrentNetnsInode());

  std::optional<Fd> listener = Listen(AF_INET);
  ASSERT_TRUE(listener.has_value());
  const Endpoint endpoint = LocalEndpoint(listener->get());
  auto records = (*dumper)->Dump();
  ASSERT_TRUE(records.ok()) << records.status();
  const std::vector<SocketRecord> mine = LiveRecordsFor(*records, AF_INET, endpoint.port);
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0].state, kListen);
}

TEST(SockDiagSourceTest, OpenMissingNamespaceFails) {
  auto dumper = SockDiagDumper::Open("/nonexistent");
  ASSERT_FALSE(dumper.ok());
  EXPECT_EQ(dumper.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(dumper.status().message(), HasSubstr("/nonexistent"));
  EXPECT_THAT(dumper.status().message(), HasSubstr("No such file or directory"));
}

TEST(SockDiagSourceTest, OpenNonNamespaceFileFails) {
  auto dumper = SockDiagDumper::Open("/dev/null");
  ASSERT_FALSE(dumper.ok());
  EXPECT_THAT(dumper.status().message(), HasSubstr("setns"));
  EXPECT_THAT(dumper.status().message(), HasSubstr("/dev/null"));
}

}  // namespace
}  // namespace tcpscope::agent
