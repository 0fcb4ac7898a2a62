// MetricsServer over real loopback sockets: HTTP answers, listen-string validation, and the
// design property that idle or slow clients never delay a scrape.
#include "common/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"

namespace tcpscope {
namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Hundreds of sockets on both ends of loopback can exceed a low default soft limit.
void RaiseFdLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t wanted =
      limit.rlim_max == RLIM_INFINITY ? 4096 : std::min<rlim_t>(limit.rlim_max, 4096);
  if (limit.rlim_cur < wanted) {
    limit.rlim_cur = wanted;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// A blocking client socket whose reads give up after `timeout`, so no test can hang.
Fd Connect(int port, int family = AF_INET,
           std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  Fd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    ADD_FAILURE() << "socket: " << strerror(errno);
    return fd;
  }
  timeval tv{};
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = (timeout.count() % 1000) * 1000;
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const int on = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));

  sockaddr_storage storage{};
  socklen_t length = 0;
  if (family == AF_INET6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&storage);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    sin6->sin6_addr = in6addr_loopback;
    length = sizeof(*sin6);
  } else {
    auto* sin = reinterpret_cast<sockaddr_in*>(&storage);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    length = sizeof(*sin);
  }
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&storage), length) != 0) {
    ADD_FAILURE() << "connect: " << strerror(errno);
    fd.Reset();
  }
  return fd;
}

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Everything the peer sends until it closes (bounded by the socket's read timeout and size).
std::string ReadToEof(int fd) {
  std::string out;
  char buffer[4096];
  while (out.size() < (1 << 20)) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

struct HttpResult {
  int status = 0;
  std::string headers;
  std::string body;
};

HttpResult Exchange(int port, absl::string_view request, int family = AF_INET) {
  HttpResult result;
  Fd fd = Connect(port, family);
  if (!fd.valid()) return result;
  if (!SendAll(fd.get(), request)) {
    ADD_FAILURE() << "send: " << strerror(errno);
    return result;
  }
  const std::string raw = ReadToEof(fd.get());
  const size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    ADD_FAILURE() << "no complete response head in: " << raw;
    return result;
  }
  result.headers = raw.substr(0, head_end + 2);
  result.body = raw.substr(head_end + 4);
  const absl::string_view status_line = absl::string_view(raw).substr(0, raw.find("\r\n"));
  if (status_line.size() < 12 || !absl::SimpleAtoi(status_line.substr(9, 3), &result.status)) {
    ADD_FAILURE() << "bad status line: " << status_line;
  }
  return result;
}

HttpResult Get(int port, absl::string_view path, int family = AF_INET) {
  return Exchange(port, absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: test\r\n\r\n"), family);
}

// True when the server closed `fd` (read() returned 0) within `timeout`.
bool ClosedByPeerWithin(int fd, std::chrono::milliseconds timeout) {
  const Clock::time_point end = Clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    char c;
    const ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
  }
}

std::shared_ptr<prometheus::Registry> RegistryWithCounter(const std::string& name, double value) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter()
      .Name(name)
      .Help("a test counter")
      .Register(*registry)
      .Add({{"path", "/x"}})
      .Increment(value);
  return registry;
}

class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override { RaiseFdLimit(); }

  void StartServer(MetricsServerOptions options = {}) {
    if (options.listen == MetricsServerOptions().listen) options.listen = "127.0.0.1:0";
    registry_ = RegistryWithCounter("test_requests_total", 3);
    auto server = MetricsServer::Start(options, {registry_});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    port_ = server_->port();
    ASSERT_GT(port_, 0);
  }

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsServer> server_;
  int port_ = 0;
};

TEST_F(MetricsServerTest, MetricsReturnsCounter) {
  StartServer();
  const HttpResult result = Get(port_, "/metrics");
  EXPECT_EQ(result.status, 200);
  EXPECT_NE(result.headers.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            std::string::npos)
      << result.headers;
  EXPECT_NE(result.headers.find("Connection: close\r\n"), std::string::npos);
  EXPECT_NE(result.headers.find(absl::StrCat("Content-Length: ", result.body.size(), "\r\n")),
            std::string::npos)
      << result.headers;
  EXPECT_NE(result.body.find("test_requests_total{path=\"/x\"} 3\n"), std::string::npos)
      << result.body;
}

TEST_F(MetricsServerTest, QueryStringIsIgnored) {
  StartServer();
  EXPECT_EQ(Get(port_, "/metrics?name[]=x").status, 200);
}

TEST_F(MetricsServerTest, IndexLinksToMetrics) {
  StartServer();
  const HttpResult result = Get(port_, "/");
  EXPECT_EQ(result.status, 200);
  EXPECT_NE(result.body.find("href=\"/metrics\""), std::string::npos) << result.body;
}

TEST_F(MetricsServerTest, UnknownPathIs404) {
  StartServer();
  EXPECT_EQ(Get(port_, "/nope").status, 404);
}

TEST_F(MetricsServerTest, PostIs405) {
  StartServer();
  const HttpResult result =
      Exchange(port_, "POST /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(result.status, 405);
}

TEST_F(MetricsServerTest, HeadHasNoBody) {
  StartServer();
  const HttpResult result = Exchange(port_, "HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_EQ(result.status, 200);
  EXPECT_TRUE(result.body.empty()) << result.body;
}

TEST_F(MetricsServerTest, OversizedHeadIs431) {
  StartServer();
  const std::string request =
      absl::StrCat("GET /metrics HTTP/1.1\r\nX-Big: ", std::string(10 * 1024, 'a'), "\r\n\r\n");
  EXPECT_EQ(Exchange(port_, request).status, 431);
}

TEST_F(MetricsServerTest, MalformedRequestLineIs400) {
  StartServer();
  EXPECT_EQ(Exchange(port_, "HELLO\r\n\r\n").status, 400);
  EXPECT_EQ(Exchange(port_, "GET /metrics\r\n\r\n").status, 400);
  EXPECT_EQ(Exchange(port_, "GET metrics HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(Exchange(port_, "GET /metrics SPDY/3\r\n\r\n").status, 400);
}

TEST(MetricsServerStartTest, RejectsBadListenStrings) {
  for (const std::string listen :
       {"nope", "127.0.0.1:99999", "1.2.3.4.5:80", "127.0.0.1:", "127.0.0.1:-1", "::1:80", "[::1]",
        "[::1]80", "[nope]:80", "300.0.0.1:80"}) {
    MetricsServerOptions options;
    options.listen = listen;
    auto server = MetricsServer::Start(options, {});
    ASSERT_FALSE(server.ok()) << listen;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << server.status();
    EXPECT_NE(server.status().message().find(listen), absl::string_view::npos) << server.status();
  }
}

TEST(MetricsServerStartTest, PortInUseIsAnErrorNamingTheAddress) {
  MetricsServerOptions options;
  options.listen = "127.0.0.1:0";
  auto first = MetricsServer::Start(options, {});
  ASSERT_TRUE(first.ok()) << first.status();

  options.listen = absl::StrCat("127.0.0.1:", (*first)->port());
  auto second = MetricsServer::Start(options, {});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find(absl::StrCat("bind ", options.listen)),
            absl::string_view::npos)
      << second.status();
  EXPECT_NE(second.status().message().find("Address already in use"), absl::string_view::npos)
      << second.status();
}

// The reason this server exists: a thread-per-connection server stalls here.
TEST_F(MetricsServerTest, IdleAndSlowClientsDoNotDelayScrape) {
  StartServer();
  std::vector<Fd> idle;
  for (int i = 0; i < 300; ++i) {
    idle.push_back(Connect(port_));
    ASSERT_TRUE(idle.back().valid());
  }
  std::vector<Fd> slow;
  for (int i = 0; i < 50; ++i) {
    slow.push_back(Connect(port_));
    ASSERT_TRUE(slow.back().valid());
    ASSERT_TRUE(SendAll(slow.back().get(), "GET /metrics HTTP/1.1\r\nHost: te"));
  }

  // Keeps the slow clients trickling bytes, never completing the head, while the scrape runs.
  std::atomic<bool> stop{false};
  std::thread dribbler([&] {
    for (int round = 0; round < 200 && !stop.load(); ++round) {
      for (const Fd& fd : slow) send(fd.get(), "s", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });

  const Clock::time_point start = Clock::now();
  const HttpResult result = Get(port_, "/metrics");
  const auto elapsed = Clock::now() - start;
  stop.store(true);
  dribbler.join();

  EXPECT_EQ(result.status, 200);
  EXPECT_NE(result.body.find("test_requests_total"), std::string::npos);
  EXPECT_LT(elapsed, std::chrono::seconds(2))
      << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms";
}

TEST_F(MetricsServerTest, ConnectionsPastDeadlineAreClosed) {
  MetricsServerOptions options;
  options.connection_deadline = absl::Milliseconds(300);
  StartServer(options);

  // Taken before connecting, so every accept (and hence every deadline's start) comes after it.
  const Clock::time_point start = Clock::now();
  std::vector<Fd> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(Connect(port_));
    ASSERT_TRUE(clients.back().valid());
  }
  ASSERT_TRUE(SendAll(clients.back().get(), "GET /metr"));

  for (const Fd& fd : clients) {
    EXPECT_TRUE(ClosedByPeerWithin(fd.get(), std::chrono::seconds(3)));
  }
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(250));  // not closed early
  EXPECT_EQ(Get(port_, "/metrics").status, 200);                    // still serving afterwards
}

TEST_F(MetricsServerTest, ConnectionsOverLimitAreClosed) {
  MetricsServerOptions options;
  options.max_connections = 2;
  StartServer(options);
  Fd a = Connect(port_);
  Fd b = Connect(port_);
  Fd c = Connect(port_);
  ASSERT_TRUE(a.valid() && b.valid() && c.valid());
  EXPECT_TRUE(ClosedByPeerWithin(c.get(), std::chrono::seconds(2)));
  a.Reset();
  b.Reset();
  // Freed slots are reusable; the server notices the closes on its next wakeup.
  bool served = false;
  for (int attempt = 0; attempt < 50 && !served; ++attempt) {
    Fd probe = Connect(port_);
    if (probe.valid() && SendAll(probe.get(), "GET / HTTP/1.0\r\n\r\n")) {
      served = ReadToEof(probe.get()).rfind("HTTP/1.1 200", 0) == 0;
    }
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(served);
}

TEST(MetricsServerCollectTest, ExpiredCollectableIsSkipped) {
  auto alive = RegistryWithCounter("alive_total", 1);
  auto gone = RegistryWithCounter("gone_total", 2);
  MetricsServerOptions options;
  options.listen = "127.0.0.1:0";
  auto server = MetricsServer::Start(options, {gone, alive});
  ASSERT_TRUE(server.ok()) << server.status();
  gone.reset();

  const HttpResult result = Get((*server)->port(), "/metrics");
  EXPECT_EQ(result.status, 200);
  EXPECT_NE(result.body.find("alive_total{path=\"/x\"} 1"), std::string::npos) << result.body;
  EXPECT_EQ(result.body.find("gone_total"), std::string::npos) << result.body;
}

TEST_F(MetricsServerTest, DestructorIsPromptWithIdleConnections) {
  StartServer();
  std::vector<Fd> idle;
  for (int i = 0; i < 50; ++i) {
    idle.push_back(Connect(port_));
    ASSERT_TRUE(idle.back().valid());
  }
  // Lets the server accept them, so the destructor has open connections to close.
  EXPECT_EQ(Get(port_, "/").status, 200);

  const Clock::time_point start = Clock::now();
  server_.reset();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(1));
  for (const Fd& fd : idle) {
    EXPECT_TRUE(ClosedByPeerWithin(fd.get(), std::chrono::seconds(1)));
  }
}

TEST(MetricsServerIpv6Test, ServesOnLoopback) {
  {
    Fd probe(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr = in6addr_loopback;
    if (!probe.valid() ||
        bind(probe.get(), reinterpret_cast<sockaddr*>(&sin6), sizeof(sin6)) != 0) {
      GTEST_SKIP() << "no IPv6 loopback here";
    }
  }
  auto registry = RegistryWithCounter("v6_total", 7);
  MetricsServerOptions options;
  options.listen = "[::1]:0";
  auto server = MetricsServer::Start(options, {registry});
  ASSERT_TRUE(server.ok()) << server.status();
  const HttpResult result = Get((*server)->port(), "/metrics", AF_INET6);
  EXPECT_EQ(result.status, 200);
  EXPECT_NE(result.body.find("v6_total{path=\"/x\"} 7"), std::string::npos) << result.body;
}

}  // namespace
}  // namespace tcpscope
