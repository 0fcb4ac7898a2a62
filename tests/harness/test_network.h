// Two network namespaces joined by a veth pair, as two hosts on one link, for tests that need
// real peers: refused and silently lost connects, blackholed paths, and a peer that reboots.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/harness/netns.h"

namespace tcpscope::testing {

// Hosts A and B: namespaces "tcpscope-<tag>-a-<pid>" and "tcpscope-<tag>-b-<pid>", linked by
// veth_a() (in A) and veth_b() (in B). IPv4 198.18.0.0/24 (RFC 2544 benchmarking range) and
// IPv6 fd00:7c::/64 exist only inside the two namespaces; nothing is added to the root one.
class TwoHostNetwork {
 public:
  static absl::StatusOr<std::unique_ptr<TwoHostNetwork>> Create(const std::string& tag);
  // Deletes both namespaces (their veth ends go with them), whatever state they are in.
  ~TwoHostNetwork() = default;
  TwoHostNetwork(const TwoHostNetwork&) = delete;
  TwoHostNetwork& operator=(const TwoHostNetwork&) = delete;

  const TestNetns& a() const { return *a_; }
  // The same object before and after RebootB(): the namespace behind the name is replaced.
  const TestNetns& b() const { return *b_; }
  const std::string& veth_a() const { return veth_a_; }
  const std::string& veth_b() const { return veth_b_; }

  std::string a_ipv4() const { return "198.18.0.1"; }
  std::string b_ipv4() const { return "198.18.0.2"; }
  std::string a_ipv6() const { return "fd00:7c::1"; }
  std::string b_ipv6() const { return "fd00:7c::2"; }
  // In the subnet but owned by nobody; A has a permanent bogus neighbour entry for it, so SYNs
  // to it vanish without an ARP failure (which would answer EHOSTUNREACH): connects time out.
  std::string unreachable_silent_ipv4() const { return "198.18.0.9"; }

  // A silently loses everything it sends to `peer_ip` (IPv4 or IPv6): its neighbour entry is
  // replaced by a permanent bogus MAC, so frames leave A but B drops them and nobody sends ICMP.
  absl::Status BlackholeFromA(const std::string& peer_ip);
  // Deletes that entry; A resolves the peer afresh on its next transmission.
  absl::Status UnblackholeFromA(const std::string& peer_ip);
  // The same from B's side: B silently loses everything it sends to `peer_ip` (e.g. its FIN or
  // RST never reaches A), while A's packets still reach B.
  absl::Status BlackholeFromB(const std::string& peer_ip);
  absl::Status UnblackholeFromB(const std::string& peer_ip);

  // B crashes and comes back with the same addresses: the veth pair and namespace B are deleted
  // (sockets the test still holds in the old B stay open but are cut off), then a fresh B with a
  // new veth pair is set up. Returns only once A reaches the new B. Blackhole entries are gone.
  absl::Status RebootB();

 private:
  TwoHostNetwork(std::unique_ptr<TestNetns> a, std::unique_ptr<TestNetns> b, std::string veth_a,
                 std::string veth_b)
      : a_(std::move(a)),
        b_(std::move(b)),
        veth_a_(std::move(veth_a)),
        veth_b_(std::move(veth_b)) {}

  // Creates the veth pair between the existing namespaces and configures both ends.
  absl::Status Link();
  absl::Status SetNeighbourFromA(const std::string& ip);
  // A permanent bogus neighbour entry for `ip` in namespace `ns` on `device`.
  static absl::Status SetBogusNeighbour(const TestNetns& ns, const std::string& device,
                                        const std::string& ip);

  std::unique_ptr<TestNetns> a_;
  std::unique_ptr<TestNetns> b_;
  std::string veth_a_;
  std::string veth_b_;
};

// `sysctl -w key=value` inside `ns` (per-namespace keys only, e.g. net.ipv4.tcp_syn_retries).
absl::Status SetSysctl(const TestNetns& ns, const std::string& key, const std::string& value);

// A TCP listener (backlog 16) on ip:port inside `ns`; port 0 picks a free one (see LocalPort).
// The caller owns the returned fd. `ip` is an IPv4 or IPv6 literal.
absl::StatusOr<int> ListenIn(const TestNetns& ns, const std::string& ip, int port);

// A TCP socket created inside `ns` and connected to ip:port. Blocking: returns once connected;
// a refused or timed-out connect is an error whose errno ErrnoOf() recovers. Non-blocking: the
// connect may still be in progress (EINPROGRESS is not an error). The caller owns the fd.
absl::StatusOr<int> ConnectFrom(const TestNetns& ns, const std::string& ip, int port,
                                bool nonblocking = false);

// Accepts one connection, waiting at most 5 s. The caller owns the fd.
absl::StatusOr<int> AcceptOne(int listen_fd);

// The local port a socket is bound to.
absl::StatusOr<int> LocalPort(int fd);

// The errno behind a status returned by the functions above, when there was one: absl's status
// codes merge several errnos (ECONNREFUSED and ECONNRESET are both UNAVAILABLE).
std::optional<int> ErrnoOf(const absl::Status& status);

}  // namespace tcpscope::testing
