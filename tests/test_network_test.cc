// Checks TwoHostNetwork against the real kernel: data over IPv4 and IPv6, refused and silently
// lost connects, a blackholed path, a rebooting peer, and cleanup. Needs root; skips loudly.
#include "tests/harness/test_network.h"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/harness/netns.h"
#include "tests/harness/process.h"

namespace tcpscope::testing {
namespace {

// Nothing listens in a fresh namespace, so any port of B is closed.
constexpr int kClosedPort = 9;

std::string PeerIp(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length);
  char text[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&address)->sin_addr, text, sizeof(text));
  } else if (address.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&address)->sin6_addr, text, sizeof(text));
  }
  return text;
}

// Bytes sent but not yet acknowledged by the peer.
int Unacked(int fd) {
  int queued = -1;
  ioctl(fd, SIOCOUTQ, &queued);
  return queued;
}

int TcpState(int fd) {
  tcp_info info{};
  socklen_t length = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return -1;
  return info.tcpi_state;
}

// Reads exactly `size` bytes, waiting at most 5 s in all.
std::string ReceiveBytes(int fd, size_t size) {
  std::string data;
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (data.size() < size && absl::Now() < deadline) {
    pollfd entry{fd, POLLIN, 0};
    if (poll(&entry, 1, 100) != 1) continue;
    char buffer[4096];
    const ssize_t n = recv(fd, buffer, std::min(sizeof(buffer), size - data.size()), 0);
    if (n <= 0) break;
    data.append(buffer, n);
  }
  return data;
}

bool SendAll(int fd, const std::string& data) {
  return send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
}

// First word of each line of `ip netns list`.
std::vector<std::string> NamespaceNames() {
  std::vector<std::string> names;
  for (absl::string_view line :
       absl::StrSplit(RunCommand("ip netns list").output, '\n', absl::SkipEmpty())) {
    names.emplace_back(line.substr(0, line.find(' ')));
  }
  return names;
}

bool Contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// The test network must never touch the root namespace's interfaces or addresses.
void ExpectRootNamespaceUntouched(const TwoHostNetwork& network) {
  const std::string links = RunCommand("ip -br link").output;
  EXPECT_FALSE(absl::StrContains(links, network.veth_a())) << links;
  EXPECT_FALSE(absl::StrContains(links, network.veth_b())) << links;
  const std::string addresses = RunCommand("ip -br addr").output;
  EXPECT_FALSE(absl::StrContains(addresses, "198.18.0.")) << addresses;
  EXPECT_FALSE(absl::StrContains(addresses, "fd00:7c:")) << addresses;
}

class TwoHostNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TCPSCOPE_REQUIRE_ROOT();
    absl::StatusOr<std::unique_ptr<TwoHostNetwork>> network = TwoHostNetwork::Create("tnet");
    ASSERT_TRUE(network.ok()) << network.status();
    net_ = std::move(*network);
  }

  void TearDown() override {
    for (int fd : fds_) close(fd);
    fds_.clear();
    net_.reset();
  }

  // Owns `fd` until the test ends.
  int Keep(int fd) {
    fds_.push_back(fd);
    return fd;
  }

  // A connection from A to B's `ip`: the client end in A, the server end in B.
  void Connect(const std::string& ip, int* client, int* server, int* port = nullptr) {
    absl::StatusOr<int> listener = ListenIn(net_->b(), ip, 0);
    ASSERT_TRUE(listener.ok()) << listener.status();
    Keep(*listener);
    absl::StatusOr<int> listen_port = LocalPort(*listener);
    ASSERT_TRUE(listen_port.ok()) << listen_port.status();
    absl::StatusOr<int> connected = ConnectFrom(net_->a(), ip, *listen_port);
    ASSERT_TRUE(connected.ok()) << connected.status();
    *client = Keep(*connected);
    absl::StatusOr<int> accepted = AcceptOne(*listener);
    ASSERT_TRUE(accepted.ok()) << accepted.status();
    *server = Keep(*accepted);
    if (port != nullptr) *port = *listen_port;
  }

  std::unique_ptr<TwoHostNetwork> net_;
  std::vector<int> fds_;
};

TEST_F(TwoHostNetworkTest, DataFlowsBothWaysOverIpv4AndIpv6) {
  for (const auto& [a_ip, b_ip] :
       {std::pair{net_->a_ipv4(), net_->b_ipv4()}, std::pair{net_->a_ipv6(), net_->b_ipv6()}}) {
    SCOPED_TRACE(b_ip);
    int client = -1, server = -1;
    ASSERT_NO_FATAL_FAILURE(Connect(b_ip, &client, &server));
    // The connection crosses the veth between the hosts, not some loopback.
    EXPECT_EQ(PeerIp(server), a_ip);
    EXPECT_EQ(PeerIp(client), b_ip);
    ASSERT_TRUE(SendAll(client, "hello from A"));
    EXPECT_EQ(ReceiveBytes(server, 12), "hello from A");
    ASSERT_TRUE(SendAll(server, "hello from B"));
    EXPECT_EQ(ReceiveBytes(client, 12), "hello from B");
  }
}

TEST_F(TwoHostNetworkTest, ConnectToClosedPortIsRefused) {
  for (const std::string& ip : {net_->b_ipv4(), net_->b_ipv6()}) {
    absl::StatusOr<int> fd = ConnectFrom(net_->a(), ip, kClosedPort);
    if (fd.ok()) Keep(*fd);
    ASSERT_FALSE(fd.ok()) << ip;
    EXPECT_EQ(ErrnoOf(fd.status()), ECONNREFUSED) << fd.status();
  }
}

TEST_F(TwoHostNetworkTest, ConnectToSilentAddressTimesOut) {
  const std::string root_before = RunCommand("sysctl -n net.ipv4.tcp_syn_retries").output;
  ASSERT_TRUE(SetSysctl(net_->a(), "net.ipv4.tcp_syn_retries", "1").ok());
  // Checked before connecting: with the default (6) the connect would block for two minutes.
  ASSERT_EQ(RunCommand(absl::StrCat("ip netns exec ", net_->a().name(),
                                    " sysctl -n net.ipv4.tcp_syn_retries"))
                .output,
            "1\n");
  EXPECT_EQ(RunCommand("sysctl -n net.ipv4.tcp_syn_retries").output, root_before);

  const absl::Time start = absl::Now();
  absl::StatusOr<int> fd = ConnectFrom(net_->a(), net_->unreachable_silent_ipv4(), 80);
  const absl::Duration elapsed = absl::Now() - start;
  if (fd.ok()) Keep(*fd);
  ASSERT_FALSE(fd.ok());
  // ETIMEDOUT, not EHOSTUNREACH: the SYNs vanished, no ICMP or failed ARP answered them.
  EXPECT_EQ(ErrnoOf(fd.status()), ETIMEDOUT) << fd.status();
  // One SYN, one retransmission 1 s later, then 2 s more: about 3 s.
  EXPECT_GE(elapsed, absl::Seconds(2));
  EXPECT_LE(elapsed, absl::Seconds(5));
}

TEST_F(TwoHostNetworkTest, BlackholedPeerAcksNothingUntilUnblackholed) {
  for (const std::string& ip : {net_->b_ipv4(), net_->b_ipv6()}) {
    SCOPED_TRACE(ip);
    int client = -1, server = -1;
    ASSERT_NO_FATAL_FAILURE(Connect(ip, &client, &server));
    ASSERT_TRUE(net_->BlackholeFromA(ip).ok());
    const std::string data(1000, 'x');
    ASSERT_TRUE(SendAll(client, data));
    absl::SleepFor(absl::Milliseconds(500));
    // Retransmitted in vain: still unacked, and nothing reached B.
    EXPECT_GT(Unacked(client), 0);
    char byte;
    const ssize_t received = recv(server, &byte, 1, MSG_DONTWAIT);
    const int recv_errno = errno;
    EXPECT_EQ(received, -1);
    EXPECT_EQ(recv_errno, EAGAIN);

    ASSERT_TRUE(net_->UnblackholeFromA(ip).ok());
    // The next retransmission (backed off to at most ~1.6 s here) gets through.
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (Unacked(client) != 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
    EXPECT_EQ(Unacked(client), 0);
    EXPECT_EQ(ReceiveBytes(server, data.size()), data);
  }
}

TEST_F(TwoHostNetworkTest, PeerBlackholedFromBClosesUnheardUntilUnblackholed) {
  int client = -1, server = -1;
  ASSERT_NO_FATAL_FAILURE(Connect(net_->b_ipv4(), &client, &server));
  ASSERT_TRUE(net_->BlackholeFromB(net_->a_ipv4()).ok());
  // B's FIN leaves B but never reaches A: A's end stays established (half-open), B's waits.
  ASSERT_EQ(shutdown(server, SHUT_WR), 0) << strerror(errno);
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(TcpState(client), TCP_ESTABLISHED);
  char byte;
  EXPECT_EQ(recv(client, &byte, 1, MSG_DONTWAIT), -1);

  ASSERT_TRUE(net_->UnblackholeFromB(net_->a_ipv4()).ok());
  // B's next FIN retransmission (backed off to at most ~1.6 s here) gets through.
  pollfd entry{client, POLLIN, 0};
  ASSERT_EQ(poll(&entry, 1, 5000), 1) << "no FIN from B within 5 s of unblackholing";
  EXPECT_EQ(recv(client, &byte, 1, 0), 0);
}

TEST_F(TwoHostNetworkTest, RebootedPeerResetsConnectionsFromBeforeTheReboot) {
  int client = -1, server = -1, port = 0;
  ASSERT_NO_FATAL_FAILURE(Connect(net_->b_ipv4(), &client, &server, &port));
  ASSERT_TRUE(SendAll(client, "before"));
  ASSERT_EQ(ReceiveBytes(server, 6), "before");

  const absl::Status rebooted = net_->RebootB();
  ASSERT_TRUE(rebooted.ok()) << rebooted;
  // Nothing told A: its end is still established.
  EXPECT_EQ(TcpState(client), TCP_ESTABLISHED);

  // The new B knows no such connection and answers A's next segment with an RST.
  ASSERT_TRUE(SendAll(client, "after"));
  pollfd entry{client, POLLIN, 0};
  ASSERT_EQ(poll(&entry, 1, 5000), 1) << "no RST from the rebooted B within 5 s";
  char byte;
  const ssize_t received = recv(client, &byte, 1, 0);
  const int recv_errno = errno;
  EXPECT_EQ(received, -1);
  EXPECT_EQ(recv_errno, ECONNRESET);

  // The new B is a fresh host on the same address: the old listener's port is free there.
  int new_client = -1, new_server = -1;
  ASSERT_NO_FATAL_FAILURE(Connect(net_->b_ipv4(), &new_client, &new_server));
  ASSERT_TRUE(SendAll(new_client, "again"));
  EXPECT_EQ(ReceiveBytes(new_server, 5), "again");
  absl::StatusOr<int> same_port = ListenIn(net_->b(), net_->b_ipv4(), port);
  ASSERT_TRUE(same_port.ok()) << same_port.status();
  Keep(*same_port);
}

TEST(TwoHostNetworkCleanupTest, DestroyingTheNetworkLeavesNothingBehind) {
  TCPSCOPE_REQUIRE_ROOT();
  absl::StatusOr<std::unique_ptr<TwoHostNetwork>> network = TwoHostNetwork::Create("tnetgone");
  ASSERT_TRUE(network.ok()) << network.status();
  const std::string a = (*network)->a().name();
  const std::string b = (*network)->b().name();
  const std::string veth_a = (*network)->veth_a();
  const std::string veth_b = (*network)->veth_b();
  ASSERT_TRUE(Contains(NamespaceNames(), a));
  ASSERT_TRUE(Contains(NamespaceNames(), b));
  ExpectRootNamespaceUntouched(**network);

  // Sockets still open in the namespaces pin them in the kernel, but not in the root namespace.
  absl::StatusOr<int> listener = ListenIn((*network)->b(), (*network)->b_ipv4(), 0);
  ASSERT_TRUE(listener.ok()) << listener.status();
  absl::StatusOr<int> port = LocalPort(*listener);
  ASSERT_TRUE(port.ok());
  absl::StatusOr<int> client = ConnectFrom((*network)->a(), (*network)->b_ipv4(), *port);
  ASSERT_TRUE(client.ok()) << client.status();

  ASSERT_TRUE((*network)->RebootB().ok());
  ExpectRootNamespaceUntouched(**network);
  network->reset();

  const std::vector<std::string> names = NamespaceNames();
  EXPECT_FALSE(Contains(names, a));
  EXPECT_FALSE(Contains(names, b));
  for (const std::string& veth : {veth_a, veth_b}) {
    EXPECT_NE(RunCommand(absl::StrCat("ip link show dev ", veth, " >/dev/null 2>&1")).exit_code, 0)
        << veth << " is in the root namespace";
  }
  const std::string addresses = RunCommand("ip -br addr").output;
  EXPECT_FALSE(absl::StrContains(addresses, "198.18.0.")) << addresses;
  EXPECT_FALSE(absl::StrContains(addresses, "fd00:7c:")) << addresses;
  close(*listener);
  close(*client);
}

}  // namespace
}  // namespace tcpscope::testing
