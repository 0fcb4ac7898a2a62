// One poll loop forwards both directions of every pair; Cut and PassReplies change the pair
// list or the directions polled, under the mutex, and wake the loop.
#include "tests/harness/tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tcpscope::testing {
namespace {

int ConnectTo(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Moves what `from` has to `to` (blocking write; loopback peers read promptly). False when
// either side is done.
bool Forward(int from, int to) {
  char buffer[64 << 10];
  const ssize_t n = read(from, buffer, sizeof(buffer));
  if (n <= 0) return false;
  for (ssize_t done = 0; done < n;) {
    const ssize_t written = write(to, buffer + done, static_cast<size_t>(n - done));
    if (written <= 0) return false;
    done += written;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(int target_port) {
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(listener, 64) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    close(listener);
    return absl::InternalError(absl::StrCat("proxy listen: ", strerror(errno)));
  }
  std::unique_ptr<TcpProxy> proxy(new TcpProxy(listener, ntohs(address.sin_port), target_port));
  if (pipe2(proxy->wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  proxy->thread_ = std::thread([p = proxy.get()] { p->Run(); });
  return proxy;
}

TcpProxy::~TcpProxy() {
  stop_ = true;
  (void)!write(wake_[1], "x", 1);
  if (thread_.joinable()) thread_.join();
  {
    absl::MutexLock lock(&mu_);
    CloseAllLocked();
  }
  close(listener_);
  close(wake_[0]);
  close(wake_[1]);
}

int TcpProxy::CloseAllLocked() {
  const int count = static_cast<int>(pairs_.size());
  for (const Pair& pair : pairs_) {
    // RST rather than FIN: the path breaks, nobody said goodbye.
    const linger abort{1, 0};
    setsockopt(pair.client, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
    setsockopt(pair.target, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
    close(pair.client);
    close(pair.target);
  }
  pairs_.clear();
  return count;
}

int TcpProxy::Cut() {
  absl::MutexLock lock(&mu_);
  cut_requested_ = true;
  (void)!write(wake_[1], "x", 1);
  mu_.Await(absl::Condition(
      +[](bool* requested) { return !*requested; }, &cut_requested_));
  return last_cut_;
}

void TcpProxy::PassReplies(bool pass) {
  {
    absl::MutexLock lock(&mu_);
    pass_replies_ = pass;
  }
  (void)!write(wake_[1], "x", 1);
}

void TcpProxy::Run() {
  while (!stop_) {
    std::vector<pollfd> fds = {{listener_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    std::vector<Pair> pairs;
    bool pass_replies;
    {
      absl::MutexLock lock(&mu_);
      if (cut_requested_) {
        last_cut_ = CloseAllLocked();
        cut_requested_ = false;
      }
      pairs = pairs_;
      pass_replies = pass_replies_;
    }
    for (const Pair& pair : pairs) {
      fds.push_back({pair.client, POLLIN, 0});
      fds.push_back({pair.target, static_cast<short>(pass_replies ? POLLIN : 0), 0});
    }
    if (poll(fds.data(), fds.size(), 1000) <= 0) continue;
    if (fds[1].revents != 0) {
      char drain[64];
      while (read(wake_[0], drain, sizeof(drain)) > 0) {
      }
      continue;  // the pair list may have changed under us
    }
    if (fds[0].revents & POLLIN) {
      const int client = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client >= 0) {
        const int target = ConnectTo(target_port_);
        if (target < 0) {
          close(client);
        } else {
          absl::MutexLock lock(&mu_);
          pairs_.push_back({client, target});
          ++accepted_;
        }
      }
    }
    for (size_t i = 0; i < pairs.size(); ++i) {
      const pollfd& client = fds[2 + 2 * i];
      const pollfd& target = fds[3 + 2 * i];
      bool open = true;
      if (client.revents & (POLLIN | POLLHUP | POLLERR)) open = Forward(client.fd, target.fd);
      if (open && (target.revents & (POLLIN | POLLHUP | POLLERR))) {
        open = Forward(target.fd, client.fd);
      }
      if (!open) {
        absl::MutexLock lock(&mu_);
        for (auto it = pairs_.begin(); it != pairs_.end(); ++it) {
          if (it->client == pairs[i].client) {
            close(it->client);
            close(it->target);
            pairs_.erase(it);
            break;
          }
        }
      }
    }
  }
}

}  // namespace tcpscope::testing
