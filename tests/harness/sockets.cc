// Socket helpers for tests.
#include "tests/harness/sockets.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace tcpscope::testing {
namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

int BoundPort(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

void CloseAll(std::vector<int>& fds) {
  for (int fd : fds) close(fd);
  fds.clear();
}

constexpr int kFirstChosenPort = 10000;

// The lower end of the kernel's ephemeral range: ports below it are never given to a connect()
// or a bind to port 0, so a port chosen there cannot be taken between the test's choice and the
// server's bind by a client socket, such as a replica's connection to a peer not yet listening.
int EphemeralLow() {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  int high = 0;
  if (!(range >> low >> high) || low <= kFirstChosenPort + 1000) return 32768;
  return low;
}

}  // namespace

int FreeTcpPort() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::flat_hash_set<int>* given = new absl::flat_hash_set<int>;
  static const int low = EphemeralLow();
  absl::MutexLock lock(&mu);
  absl::BitGen random;
  // Bounded: the range holds thousands of ports and a test uses a handful.
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = absl::Uniform(random, kFirstChosenPort, low);
    if (given->contains(port)) continue;
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address = Loopback(port);
    address.sin_addr.s_addr = htonl(INADDR_ANY);  // free on every address, not just loopback
    const bool free = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    close(fd);
    if (free) {
      given->insert(port);
      return port;
    }
  }
  std::fprintf(stderr, "FreeTcpPort: no free port in [%d, %d) after 1000 tries\n", kFirstChosenPort,
               low);
  std::abort();
}

absl::StatusOr<std::string> HttpGet(const std::string& host, int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address = Loopback(port);
  inet_pton(AF_INET, host.c_str(), &address.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    const int error = errno;
    close(fd);
    return absl::ErrnoToStatus(error, absl::StrCat("connect ", host, ":", port));
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", host, "\r\nConnection: close\r\n\r\n");
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response;
  char buffer[65536];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (!absl::StartsWith(response, "HTTP/1.1 200") || body == std::string::npos) {
    return absl::UnavailableError(absl::StrCat("GET ", path, ": ", response.substr(0, 80)));
  }
  return response.substr(body + 4);
}

absl::StatusOr<ConnectionSet> ConnectionSet::Open(int count, int keepalive) {
  ConnectionSet set;
  set.listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address = Loopback(0);
  if (bind(set.listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(set.listener_, count + 16) != 0) {
    return absl::ErrnoToStatus(errno, "listen");
  }
  set.listen_port_ = BoundPort(set.listener_);
  address = Loopback(set.listen_port_);
  for (int i = 0; i < count; ++i) {
    const int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    set.clients_.push_back(client);
    if (i < keepalive) {
      const int on = 1;
      setsockopt(client, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    }
    if (connect(client, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      return absl::ErrnoToStatus(errno, "connect");
    }
    const int server = accept4(set.listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (server < 0) return absl::ErrnoToStatus(errno, "accept");
    set.servers_.push_back(server);
  }
  return set;
}

ConnectionSet::ConnectionSet(ConnectionSet&& other) noexcept
    : listener_(other.listener_),
      listen_port_(other.listen_port_),
      clients_(std::move(other.clients_)),
      servers_(std::move(other.servers_)) {
  other.listener_ = -1;
  other.clients_.clear();
  other.servers_.clear();
}

ConnectionSet::~ConnectionSet() {
  CloseClients();
  CloseServers();
  CloseListener();
}

void ConnectionSet::CloseClients() { CloseAll(clients_); }
void ConnectionSet::CloseServers() { CloseAll(servers_); }
void ConnectionSet::CloseListener() {
  if (listener_ >= 0) close(listener_);
  listener_ = -1;
}

}  // namespace tcpscope::testing
