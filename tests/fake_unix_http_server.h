// A fake runtime API for tests: a unix socket server (in a temp dir) that answers each
// connection with a canned raw response, written in pieces, and records the request lines. It can
// also stall (never answer) or flood (write until the client hangs up), as a hung or hostile
// runtime would.
#pragma once

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace tcpscope::testing {

class FakeUnixHttpServer {
 public:
  enum class Mode { kAnswer, kStall, kFlood };
  // `answer` gives the raw response for a request line ("GET /x HTTP/1.1").
  using Answer = std::function<std::string(const std::string& request_line)>;

  explicit FakeUnixHttpServer(Answer answer) : answer_(std::move(answer)) {
    char pattern[] = "/tmp/fake_runtime.XXXXXX";
    dir_ = mkdtemp(pattern);
    path_ = dir_ + "/api.sock";
    listener_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path_.c_str(), sizeof(address.sun_path) - 1);
    bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    listen(listener_, 16);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeUnixHttpServer() {
    stopping_ = true;
    shutdown(listener_, SHUT_RDWR);
    thread_.join();
    close(listener_);
    std::filesystem::remove_all(dir_);
  }

  const std::string& path() const { return path_; }
  void set_mode(Mode mode) { mode_ = mode; }
  // Bytes per write of the answer (1: byte by byte).
  void set_piece(size_t piece) { piece_ = piece; }
  // Keeps the connection open after answering (a server ignoring "Connection: close").
  void set_linger(bool linger) { linger_ = linger; }
  std::vector<std::string> requests() {
    absl::MutexLock lock(&mutex_);
    return requests_;
  }

 private:
  void Serve() {
    while (!stopping_) {
      const int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      std::string request;
      char buffer[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = read(fd, buffer, sizeof(buffer));
        if (n <= 0) break;
        request.append(buffer, static_cast<size_t>(n));
      }
      const std::string line = request.substr(0, request.find("\r\n"));
      {
        absl::MutexLock lock(&mutex_);
        requests_.push_back(line);
      }
      if (mode_ == Mode::kStall) {
        // Holds the connection until the client gives up (reads its close) or the test ends.
        while (!stopping_ && read(fd, buffer, sizeof(buffer)) > 0) {
        }
      } else if (mode_ == Mode::kFlood) {
        const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[";
        send(fd, head.data(), head.size(), MSG_NOSIGNAL);
        const std::string chunk(65536, '1');
        while (!stopping_ && send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) > 0) {
        }
      } else {
        const std::string answer = answer_(line);
        for (size_t at = 0; at < answer.size(); at += piece_.load()) {
          if (send(fd, answer.data() + at, std::min(piece_.load(), answer.size() - at),
                   MSG_NOSIGNAL) < 0) {
            break;
          }
        }
        if (linger_) {
          while (!stopping_ && read(fd, buffer, sizeof(buffer)) > 0) {
          }
        }
      }
      close(fd);
    }
  }

  const Answer answer_;
  std::string dir_;
  std::string path_;
  int listener_ = -1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<Mode> mode_{Mode::kAnswer};
  std::atomic<size_t> piece_{1 << 20};
  std::atomic<bool> linger_{false};
  absl::Mutex mutex_;
  std::vector<std::string> requests_;
};

// A complete HTTP/1.1 response with a Content-Length.
inline std::string HttpAnswer(int status, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

}  // namespace tcpscope::testing
