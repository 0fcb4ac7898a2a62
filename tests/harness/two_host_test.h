// A gtest fixture for end-to-end tests on two hosts: a TwoHostNetwork (namespaces A and B), a
// tcpscope-service, one agent per namespace, and the sockets the test opens between them,
// closed at the end. Needs root; skips loudly without it (fails in CI).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/tcp_proxy.h"
#include "tests/harness/tcpscope_stack.h"
#include "tests/harness/test_network.h"

namespace tcpscope::testing {

inline constexpr char kHostA[] = "host-a";
inline constexpr char kHostB[] = "host-b";

void SetInt(int fd, int level, int option, int value);
void EnableKeepalive(int fd, int idle_s, int interval_s, int count);
// Waits (bounded, 5 s) until the peer has closed its side: recv returns 0 or an error.
void AwaitEof(int fd);

class TwoHostTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Creates the network and the stack; agents for A and B get `agent_flags`. With
  // `through_proxy`, the agents reach the service through proxy_, which the test can cut. With
  // `replicas` > 1, a tier of that many services (--peers, --advertise), stack_ the first:
  // A's agent is homed on it, B's on the second (others_[0]).
  void Start(const std::vector<std::string>& agent_flags,
             const std::vector<std::string>& service_flags = {}, bool through_proxy = false,
             int replicas = 1);
  // The stack of the service `host`'s agent streams to.
  TcpscopeStack& HomeOf(const std::string& host);
  // The replicas' --advertise addresses, in the order started (stack_ first).
  const std::vector<std::string>& replica_addresses() const { return replica_addresses_; }

  int Keep(int fd);  // closed at the end of the test
  void CloseFd(int fd);

  // Listens on B (backlog 16) and returns the port; later Connect()s accept from it.
  int ListenOnB(const std::string& ip);
  // Connects A -> B; returns {client fd on A, server fd on B}, or {-1, -1} after a failure.
  std::pair<int, int> Connect(const std::string& ip, int port);
  // One connection A -> B on IPv4 to a new listener.
  std::pair<int, int> OneConnection();
  // N connections A -> B at `ip`; the client sends a byte and closes first, the server closes
  // after seeing EOF.
  void ShortConnections(const std::string& ip, int count);

  // Two connections A -> B over IPv6 that stay: one with keepalive on at A (600 s idle, so it
  // never probes in a test), and one that B closes while A never does (A's end in CLOSE_WAIT,
  // B's in FIN_WAIT2).
  void OpenLongAndCloseWaitIpv6();

  std::optional<double> Value(const std::string& name, const Labels& labels);

  std::unique_ptr<TwoHostNetwork> network_;
  std::unique_ptr<TcpscopeStack> stack_;
  std::vector<std::unique_ptr<TcpscopeStack>> others_;  // the replicas after stack_
  std::vector<std::string> replica_addresses_;
  std::unique_ptr<TcpProxy> proxy_;
  std::vector<int> fds_;
  int listener_ = -1;
  int listen_port_ = 0;
};

}  // namespace tcpscope::testing
