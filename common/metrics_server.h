// Serves the Prometheus text exposition of a set of collectables over HTTP/1.x.
//
// prometheus-cpp's Exposer (civetweb, one worker thread per connection, 30 s request timeout)
// lets two idle connections delay a scrape by 30 s. This server is one epoll thread with
// non-blocking sockets: idle or slow connections cost a file descriptor, never a thread, and
// each connection has a hard deadline, so scrapes stay prompt with hundreds of idle clients.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "prometheus/collectable.h"

namespace tcpscope {

struct MetricsServerOptions {
  // "host:port" or "[v6]:port"; port 0 picks a free port.
  std::string listen = "127.0.0.1:9700";
  // A connection is closed when its request has not been read and answered by then.
  absl::Duration connection_deadline = absl::Seconds(5);
  // Connections beyond this are closed at once after accept.
  int max_connections = 1024;
  // Requests whose head exceeds this get 431 and are closed.
  size_t max_request_bytes = 8192;
};

class MetricsServer {
 public:
  // Binds, listens and starts the serving thread. GET /metrics answers with the text
  // exposition (version 0.0.4) of every collectable still alive, in order (an
  // ExpositionCollectable writes its own text, without Collect()); GET / with a short page
  // pointing to /metrics; other paths 404, other methods 405.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const MetricsServerOptions& options,
      std::vector<std::weak_ptr<prometheus::Collectable>> collectables);

  // Stops the thread and closes every connection.
  ~MetricsServer();

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const;

  class Impl;

 private:
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tcpscope
