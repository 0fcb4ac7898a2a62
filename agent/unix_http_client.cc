// HTTP/1.1 over a non-blocking unix socket with one deadline for connect, write and read.
#include "agent/unix_http_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace tcpscope::agent {
namespace {

constexpr size_t kMaxHeaderBytes = 64 << 10;
constexpr size_t kMaxChunkSizeDigits = 8;  // < 4 GiB; the total is bounded anyway

bool IsDigits(absl::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Decodes a chunked body from `raw`. nullopt: more bytes are needed.
absl::StatusOr<std::optional<std::string>> Dechunk(absl::string_view raw) {
  std::string body;
  while (true) {
    const size_t line_end = raw.find("\r\n");
    if (line_end == absl::string_view::npos) {
      if (raw.size() > kMaxChunkSizeDigits + 256) {
        return absl::InvalidArgumentError("chunk size line too long");
      }
      return std::nullopt;
    }
    absl::string_view size_text = raw.substr(0, line_end);
    if (const size_t ext = size_text.find(';'); ext != absl::string_view::npos) {
      size_text = size_text.substr(0, ext);  // chunk extensions are ignored
    }
    size_text = absl::StripAsciiWhitespace(size_text);
    if (size_text.empty() || size_text.size() > kMaxChunkSizeDigits) {
      return absl::InvalidArgumentError("bad chunk size");
    }
    uint64_t size = 0;
    for (char c : size_text) {
      int digit;
      if (c >= '0' && c <= '9') {
        digit = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        digit = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        digit = c - 'A' + 10;
      } else {
        return absl::InvalidArgumentError("bad chunk size");
      }
      size = size * 16 + static_cast<uint64_t>(digit);
    }
    raw.remove_prefix(line_end + 2);
    if (size == 0) {
      // Trailers (ignored) end with an empty line.
      if (absl::StartsWith(raw, "\r\n")) return body;
      if (raw.find("\r\n\r\n") != absl::string_view::npos) return body;
      if (raw.size() > kMaxHeaderBytes) return absl::InvalidArgumentError("trailers too long");
      return std::nullopt;
    }
    if (raw.size() < size + 2) return std::nullopt;
    if (raw.substr(size, 2) != "\r\n") return absl::InvalidArgumentError("chunk not terminated");
    body.append(raw.data(), size);
    raw.remove_prefix(size + 2);
  }
}

}  // namespace

absl::StatusOr<std::optional<HttpResponse>> ParseHttpResponse(absl::string_view raw, bool at_eof) {
  const size_t header_end = raw.find("\r\n\r\n");
  if (header_end == absl::string_view::npos) {
    if (raw.size() > kMaxHeaderBytes) return absl::InvalidArgumentError("headers too long");
    if (at_eof) return absl::InvalidArgumentError("response ends inside its headers");
    return std::nullopt;
  }
  if (header_end > kMaxHeaderBytes) return absl::InvalidArgumentError("headers too long");
  std::vector<absl::string_view> lines = absl::StrSplit(raw.substr(0, header_end), "\r\n");
  // "HTTP/1.1 200 OK"
  const absl::string_view status_line = lines[0];
  if (!absl::StartsWith(status_line, "HTTP/1.") || status_line.size() < 12 ||
      status_line[8] != ' ' || !IsDigits(status_line.substr(9, 3)) ||
      (status_line.size() > 12 && status_line[12] != ' ')) {
    return absl::InvalidArgumentError("not an HTTP/1.x status line");
  }
  HttpResponse response;
  response.status =
      (status_line[9] - '0') * 100 + (status_line[10] - '0') * 10 + (status_line[11] - '0');
  if (response.status < 200) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected status ", response.status));
  }
  std::optional<uint64_t> content_length;
  bool chunked = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos || colon == 0) {
      return absl::InvalidArgumentError("malformed header line");
    }
    const absl::string_view name = lines[i].substr(0, colon);
    const absl::string_view value = absl::StripAsciiWhitespace(lines[i].substr(colon + 1));
    if (absl::EqualsIgnoreCase(name, "content-length")) {
      uint64_t length;
      if (!IsDigits(value) || value.size() > 12 || !absl::SimpleAtoi(value, &length) ||
          (content_length.has_value() && *content_length != length)) {
        return absl::InvalidArgumentError("bad Content-Length");
      }
      content_length = length;
    } else if (absl::EqualsIgnoreCase(name, "transfer-encoding")) {
      if (!absl::EqualsIgnoreCase(value, "chunked")) {
        return absl::InvalidArgumentError(absl::StrCat("unsupported Transfer-Encoding"));
      }
      chunked = true;
    }
  }
  if (chunked && content_length.has_value()) {
    return absl::InvalidArgumentError("both Content-Length and chunked");
  }
  absl::string_view rest = raw.substr(header_end + 4);
  if (response.status == 204 || response.status == 304) return response;
  if (chunked) {
    absl::StatusOr<std::optional<std::string>> body = Dechunk(rest);
    if (!body.ok()) return body.status();
    if (!body->has_value()) {
      if (at_eof) return absl::InvalidArgumentError("response ends inside its chunked body");
      return std::nullopt;
    }
    response.body = std::move(**body);
    return response;
  }
  if (content_length.has_value()) {
    if (rest.size() < *content_length) {
      if (at_eof) return absl::InvalidArgumentError("response shorter than its Content-Length");
      return std::nullopt;
    }
    response.body = std::string(rest.substr(0, *content_length));
    return response;
  }
  if (!at_eof) return std::nullopt;  // the body runs to the end of the stream
  response.body = std::string(rest);
  return response;
}

namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Waits for `events` on `fd` until `deadline`.
absl::Status Wait(int fd, short events, absl::Time deadline) {
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("runtime API timed out");
    pollfd entry{fd, events, 0};
    const int ready = poll(&entry, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready > 0) return absl::OkStatus();
    if (ready < 0 && errno != EINTR) return absl::ErrnoToStatus(errno, "poll");
  }
}

bool IsSafeTarget(absl::string_view target) {
  if (target.empty() || target[0] != '/' || target.size() > 1024) return false;
  for (char c : target) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '/' && c != '.' && c != '_' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<HttpResponse> UnixHttpGet(const std::string& socket_path, absl::string_view target,
                                         const UnixHttpOptions& options) {
  if (!IsSafeTarget(target)) return absl::InvalidArgumentError("bad request target");
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("bad socket path ", socket_path));
  }
  std::memcpy(address.sun_path, socket_path.data(), socket_path.size());
  const absl::Time deadline = absl::Now() + options.timeout;
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return absl::ErrnoToStatus(errno, "socket");
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    if (errno != EAGAIN && errno != EINPROGRESS) {
      return absl::UnavailableError(
          absl::StrCat("connect ", socket_path, ": ", std::strerror(errno)));
    }
    if (absl::Status status = Wait(fd.get(), POLLOUT, deadline); !status.ok()) return status;
    int error = 0;
    socklen_t length = sizeof(error);
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) {
      return absl::UnavailableError(
          absl::StrCat("connect ", socket_path, ": ", std::strerror(error)));
    }
  }
  const std::string request = absl::StrCat("GET ", target,
                                           " HTTP/1.1\r\nHost: localhost\r\nUser-Agent: "
                                           "tcpscope-agent\r\nAccept: application/json\r\n"
                                           "Connection: close\r\n\r\n");
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (absl::Status status = Wait(fd.get(), POLLOUT, deadline); !status.ok()) return status;
    } else {
      return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
    }
  }
  std::string raw;
  char buffer[65536];  // few reads: each one re-parses what came so far
  while (true) {
    const ssize_t n = recv(fd.get(), buffer, sizeof(buffer), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN)
        return absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno)));
      if (absl::Status status = Wait(fd.get(), POLLIN, deadline); !status.ok()) return status;
      continue;
    }
    if (n > 0) {
      if (raw.size() + static_cast<size_t>(n) > options.max_response_bytes) {
        return absl::ResourceExhaustedError(
            absl::StrCat("response larger than ", options.max_response_bytes, " bytes"));
      }
      raw.append(buffer, static_cast<size_t>(n));
    }
    absl::StatusOr<std::optional<HttpResponse>> response = ParseHttpResponse(raw, n == 0);
    if (!response.ok()) return response.status();
    if (response->has_value()) return std::move(**response);
  }
}

}  // namespace tcpscope::agent
