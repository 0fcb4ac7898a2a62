// The two-host fixture's setup, sockets and teardown.
#include "tests/harness/two_host_test.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "tests/harness/netns.h"
#include "tests/harness/sockets.h"

namespace tcpscope::testing {

void SetInt(int fd, int level, int option, int value) {
  ASSERT_EQ(setsockopt(fd, level, option, &value, sizeof(value)), 0) << strerror(errno);
}

void EnableKeepalive(int fd, int idle_s, int interval_s, int count) {
  SetInt(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
  SetInt(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle_s);
  SetInt(fd, IPPROTO_TCP, TCP_KEEPINTVL, interval_s);
  SetInt(fd, IPPROTO_TCP, TCP_KEEPCNT, count);
}

void AwaitEof(int fd) {
  for (int i = 0; i < 100; ++i) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) == 1) {
      char byte;
      if (recv(fd, &byte, 1, MSG_DONTWAIT) <= 0) return;
    }
  }
  ADD_FAILURE() << "peer did not close within 5 s";
}

void TwoHostTest::SetUp() { TCPSCOPE_REQUIRE_ROOT(); }

void TwoHostTest::TearDown() {
  for (int fd : fds_) close(fd);
  if (HasFailure() && stack_) std::cerr << stack_->Logs();
  if (HasFailure()) {
    for (const auto& other : others_) std::cerr << other->Logs();
  }
}

TcpscopeStack& TwoHostTest::HomeOf(const std::string& host) {
  return host == kHostB && !others_.empty() ? *others_[0] : *stack_;
}

void TwoHostTest::Start(const std::vector<std::string>& agent_flags,
                        const std::vector<std::string>& service_flags, bool through_proxy,
                        int replicas) {
  std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  for (char& c : name) {
    if (c == '/') c = '-';  // parameterized tests' names
  }
  auto network = TwoHostNetwork::Create("twohost");
  ASSERT_TRUE(network.ok()) << network.status();
  network_ = std::move(*network);
  std::vector<int> ports;
  std::vector<std::string> flags = service_flags;
  if (replicas > 1) {
    for (int i = 0; i < replicas; ++i) {
      ports.push_back(FreeTcpPort());
      replica_addresses_.push_back(absl::StrCat("127.0.0.1:", ports.back()));
    }
    flags.push_back(absl::StrCat("--peers=", absl::StrJoin(replica_addresses_, ",")));
    flags.push_back("--replica_down_after=1s");
  }
  for (int i = 0; i < std::max(replicas, 1); ++i) {
    std::vector<std::string> replica_flags = flags;
    if (replicas > 1) replica_flags.push_back("--advertise=" + replica_addresses_[i]);
    auto stack = TcpscopeStack::Start(replicas > 1 ? absl::StrCat(name, "-replica", i) : name,
                                      replica_flags, replicas > 1 ? ports[i] : 0);
    ASSERT_TRUE(stack.ok()) << stack.status();
    if (i == 0) {
      stack_ = std::move(*stack);
    } else {
      others_.push_back(std::move(*stack));
    }
  }
  if (through_proxy) {
    auto proxy = TcpProxy::Start(stack_->grpc_port());
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = std::move(*proxy);
    stack_->set_agent_service_port(proxy_->port());
  }
  ASSERT_TRUE(stack_->AddAgent(kHostA, network_->a().path(), agent_flags).ok());
  ASSERT_TRUE(HomeOf(kHostB).AddAgent(kHostB, network_->b().path(), agent_flags).ok());
  ASSERT_TRUE(stack_->WaitForAgents().ok()) << stack_->Logs();
  for (const auto& other : others_) {
    ASSERT_TRUE(other->WaitForAgents().ok()) << other->Logs();
  }
  if (replicas > 1) {
    // Every replica counts the others up, and the ring's quiet window (twice
    // --replica_down_after) has passed: from here on, pairing is as with one service.
    std::vector<TcpscopeStack*> tier = {stack_.get()};
    for (const auto& other : others_) tier.push_back(other.get());
    for (TcpscopeStack* replica : tier) {
      ASSERT_EQ(replica->WaitForValue("tcpscope_service_replica_peers_up", {}, replicas - 1),
                replicas - 1)
          << replica->Logs();
    }
    absl::SleepFor(absl::Seconds(2));
  }
}

int TwoHostTest::Keep(int fd) {
  fds_.push_back(fd);
  return fd;
}

void TwoHostTest::CloseFd(int fd) {
  close(fd);
  fds_.erase(std::remove(fds_.begin(), fds_.end(), fd), fds_.end());
}

int TwoHostTest::ListenOnB(const std::string& ip) {
  auto listener = ListenIn(network_->b(), ip, 0);
  EXPECT_TRUE(listener.ok()) << listener.status();
  if (!listener.ok()) return 0;
  Keep(*listener);
  listener_ = *listener;
  listen_port_ = *LocalPort(*listener);
  return listen_port_;
}

std::pair<int, int> TwoHostTest::Connect(const std::string& ip, int port) {
  auto client = ConnectFrom(network_->a(), ip, port);
  EXPECT_TRUE(client.ok()) << client.status();
  auto server = AcceptOne(listener_);
  EXPECT_TRUE(server.ok()) << server.status();
  if (!client.ok() || !server.ok()) return {-1, -1};
  return {Keep(*client), Keep(*server)};
}

std::pair<int, int> TwoHostTest::OneConnection() {
  return Connect(network_->b_ipv4(), ListenOnB(network_->b_ipv4()));
}

void TwoHostTest::ShortConnections(const std::string& ip, int count) {
  const int port = ListenOnB(ip);
  for (int i = 0; i < count; ++i) {
    auto [client, server] = Connect(ip, port);
    ASSERT_GE(client, 0);
    ASSERT_EQ(send(client, "x", 1, 0), 1);
    CloseFd(client);
    AwaitEof(server);
    CloseFd(server);
  }
}

void TwoHostTest::OpenLongAndCloseWaitIpv6() {
  const int port = ListenOnB(network_->b_ipv6());
  auto [long_client, long_server] = Connect(network_->b_ipv6(), port);
  ASSERT_GE(long_client, 0);
  EnableKeepalive(long_client, 600, 60, 9);
  auto [wait_client, wait_server] = Connect(network_->b_ipv6(), port);
  ASSERT_GE(wait_client, 0);
  CloseFd(wait_server);
}

std::optional<double> TwoHostTest::Value(const std::string& name, const Labels& labels) {
  return MetricValue(stack_->Scrape(), name, labels);
}

}  // namespace tcpscope::testing
