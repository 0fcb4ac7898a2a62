// tcpscope-churn: a loopback TCP connection-churn generator for benchmarks.
//
// In the calling process's network namespace it listens on --ports ports of --address (each
// port opened by every server thread with SO_REUSEPORT), then --workers client threads loop for
// --duration: connect -> send 1 byte -> shutdown(SHUT_WR) -> wait for the server's FIN -> close.
// The server accepts, reads to EOF and then closes: an orderly FIN close that the client starts
// (client: FIN_WAIT1, FIN_WAIT2, TIME_WAIT; server: CLOSE_WAIT, LAST_ACK, CLOSE), like the
// integration tests. A connection is counted once its client saw the server's FIN, so every
// counted connection went through both handshakes and both closes.
//
// Several destination ports keep the 4-tuples apart so that the client side's TIME_WAIT does
// not run out of ephemeral ports (net.ipv4.tcp_tw_reuse=2 also reuses loopback TIME_WAIT).
// Prints one JSON line on stdout; exits 0 when at least one connection completed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"

ABSL_FLAG(absl::Duration, duration, absl::Seconds(10), "How long to churn (100ms to 10m).");
ABSL_FLAG(int, workers, 0, "Client threads (default: 2 x the CPUs).");
ABSL_FLAG(int, server_threads, 0, "Server (accept/read/close) threads (default: the CPUs).");
ABSL_FLAG(int, ports, 8, "Listening ports, the connections spread over them (1 to 64).");
ABSL_FLAG(std::string, address, "127.0.0.1", "IPv4 address to listen on and connect to.");
ABSL_FLAG(std::string, label, "", "Free text copied into the JSON line (e.g. the mode).");

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kIoTimeoutMs = 5000;  // a stuck connection fails instead of hanging the run

struct Counters {
  std::atomic<uint64_t> completed{0};
  std::atomic<uint64_t> connect_failed{0};
  std::atomic<uint64_t> io_failed{0};
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> server_closed{0};
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "tcpscope-churn: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

void SetTimeouts(int fd) {
  timeval tv{kIoTimeoutMs / 1000, (kIoTimeoutMs % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// One listener per (server thread, port); port 0 in `port` means "pick one" (first thread).
int Listen(in_addr address, uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket");
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) Die("SO_REUSEADDR");
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) Die("SO_REUSEPORT");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr = address;
  sa.sin_port = htons(*port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) Die("bind");
  if (listen(fd, 4096) != 0) Die("listen");
  socklen_t length = sizeof(sa);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &length) != 0) Die("getsockname");
  *port = ntohs(sa.sin_port);
  return fd;
}

class Server {
 public:
  Server(std::vector<int> listeners, Counters* counters)
      : listeners_(std::move(listeners)), counters_(counters) {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) Die("epoll_create1");
    for (int fd : listeners_) {
      epoll_event event{};
      event.events = EPOLLIN;
      event.data.u64 = Tag(fd, /*listener=*/true);
      if (epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &event) != 0) Die("epoll_ctl listener");
    }
  }

  void Run(const std::atomic<bool>& stop) {
    epoll_event events[128];
    while (!stop.load(std::memory_order_relaxed)) {
      const int n = epoll_wait(epoll_, events, 128, 50);
      for (int i = 0; i < n; ++i) {
        const int fd = static_cast<int>(events[i].data.u64 & 0xffffffff);
        if (events[i].data.u64 >> 32) {
          AcceptAll(fd);
        } else {
          Drain(fd, /*registered=*/true);
        }
      }
    }
    for (int fd : open_) close(fd);
    for (int fd : listeners_) close(fd);
    close(epoll_);
  }

 private:
  static uint64_t Tag(int fd, bool listener) {
    return (static_cast<uint64_t>(listener) << 32) | static_cast<uint32_t>(fd);
  }

  void AcceptAll(int listener) {
    while (true) {
      const int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or a connection that went away: either way, done here
      counters_->accepted.fetch_add(1, std::memory_order_relaxed);
      Drain(fd, /*registered=*/false);  // the byte and the FIN are often already there
    }
  }

  // Reads to EOF; closes then (the client closed first). Registers the socket while the EOF is
  // still to come.
  void Drain(int fd, bool registered) {
    char buffer[64];
    while (true) {
      const ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
      if (got > 0) continue;
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!registered) {
          epoll_event event{};
          event.events = EPOLLIN | EPOLLRDHUP;
          event.data.u64 = Tag(fd, false);
          if (epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &event) != 0) Die("epoll_ctl connection");
          open_.push_back(fd);  // for clean-up at the end; rarely more than a few
        }
        return;
      }
      break;  // EOF (or an error): close our side
    }
    if (registered) {
      epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
      Forget(fd);
    }
    close(fd);
    counters_->server_closed.fetch_add(1, std::memory_order_relaxed);
  }

  void Forget(int fd) {
    for (size_t i = 0; i < open_.size(); ++i) {
      if (open_[i] == fd) {
        open_[i] = open_.back();
        open_.pop_back();
        return;
      }
    }
  }

  std::vector<int> listeners_;
  Counters* counters_;
  int epoll_ = -1;
  std::vector<int> open_;
};

// Returns true when the whole exchange completed.
bool OneConnection(const sockaddr_in& destination, Counters* counters) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    counters->connect_failed.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  SetTimeouts(fd);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&destination), sizeof(destination)) != 0) {
    counters->connect_failed.fetch_add(1, std::memory_order_relaxed);
    close(fd);
    return false;
  }
  const char byte = 'x';
  bool ok = send(fd, &byte, 1, MSG_NOSIGNAL) == 1 && shutdown(fd, SHUT_WR) == 0;
  if (ok) {
    char buffer[16];
    while (true) {
      const ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
      if (got == 0) break;  // the server's FIN: both sides closed
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) {
        ok = false;
        break;
      }
    }
  }
  close(fd);
  if (!ok) counters->io_failed.fetch_add(1, std::memory_order_relaxed);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Loopback TCP connection churn for benchmarks.\n"
      "Usage: tcpscope-churn [--duration=10s] [--workers=N] [--server_threads=N] [--ports=N]");
  absl::ParseCommandLine(argc, argv);

  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  if (duration < absl::Milliseconds(100) || duration > absl::Minutes(10)) {
    std::fprintf(stderr, "tcpscope-churn: --duration must be within 100ms..10m\n");
    return 2;
  }
  const int cpus = std::max(1u, std::thread::hardware_concurrency());
  int workers = absl::GetFlag(FLAGS_workers);
  if (workers <= 0) workers = 2 * cpus;
  int server_threads = absl::GetFlag(FLAGS_server_threads);
  if (server_threads <= 0) server_threads = cpus;
  const int ports = absl::GetFlag(FLAGS_ports);
  if (workers > 1024 || server_threads > 64 || ports < 1 || ports > 64) {
    std::fprintf(stderr, "tcpscope-churn: --workers<=1024, --server_threads<=64, --ports 1..64\n");
    return 2;
  }
  for (char c : absl::GetFlag(FLAGS_label)) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      std::fprintf(stderr, "tcpscope-churn: --label may hold only [A-Za-z0-9._-]\n");
      return 2;
    }
  }
  in_addr address{};
  if (inet_pton(AF_INET, absl::GetFlag(FLAGS_address).c_str(), &address) != 1) {
    std::fprintf(stderr, "tcpscope-churn: --address must be an IPv4 address\n");
    return 2;
  }

  // Listeners: every server thread opens every port (SO_REUSEPORT spreads the connections).
  std::vector<uint16_t> port_numbers(static_cast<size_t>(ports), 0);
  std::vector<std::vector<int>> listeners(static_cast<size_t>(server_threads));
  for (int t = 0; t < server_threads; ++t) {
    for (int p = 0; p < ports; ++p) {
      listeners[t].push_back(Listen(address, &port_numbers[p]));
    }
  }

  Counters counters;
  std::atomic<bool> stop_clients{false};
  std::atomic<bool> stop_servers{false};
  std::vector<std::thread> servers;
  for (int t = 0; t < server_threads; ++t) {
    servers.emplace_back([&, t] {
      Server server(listeners[t], &counters);
      server.Run(stop_servers);
    });
  }

  const Clock::time_point start = Clock::now();
  std::vector<std::thread> clients;
  for (int w = 0; w < workers; ++w) {
    clients.emplace_back([&, w] {
      std::vector<sockaddr_in> destinations;
      for (uint16_t port : port_numbers) {
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr = address;
        sa.sin_port = htons(port);
        destinations.push_back(sa);
      }
      uint64_t done = 0;
      size_t next = static_cast<size_t>(w) % destinations.size();
      uint32_t consecutive_failures = 0;
      while (!stop_clients.load(std::memory_order_relaxed)) {
        if (OneConnection(destinations[next], &counters)) {
          ++done;
          consecutive_failures = 0;
        } else if (++consecutive_failures > 8) {
          // e.g. EADDRNOTAVAIL: no free 4-tuple right now; back off instead of spinning
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        if (++next == destinations.size()) next = 0;
      }
      counters.completed.fetch_add(done, std::memory_order_relaxed);
    });
  }

  std::this_thread::sleep_for(absl::ToChronoNanoseconds(duration));
  stop_clients.store(true);
  for (std::thread& client : clients) client.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  stop_servers.store(true);
  for (std::thread& server : servers) server.join();

  const uint64_t completed = counters.completed.load();
  std::printf(
      "{\"tool\":\"tcpscope-churn\",\"label\":\"%s\",\"connections\":%llu,\"seconds\":%.3f,"
      "\"rate\":%.1f,\"connect_failed\":%llu,\"io_failed\":%llu,\"accepted\":%llu,"
      "\"server_closed\":%llu,\"workers\":%d,\"server_threads\":%d,\"ports\":%d}\n",
      absl::GetFlag(FLAGS_label).c_str(), static_cast<unsigned long long>(completed), seconds,
      seconds > 0 ? static_cast<double>(completed) / seconds : 0.0,
      static_cast<unsigned long long>(counters.connect_failed.load()),
      static_cast<unsigned long long>(counters.io_failed.load()),
      static_cast<unsigned long long>(counters.accepted.load()),
      static_cast<unsigned long long>(counters.server_closed.load()), workers, server_threads,
      ports);
  std::fflush(stdout);
  return completed > 0 ? 0 : 1;
}
