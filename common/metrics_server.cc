// MetricsServer: a single epoll thread serving the Prometheus exposition over HTTP/1.x with
// non-blocking sockets and a hard per-connection deadline (see metrics_server.h for why).
#include "common/metrics_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <set>
#include <thread>
#include <unordered_map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/exposition.h"
#include "common/log.h"
#include "prometheus/metric_family.h"

namespace tcpscope {
namespace {

using Clock = std::chrono::steady_clock;

// epoll user data: connections get ids from kFirstConnectionId upwards and are never reused,
// so an event for a connection closed earlier in the same batch cannot hit a newer one that
// happens to have the same fd.
constexpr uint64_t kListenerId = 0;
constexpr uint64_t kWakeId = 1;
constexpr uint64_t kFirstConnectionId = 2;

constexpr int kMaxEvents = 256;
// Keeps one wakeup from spending all its time in accept under a connection storm.
constexpr int kMaxAcceptsPerWakeup = 256;
constexpr size_t kReadChunk = 4096;
// After the response, the input is drained until EOF so that unread request bytes do not turn
// the close into a RST that could destroy the response in flight; this bounds that wait.
constexpr Clock::duration kLingerTime = std::chrono::seconds(1);

constexpr absl::string_view kHeadTerminator = "\r\n\r\n";
constexpr absl::string_view kIndexPage =
    "<html><head><title>tcpscope</title></head>"
    "<body><h1>tcpscope</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n";

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct ListenAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

absl::Status BadListen(absl::string_view listen, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("invalid listen address \"", listen, "\": ", why));
}

// Accepts numeric addresses only (plus "localhost" and an empty host meaning all IPv4
// interfaces): resolving names at startup would make the bound address depend on DNS.
absl::StatusOr<ListenAddress> ParseListen(absl::string_view listen) {
  absl::string_view host;
  absl::string_view port_text;
  bool bracketed = false;
  if (!listen.empty() && listen.front() == '[') {
    const size_t close = listen.find(']');
    if (close == absl::string_view::npos || close + 1 >= listen.size() ||
        listen[close + 1] != ':') {
      return BadListen(listen, "expected [v6address]:port");
    }
    host = listen.substr(1, close - 1);
    port_text = listen.substr(close + 2);
    bracketed = true;
  } else {
    const size_t colon = listen.rfind(':');
    if (colon == absl::string_view::npos) return BadListen(listen, "expected host:port");
    host = listen.substr(0, colon);
    port_text = listen.substr(colon + 1);
    if (host.find(':') != absl::string_view::npos) {
      return BadListen(listen, "IPv6 addresses must be bracketed, as in [::1]:9700");
    }
  }

  if (port_text.empty() || port_text.size() > 5 ||
      !std::all_of(port_text.begin(), port_text.end(), absl::ascii_isdigit)) {
    return BadListen(listen, "port must be a number from 0 to 65535");
  }
  int port = 0;
  for (char c : port_text) port = port * 10 + (c - '0');
  if (port > 65535) return BadListen(listen, "port must be a number from 0 to 65535");

  ListenAddress address;
  const std::string host_string(host);
  if (bracketed) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host_string.c_str(), &sin6->sin6_addr) != 1) {
      return BadListen(listen, absl::StrCat("\"", host, "\" is not an IPv6 address"));
    }
    address.length = sizeof(sockaddr_in6);
  } else {
    auto* sin = reinterpret_cast<sockaddr_in*>(&address.storage);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    if (host.empty()) {
      sin->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (host == "localhost") {
      sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host_string.c_str(), &sin->sin_addr) != 1) {
      return BadListen(listen, absl::StrCat("\"", host, "\" is not an IPv4 address"));
    }
    address.length = sizeof(sockaddr_in);
  }
  return address;
}

// "127.0.0.1:9700" or "[::1]:9700".
std::string FormatSockaddr(const sockaddr_storage& storage) {
  char text[INET6_ADDRSTRLEN] = {};
  if (storage.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
    return absl::StrCat("[", text, "]:", ntohs(sin6->sin6_port));
  }
  const auto* sin = reinterpret_cast<const sockaddr_in*>(&storage);
  inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
  return absl::StrCat(text, ":", ntohs(sin->sin_port));
}

std::string HttpHead(int status, absl::string_view reason, absl::string_view content_type,
                     size_t content_length, absl::string_view extra_headers = "") {
  return absl::StrCat("HTTP/1.1 ", status, " ", reason, "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", content_length, "\r\n", extra_headers,
                      "Connection: close\r\n\r\n");
}

std::string HttpResponse(int status, absl::string_view reason, absl::string_view content_type,
                         absl::string_view body, bool include_body,
                         absl::string_view extra_headers = "") {
  std::string response = HttpHead(status, reason, content_type, body.size(), extra_headers);
  if (include_body) response.append(body.data(), body.size());
  return response;
}

std::string ErrorResponse(int status, absl::string_view reason, bool include_body = true,
                          absl::string_view extra_headers = "") {
  return HttpResponse(status, reason, "text/plain; charset=utf-8", absl::StrCat(reason, "\n"),
                      include_body, extra_headers);
}

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(c) ||
         absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
}

struct RequestLine {
  absl::string_view method;
  absl::string_view path;  // without query string or fragment
};

// "METHOD SP request-target SP HTTP/1.x"; false for anything else.
bool ParseRequestLine(absl::string_view head, RequestLine* out) {
  const absl::string_view line = head.substr(0, head.find("\r\n"));
  const size_t sp1 = line.find(' ');
  if (sp1 == absl::string_view::npos) return false;
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == absl::string_view::npos || line.find(' ', sp2 + 1) != absl::string_view::npos) {
    return false;
  }
  const absl::string_view method = line.substr(0, sp1);
  const absl::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const absl::string_view version = line.substr(sp2 + 1);
  if (method.empty() || !std::all_of(method.begin(), method.end(), IsTokenChar)) return false;
  if (target.empty() || target.front() != '/') return false;
  if (std::any_of(target.begin(), target.end(),
                  [](char c) { return absl::ascii_iscntrl(c) || c == ' '; })) {
    return false;
  }
  if (version != "HTTP/1.0" && version != "HTTP/1.1") return false;
  out->method = method;
  out->path = target.substr(0, target.find_first_of("?#"));
  return true;
}

}  // namespace

class MetricsServer::Impl {
 public:
  Impl(const MetricsServerOptions& options,
       std::vector<std::weak_ptr<prometheus::Collectable>> collectables)
      : options_(options), collectables_(std::move(collectables)) {}

  ~Impl() {
    if (thread_.joinable()) {
      const uint64_t one = 1;
      // eventfd writes of 8 bytes only fail on counter overflow, which one write cannot cause.
      (void)!write(wake_fd_.get(), &one, sizeof(one));
      thread_.join();
    }
    // The UniqueFds in connections_ and the members close everything else.
  }

  absl::Status Init();
  int port() const { return port_; }

 private:
  enum class State { kReading, kWriting, kLingering };

  struct Connection {
    UniqueFd fd;
    State state = State::kReading;
    Clock::time_point deadline;
    std::string in;
    std::string out;
    size_t out_offset = 0;
  };

  void Run();
  void AcceptAll();
  void OnEvent(uint64_t id, uint32_t events);
  void OnReadable(uint64_t id, Connection& conn);
  void StartResponse(uint64_t id, Connection& conn, std::string response);
  void OnWritable(uint64_t id, Connection& conn);
  void StartLinger(uint64_t id, Connection& conn);
  void OnLingerReadable(uint64_t id, Connection& conn);
  void SetDeadline(uint64_t id, Connection& conn, Clock::time_point deadline);
  bool Watch(uint64_t id, Connection& conn, uint32_t events);
  void Close(uint64_t id);
  void ExpireConnections();
  int EpollTimeoutMs() const;
  std::string Respond(absl::string_view head) const;
  std::string Scrape() const;

  const MetricsServerOptions options_;
  mutable std::atomic<size_t> last_scrape_bytes_{0};
  const std::vector<std::weak_ptr<prometheus::Collectable>> collectables_;
  UniqueFd listen_fd_;
  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;
  // Released when accept hits EMFILE so the pending connection can be accepted and closed;
  // otherwise the level-triggered listener would spin.
  UniqueFd spare_fd_;
  int port_ = 0;
  std::thread thread_;

  // Touched only by the serving thread once it runs.
  uint64_t next_id_ = kFirstConnectionId;
  std::unordered_map<uint64_t, Connection> connections_;
  std::set<std::pair<Clock::time_point, uint64_t>> deadlines_;
};

absl::Status MetricsServer::Impl::Init() {
  absl::StatusOr<ListenAddress> address = ParseListen(options_.listen);
  if (!address.ok()) return address.status();
  if (options_.max_connections < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_connections must be positive, got ", options_.max_connections));
  }

  listen_fd_.Reset(
      socket(address->storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listen_fd_.valid()) return absl::ErrnoToStatus(errno, "socket");
  const int on = 1;
  if (setsockopt(listen_fd_.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0) {
    return absl::ErrnoToStatus(errno, "setsockopt SO_REUSEADDR");
  }
  if (bind(listen_fd_.get(), reinterpret_cast<const sockaddr*>(&address->storage),
           address->length) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("bind ", options_.listen));
  }
  if (listen(listen_fd_.get(), SOMAXCONN) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("listen ", options_.listen));
  }
  sockaddr_storage bound{};
  socklen_t bound_length = sizeof(bound);
  if (getsockname(listen_fd_.get(), reinterpret_cast<sockaddr*>(&bound), &bound_length) != 0) {
    return absl::ErrnoToStatus(errno, "getsockname");
  }
  port_ = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  epoll_fd_.Reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_fd_.valid()) return absl::ErrnoToStatus(errno, "epoll_create1");
  wake_fd_.Reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd_.valid()) return absl::ErrnoToStatus(errno, "eventfd");
  spare_fd_.Reset(open("/dev/null", O_RDONLY | O_CLOEXEC));

  for (const auto& [fd, id] :
       {std::pair{listen_fd_.get(), kListenerId}, std::pair{wake_fd_.get(), kWakeId}}) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = id;
    if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
      return absl::ErrnoToStatus(errno, "epoll_ctl");
    }
  }

  TS_LOG(INFO) << "metrics on http://" << FormatSockaddr(bound) << "/metrics";
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void MetricsServer::Impl::Run() {
  epoll_event events[kMaxEvents];
  for (;;) {
    const int n = epoll_wait(epoll_fd_.get(), events, kMaxEvents, EpollTimeoutMs());
    if (n < 0) {
      if (errno == EINTR) continue;
      TS_LOG(ERROR) << "metrics server: epoll_wait: " << std::strerror(errno);
      return;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kWakeId) return;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kListenerId) {
        AcceptAll();
      } else {
        OnEvent(events[i].data.u64, events[i].events);
      }
    }
    ExpireConnections();
  }
}

int MetricsServer::Impl::EpollTimeoutMs() const {
  if (deadlines_.empty()) return -1;
  const Clock::duration left = deadlines_.begin()->first - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  // Rounded up: waking a little early would only find nothing expired and spin until then.
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<int64_t>(ms, 60'000));
}

void MetricsServer::Impl::ExpireConnections() {
  const Clock::time_point now = Clock::now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    Close(deadlines_.begin()->second);
  }
}

void MetricsServer::Impl::AcceptAll() {
  for (int i = 0; i < kMaxAcceptsPerWakeup; ++i) {
    const int fd = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if ((errno == EMFILE || errno == ENFILE) && spare_fd_.valid()) {
        TS_LOG(WARNING) << "metrics server: out of file descriptors, dropping a connection";
        spare_fd_.Reset();
        const int dropped = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (dropped >= 0) close(dropped);
        spare_fd_.Reset(open("/dev/null", O_RDONLY | O_CLOEXEC));
        continue;
      }
      TS_LOG(WARNING) << "metrics server: accept: " << std::strerror(errno);
      return;
    }
    if (connections_.size() >= static_cast<size_t>(options_.max_connections)) {
      close(fd);
      continue;
    }
    const uint64_t id = next_id_++;
    Connection& conn = connections_[id];
    conn.fd.Reset(fd);
    // Clamped so an infinite deadline cannot overflow the time_point.
    const absl::Duration deadline = std::min(options_.connection_deadline, absl::Hours(24));
    SetDeadline(id, conn, Clock::now() + absl::ToChronoNanoseconds(deadline));
    epoll_event event{};
    event.events = EPOLLIN | EPOLLRDHUP;
    event.data.u64 = id;
    if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
      TS_LOG(WARNING) << "metrics server: epoll_ctl add: " << std::strerror(errno);
      Close(id);
    }
  }
}

void MetricsServer::Impl::OnEvent(uint64_t id, uint32_t events) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;  // closed earlier in this batch
  Connection& conn = it->second;
  switch (conn.state) {
    case State::kReading:
      OnReadable(id, conn);
      break;
    case State::kWriting:
      OnWritable(id, conn);
      break;
    case State::kLingering:
      OnLingerReadable(id, conn);
      break;
  }
}

void MetricsServer::Impl::OnReadable(uint64_t id, Connection& conn) {
  bool eof = false;
  size_t head_end = std::string::npos;
  // Bounded by the cap: at most one chunk is read past max_request_bytes.
  while (conn.in.size() <= options_.max_request_bytes) {
    char buffer[kReadChunk];
    const ssize_t n = read(conn.fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      Close(id);
      return;
    }
    if (n == 0) {
      eof = true;
      break;
    }
    // The terminator may straddle the previous chunk.
    const size_t search_from = conn.in.size() < 3 ? 0 : conn.in.size() - 3;
    conn.in.append(buffer, static_cast<size_t>(n));
    head_end = conn.in.find(kHeadTerminator.data(), search_from, kHeadTerminator.size());
    if (head_end != std::string::npos) break;
  }

  if (head_end != std::string::npos &&
      head_end + kHeadTerminator.size() <= options_.max_request_bytes) {
    StartResponse(id, conn, Respond(absl::string_view(conn.in).substr(0, head_end)));
  } else if (conn.in.size() > options_.max_request_bytes) {
    StartResponse(id, conn, ErrorResponse(431, "Request Header Fields Too Large"));
  } else if (eof) {
    Close(id);  // the client gave up before finishing its request
  }
}

std::string MetricsServer::Impl::Respond(absl::string_view head) const {
  RequestLine request;
  if (!ParseRequestLine(head, &request)) return ErrorResponse(400, "Bad Request");
  const bool head_only = request.method == "HEAD";
  if (request.method != "GET" && !head_only) {
    return ErrorResponse(405, "Method Not Allowed", true, "Allow: GET, HEAD\r\n");
  }
  if (request.path == "/metrics") {
    // The exposition (tens of MB at thousands of hosts) is the response's buffer: its head is
    // inserted before it in place, not the body copied after the head.
    std::string response = Scrape();
    const std::string head =
        HttpHead(200, "OK", "text/plain; version=0.0.4; charset=utf-8", response.size());
    if (head_only) return head;
    response.insert(0, head);
    return response;
  }
  if (request.path == "/") {
    return HttpResponse(200, "OK", "text/html; charset=utf-8", kIndexPage, !head_only);
  }
  return ErrorResponse(404, "Not Found", !head_only);
}

std::string MetricsServer::Impl::Scrape() const {
  std::string out;
  // Sized from the last scrape (and room for the head), so it is not regrown and copied.
  out.reserve(last_scrape_bytes_.load() + last_scrape_bytes_.load() / 8 + 4096);
  std::vector<prometheus::MetricFamily> families;
  for (const auto& weak : collectables_) {
    const std::shared_ptr<prometheus::Collectable> collectable = weak.lock();
    if (collectable == nullptr) continue;  // its owner is gone; nothing to report
    if (const auto* text = dynamic_cast<const ExpositionCollectable*>(collectable.get())) {
      // Writes its own text; what was collected before it comes first, in order.
      AppendExposition(families, &out);
      families.clear();
      text->AppendExposition(&out);
      continue;
    }
    std::vector<prometheus::MetricFamily> collected = collectable->Collect();
    std::move(collected.begin(), collected.end(), std::back_inserter(families));
  }
  AppendExposition(families, &out);
  last_scrape_bytes_ = out.size();
  return out;
}

void MetricsServer::Impl::StartResponse(uint64_t id, Connection& conn, std::string response) {
  conn.state = State::kWriting;
  conn.out = std::move(response);
  conn.out_offset = 0;
  // Only EPOLLOUT from now on: unread request bytes would keep a level-triggered EPOLLIN firing.
  if (!Watch(id, conn, EPOLLOUT)) return;
  OnWritable(id, conn);
}

void MetricsServer::Impl::OnWritable(uint64_t id, Connection& conn) {
  while (conn.out_offset < conn.out.size()) {
    const ssize_t n = send(conn.fd.get(), conn.out.data() + conn.out_offset,
                           conn.out.size() - conn.out_offset, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // EPOLLOUT brings us back
      Close(id);
      return;
    }
    conn.out_offset += static_cast<size_t>(n);
  }
  StartLinger(id, conn);
}

void MetricsServer::Impl::StartLinger(uint64_t id, Connection& conn) {
  conn.state = State::kLingering;
  conn.in.clear();
  conn.in.shrink_to_fit();
  conn.out.clear();
  conn.out.shrink_to_fit();
  // The client sees EOF now; the fd stays open only to swallow what it may still send.
  if (shutdown(conn.fd.get(), SHUT_WR) != 0) {
    Close(id);
    return;
  }
  SetDeadline(id, conn, std::min(conn.deadline, Clock::now() + kLingerTime));
  if (!Watch(id, conn, EPOLLIN | EPOLLRDHUP)) return;
  OnLingerReadable(id, conn);
}

void MetricsServer::Impl::OnLingerReadable(uint64_t id, Connection& conn) {
  // Bounded so a client streaming data cannot hold the loop; the deadline ends it anyway.
  for (int i = 0; i < 16; ++i) {
    char buffer[kReadChunk];
    const ssize_t n = read(conn.fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) break;
  }
  Close(id);
}

void MetricsServer::Impl::SetDeadline(uint64_t id, Connection& conn, Clock::time_point deadline) {
  deadlines_.erase({conn.deadline, id});
  conn.deadline = deadline;
  deadlines_.insert({deadline, id});
}

bool MetricsServer::Impl::Watch(uint64_t id, Connection& conn, uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.u64 = id;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, conn.fd.get(), &event) != 0) {
    TS_LOG(WARNING) << "metrics server: epoll_ctl mod: " << std::strerror(errno);
    Close(id);
    return false;
  }
  return true;
}

void MetricsServer::Impl::Close(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  deadlines_.erase({it->second.deadline, id});
  // Explicit, because close() alone leaves the registration alive while a child forked by
  // another thread still holds a copy of the fd.
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
  connections_.erase(it);
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const MetricsServerOptions& options,
    std::vector<std::weak_ptr<prometheus::Collectable>> collectables) {
  auto impl = std::make_unique<Impl>(options, std::move(collectables));
  if (absl::Status status = impl->Init(); !status.ok()) return status;
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() = default;

int MetricsServer::port() const { return impl_->port(); }

}  // namespace tcpscope
