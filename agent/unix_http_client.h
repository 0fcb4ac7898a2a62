// A minimal HTTP/1.1 GET over a unix socket, for asking the container runtimes' local APIs
// (Docker, Podman, CRI-O). Everything the peer sends is treated as hostile: the response is
// bounded in size and time, and anything that is not plain HTTP/1.x with a Content-Length, a
// chunked body or a body to end of stream is refused.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tcpscope::agent {

struct HttpResponse {
  int status = 0;
  std::string body;  // de-chunked
};

// Parses the bytes of a response read so far. nullopt: incomplete, read more (never when
// `at_eof`). An error: malformed, truncated at end of stream, or using what this client refuses.
absl::StatusOr<std::optional<HttpResponse>> ParseHttpResponse(absl::string_view raw, bool at_eof);

struct UnixHttpOptions {
  absl::Duration timeout = absl::Milliseconds(200);  // for the whole exchange
  size_t max_response_bytes = 1 << 20;               // headers and body as received
};

// GET `target` (an absolute path of [A-Za-z0-9/._-]) from the server on unix socket
// `socket_path`. DeadlineExceeded past the timeout, ResourceExhausted past the size bound,
// Unavailable when nothing listens there.
absl::StatusOr<HttpResponse> UnixHttpGet(const std::string& socket_path, absl::string_view target,
                                         const UnixHttpOptions& options);

}  // namespace tcpscope::agent
