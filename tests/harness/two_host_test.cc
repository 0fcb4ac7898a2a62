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

#include "tests/harness/netns.h"

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
}

void TwoHostTest::Start(const std::vector<std::string>& agent_flags,
                        const std::vector<std::string>& service_flags, bool through_proxy) {
  const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  auto network = TwoHostNetwork::Create("twohost");
  ASSERT_TRUE(network.ok()) << network.status();
  network_ = std::move(*network);
  auto stack = TcpscopeStack::Start(name, service_flags);
  ASSERT_TRUE(stack.ok()) << stack.status();
  stack_ = std::move(*stack);
  if (through_proxy) {
    auto proxy = TcpProxy::Start(stack_->grpc_port());
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = std::move(*proxy);
    stack_->set_agent_service_port(proxy_->port());
  }
  ASSERT_TRUE(stack_->AddAgent(kHostA, network_->a().path(), agent_flags).ok());
  ASSERT_TRUE(stack_->AddAgent(kHostB, network_->b().path(), agent_flags).ok());
  ASSERT_TRUE(stack_->WaitForAgents().ok()) << stack_->Logs();
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
