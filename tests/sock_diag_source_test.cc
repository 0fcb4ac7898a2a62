// The sock_diag source and its netlink parts (SockDiagDumper, SockDiagDestroyListener) against
// the running kernel: real loopback connections in the current network namespace must come back
// with the right states, ports, timers and cookies.
#include "agent/sock_diag_source.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/agent_metrics.h"
#include "agent/host_identity.h"
#include "agent/sock_diag_netlink.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness/netns.h"

namespace tcpscope::agent {
namespace {

using ::testing::HasSubstr;

constexpr uint8_t kEstablished = 1;
constexpr uint8_t kTimeWaitState = 6;
constexpr uint8_t kListen = 10;
constexpr uint8_t kClose = 7;

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

TEST(SockDiagDumperTest, DumpsLoopbackConnectionsInCurrentNamespace) {
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
TEST(SockDiagDumperTest, TimeWaitKeepsCookie) {
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

TEST(SockDiagDumperTest, OpenByNamespacePath) {
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

// The cookie is the namespace's identity for the boot id of a --netns agent: one per namespace,
// and new for a namespace deleted and created again under the same name (a "rebooted" host),
// where the inode may be reused.
TEST(SockDiagDumperTest, NamespaceCookieIdentifiesTheNamespaceAcrossRecreation) {
  TCPSCOPE_REQUIRE_ROOT();
  auto cookie_of = [](const std::string& path) -> uint64_t {
    auto dumper = SockDiagDumper::Open(path);
    EXPECT_TRUE(dumper.ok()) << dumper.status();
    return dumper.ok() ? (*dumper)->netns_cookie() : 0;
  };
  auto a = testing::TestNetns::Create("cookie-a");
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = testing::TestNetns::Create("cookie-b");
  ASSERT_TRUE(b.ok()) << b.status();
  const uint64_t cookie_a = cookie_of((*a)->path());
  const uint64_t cookie_b = cookie_of((*b)->path());
  ASSERT_NE(cookie_a, 0u);
  ASSERT_NE(cookie_b, 0u);
  EXPECT_NE(cookie_a, cookie_b);
  EXPECT_EQ(cookie_of((*a)->path()), cookie_a);

  // Our own namespace: the same cookie as a plain socket of this thread reports.
  const Fd plain(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  uint64_t own = 0;
  socklen_t length = sizeof(own);
  ASSERT_EQ(getsockopt(plain.get(), SOL_SOCKET, SO_NETNS_COOKIE, &own, &length), 0)
      << strerror(errno);
  EXPECT_EQ(cookie_of(""), own);
  EXPECT_NE(own, cookie_a);

  const std::string kernel = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
  EXPECT_EQ(NamespaceBootId(kernel, cookie_a), absl::StrCat(kernel, "/netns-", cookie_a));
  EXPECT_NE(NamespaceBootId(kernel, cookie_a), NamespaceBootId(kernel, cookie_b));

  // B "reboots": deleted and created again under the same name and path.
  const std::string path_b = (*b)->path();
  b->reset();
  auto b_again = testing::TestNetns::Create("cookie-b");
  ASSERT_TRUE(b_again.ok()) << b_again.status();
  ASSERT_EQ((*b_again)->path(), path_b);
  const uint64_t cookie_b_again = cookie_of(path_b);
  EXPECT_NE(cookie_b_again, 0u);
  EXPECT_NE(cookie_b_again, cookie_b);
  EXPECT_NE(cookie_b_again, cookie_a);
}

TEST(SockDiagDumperTest, OpenMissingNamespaceFails) {
  auto dumper = SockDiagDumper::Open("/nonexistent");
  ASSERT_FALSE(dumper.ok());
  EXPECT_EQ(dumper.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(dumper.status().message(), HasSubstr("/nonexistent"));
  EXPECT_THAT(dumper.status().message(), HasSubstr("No such file or directory"));
}

TEST(SockDiagDumperTest, OpenNonNamespaceFileFails) {
  auto dumper = SockDiagDumper::Open("/dev/null");
  ASSERT_FALSE(dumper.ok());
  EXPECT_THAT(dumper.status().message(), HasSubstr("setns"));
  EXPECT_THAT(dumper.status().message(), HasSubstr("/dev/null"));
}

uint64_t SocketCookie(int fd) {
  uint64_t cookie = 0;
  socklen_t length = sizeof(cookie);
  EXPECT_EQ(getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &length), 0) << strerror(errno);
  return cookie;
}

// Reads notifications until every cookie in `wanted` was reported or 2 s passed; other
// processes' sockets die meanwhile too, so everything else is ignored.
std::vector<SocketRecord> AwaitDestroyed(SockDiagDestroyListener& listener,
                                         const std::set<uint64_t>& wanted) {
  std::vector<SocketRecord> found;
  std::set<uint64_t> missing = wanted;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!missing.empty() && std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{.fd = listener.fd(), .events = POLLIN, .revents = 0};
    if (poll(&pfd, 1, 100) <= 0) continue;
    auto records = listener.ReadAvailable();
    if (!records.ok()) {
      ADD_FAILURE() << records.status();
      break;
    }
    for (const SocketRecord& record : *records) {
      if (missing.erase(record.cookie) > 0) found.push_back(record);
    }
  }
  return found;
}

const SocketRecord* FindCookie(const std::vector<SocketRecord>& records, uint64_t cookie) {
  for (const SocketRecord& record : records) {
    if (record.cookie == cookie) return &record;
  }
  return nullptr;
}

// No root needed: the kernel lets anyone join the destroy groups of its own namespace
// (sock_diag is NL_CFG_F_NONROOT_RECV), so this runs as any user.
TEST(SockDiagDestroyListenerTest, ReportsAbortedConnectionAtOnce) {
  auto listener = SockDiagDestroyListener::Open("");
  ASSERT_TRUE(listener.ok()) << listener.status();
  EXPECT_EQ((*listener)->netns_inode(), CurrentNetnsInode());
  const int flags = fcntl((*listener)->fd(), F_GETFL);
  EXPECT_TRUE(flags & O_NONBLOCK);

  std::optional<Connection> c = MakeConnection(AF_INET, /*keepalive=*/false);
  ASSERT_TRUE(c.has_value());
  const uint64_t client_cookie = SocketCookie(c->client.get());
  const uint64_t server_cookie = SocketCookie(c->server.get());
  const linger abort_on_close{.l_onoff = 1, .l_linger = 0};
  ASSERT_EQ(
      setsockopt(c->client.get(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof(abort_on_close)),
      0);
  c->client.Reset();  // sends RST: both ends are freed as soon as their fds are closed
  c->server.Reset();

  const std::vector<SocketRecord> found =
      AwaitDestroyed(**listener, {client_cookie, server_cookie});
  const SocketRecord* client = FindCookie(found, client_cookie);
  const SocketRecord* server = FindCookie(found, server_cookie);
  ASSERT_NE(client, nullptr) << "no destroy notification for the client end within 2 s";
  ASSERT_NE(server, nullptr) << "no destroy notification for the server end within 2 s";
  EXPECT_EQ(client->family, AF_INET);
  EXPECT_EQ(client->state, kClose);
  EXPECT_EQ(client->local_port, c->client_endpoint.port);
  // The abort (tcp_disconnect) has already cleared the client's remote port; the server end,
  // reset by its peer, keeps both.
  EXPECT_EQ(server->state, kClose);
  EXPECT_EQ(server->local_port, c->listen_endpoint.port);
  EXPECT_EQ(server->remote_port, c->client_endpoint.port);
  EXPECT_EQ(server->remote_address, c->client_endpoint.address);
  EXPECT_EQ((*listener)->overruns(), 0u);
  EXPECT_EQ((*listener)->malformed(), 0u);
}

// An orderly close: the full socket of the side that closed first is freed when it enters
// TIME_WAIT, and the notification says CLOSE, not TIME_WAIT, but carries the final tcp_info.
TEST(SockDiagDestroyListenerTest, OrderlyIpv6CloseThroughNamespacePath) {
  TCPSCOPE_REQUIRE_ROOT();  // setns() needs CAP_SYS_ADMIN
  // Through the setns() path, naming this same namespace.
  auto listener = SockDiagDestroyListener::Open("/proc/self/ns/net");
  ASSERT_TRUE(listener.ok()) << listener.status();
  EXPECT_EQ((*listener)->netns_inode(), CurrentNetnsInode());

  std::optional<Connection> c = MakeConnection(AF_INET6, /*keepalive=*/false);
  if (!c) GTEST_SKIP() << "IPv6 loopback unavailable here";
  const uint64_t client_cookie = SocketCookie(c->client.get());
  const uint64_t server_cookie = SocketCookie(c->server.get());
  ASSERT_EQ(send(c->client.get(), "hello", 5, 0), 5);
  c->client.Reset();
  c->server.Reset();

  const std::vector<SocketRecord> found =
      AwaitDestroyed(**listener, {client_cookie, server_cookie});
  const SocketRecord* client = FindCookie(found, client_cookie);
  const SocketRecord* server = FindCookie(found, server_cookie);
  ASSERT_NE(client, nullptr) << "no destroy notification for the client end within 2 s";
  ASSERT_NE(server, nullptr) << "no destroy notification for the server end within 2 s";
  EXPECT_EQ(client->family, AF_INET6);
  EXPECT_EQ(client->state, kClose);
  EXPECT_EQ(client->local_port, c->client_endpoint.port);
  EXPECT_EQ(client->remote_port, c->listen_endpoint.port);
  EXPECT_EQ(client->inode, 0u);
  ASSERT_TRUE(client->tcp_info.has_value());
  EXPECT_EQ(client->tcp_info->state, kClose);
  EXPECT_GE(client->tcp_info->bytes_acked, 5u);
  ASSERT_TRUE(server->tcp_info.has_value());
  EXPECT_GE(server->tcp_info->bytes_received, 5u);
}

// When notifications come faster than they are read the kernel drops them and reports ENOBUFS
// once; the listener counts that and keeps delivering.
TEST(SockDiagDestroyListenerTest, OverrunIsCountedAndListeningGoesOn) {
  auto listener = SockDiagDestroyListener::Open("");
  ASSERT_TRUE(listener.ok()) << listener.status();
  const int tiny = 1;  // the kernel rounds this up to its minimum, a couple of messages
  ASSERT_EQ(setsockopt((*listener)->fd(), SOL_SOCKET, SO_RCVBUF, &tiny, sizeof(tiny)), 0)
      << strerror(errno);
  std::optional<Fd> server_listener = Listen(AF_INET);
  ASSERT_TRUE(server_listener.has_value());
  const uint16_t port = LocalEndpoint(server_listener->get()).port;
  for (int i = 0; i < 50; ++i) {
    Fd client = Connect(AF_INET, port, /*keepalive=*/false);
    Fd server = Accept(server_listener->get());
  }
  // The kernel frees sockets from a workqueue; give it time to overflow the buffer.
  for (int i = 0; i < 100 && (*listener)->overruns() == 0; ++i) {
    pollfd pfd{.fd = (*listener)->fd(), .events = 0, .revents = 0};
    if (poll(&pfd, 1, 20) > 0 && (pfd.revents & POLLERR)) {
      auto records = (*listener)->ReadAvailable();
      ASSERT_TRUE(records.ok()) << records.status();
    }
  }
  EXPECT_GT((*listener)->overruns(), 0u);

  // Still working afterwards.
  std::optional<Connection> c = MakeConnection(AF_INET, /*keepalive=*/false);
  ASSERT_TRUE(c.has_value());
  const uint64_t cookie = SocketCookie(c->client.get());
  c->client.Reset();
  EXPECT_NE(FindCookie(AwaitDestroyed(**listener, {cookie}), cookie), nullptr);
}

TEST(SockDiagDestroyListenerTest, OpenMissingNamespaceFails) {
  auto listener = SockDiagDestroyListener::Open("/nonexistent");
  ASSERT_FALSE(listener.ok());
  EXPECT_EQ(listener.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(listener.status().message(), HasSubstr("/nonexistent"));
}

// Records what the source publishes.
class RecordingSink : public EventSink {
 public:
  void Publish(v1::Batch&& batch) override {
    absl::MutexLock lock(&mu_);
    for (v1::Event& event : *batch.mutable_events()) {
      if (event.has_close()) closes_.push_back({std::move(event), batch.has_snapshot()});
    }
    if (batch.has_snapshot()) {
      for (const v1::Connection& connection : batch.snapshot().connections()) {
        snapshot_cookies_.insert(connection.connection_id());
      }
    }
  }

  struct Close {
    v1::Event event;
    bool with_snapshot;
  };

  // Waits up to `timeout` for `done` to hold over (snapshot cookies, closes).
  template <typename Predicate>
  bool Await(absl::Duration timeout, Predicate done) {
    absl::MutexLock lock(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return done(snapshot_cookies_, closes_);
    };
    return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  }

 private:
  absl::Mutex mu_;
  std::set<uint64_t> snapshot_cookies_ ABSL_GUARDED_BY(mu_);
  std::vector<Close> closes_ ABSL_GUARDED_BY(mu_);
};

const RecordingSink::Close* FindClose(const std::vector<RecordingSink::Close>& closes,
                                      uint64_t cookie) {
  for (const RecordingSink::Close& close : closes) {
    if (close.event.connection_id() == cookie) return &close;
  }
  return nullptr;
}

// End to end: a close between two dumps is published at once, without a snapshot, and the
// next dump does not publish it again. Stop() takes effect mid-wait.
TEST(SockDiagSourceTest, PublishesCloseBetweenDumps) {
  auto dumper = SockDiagDumper::Open("");
  ASSERT_TRUE(dumper.ok()) << dumper.status();
  auto listener = SockDiagDestroyListener::Open("");
  ASSERT_TRUE(listener.ok()) << listener.status();
  AgentMetrics metrics("test-host");
  constexpr absl::Duration kInterval = absl::Seconds(1);
  SockDiagSource source(std::move(*dumper), kInterval, &metrics, std::move(*listener));
  EXPECT_THAT(source.capabilities(), ::testing::Contains("close_realtime"));
  RecordingSink sink;
  absl::Status status;
  std::thread thread([&] { status = source.Run(&sink); });

  // After the baseline, so that the connection is new to the tracker.
  absl::SleepFor(absl::Milliseconds(200));
  std::optional<Connection> c = MakeConnection(AF_INET, /*keepalive=*/false);
  ASSERT_TRUE(c.has_value());
  const uint64_t cookie = SocketCookie(c->client.get());
  const bool tracked = sink.Await(
      absl::Seconds(3), [&](const auto& cookies, const auto&) { return cookies.contains(cookie); });
  ASSERT_TRUE(tracked) << "no dump showed the connection";
  const absl::Time closed_at = absl::Now();
  c->client.Reset();  // active close: TIME_WAIT follows under the same cookie
  c->server.Reset();
  const bool closed = sink.Await(absl::Milliseconds(500), [&](const auto&, const auto& closes) {
    return FindClose(closes, cookie) != nullptr;
  });
  EXPECT_TRUE(closed) << "close not published within 500 ms (interval "
                      << absl::FormatDuration(kInterval) << ")";
  EXPECT_LT(absl::Now() - closed_at, kInterval / 2);

  // Let the next dump see the TIME_WAIT successor: it must not add a second close.
  absl::SleepFor(kInterval + absl::Milliseconds(300));
  sink.Await(absl::ZeroDuration(), [&](const auto&, const auto& closes) {
    int count = 0;
    for (const RecordingSink::Close& close : closes) count += close.event.connection_id() == cookie;
    EXPECT_EQ(count, 1);
    const RecordingSink::Close* close = FindClose(closes, cookie);
    if (close != nullptr) {
      EXPECT_FALSE(close->with_snapshot);
      // The successor found under the cookie tells who closed first.
      EXPECT_EQ(close->event.close().last_state(), v1::TCP_STATE_TIME_WAIT);
      EXPECT_EQ(close->event.close().initiator(), v1::CLOSE_INITIATOR_LOCAL);
      EXPECT_EQ(close->event.close().reason(), v1::CLOSE_REASON_FIN);
      EXPECT_EQ(close->event.endpoints().local_port(), c->client_endpoint.port);
    }
    return true;
  });

  const absl::Time stop_at = absl::Now();
  source.Stop();
  thread.join();
  EXPECT_LT(absl::Now() - stop_at, absl::Milliseconds(100));
  EXPECT_TRUE(status.ok()) << status;
}

}  // namespace
}  // namespace tcpscope::agent
