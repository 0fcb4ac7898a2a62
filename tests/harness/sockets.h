// Real TCP sockets for tests: free ports, connection pairs, and a tiny HTTP GET.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tcpscope::testing {

// A port that was free on every address a moment ago, below the kernel's ephemeral range (so no
// client socket takes it before the server binds it), and not given before in this process.
int FreeTcpPort();

// GET http://host:port/path; returns the body of a 200 response.
absl::StatusOr<std::string> HttpGet(const std::string& host, int port, const std::string& path);

// N connections to a listener on 127.0.0.1 of the calling thread's namespace. The first
// `keepalive` client sockets get SO_KEEPALIVE. Owns and closes every fd.
class ConnectionSet {
 public:
  static absl::StatusOr<ConnectionSet> Open(int count, int keepalive);
  ConnectionSet(ConnectionSet&& other) noexcept;
  ConnectionSet& operator=(ConnectionSet&&) = delete;
  ~ConnectionSet();

  int listen_port() const { return listen_port_; }
  void CloseClients();
  void CloseServers();
  void CloseListener();

 private:
  ConnectionSet() = default;
  int listener_ = -1;
  int listen_port_ = 0;
  std::vector<int> clients_;
  std::vector<int> servers_;
};

}  // namespace tcpscope::testing
