// Two-host test network built with iproute2 (namespaces, veth, static neighbours), and TCP
// helpers that open their sockets inside a chosen namespace.
#include "tests/harness/test_network.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/harness/process.h"

namespace tcpscope::testing {
namespace {

constexpr char kBogusMac[] = "02:00:00:00:00:99";
constexpr char kErrnoPayload[] = "type.tcpscope.dev/testing.errno";
// Nothing listens on it in a freshly booted B, so a connect there is answered by an RST.
constexpr int kProbePort = 9;
constexpr int kVethIndexA = 10;
constexpr int kVethIndexB = 11;

absl::Status ErrnoError(int error, absl::string_view message) {
  absl::Status status = absl::ErrnoToStatus(error, message);
  status.SetPayload(kErrnoPayload, absl::Cord(absl::StrCat(error)));
  return status;
}

// Runs the commands in order, stopping at the first failure, whose output becomes the error.
absl::Status Run(const std::vector<std::string>& commands) {
  for (const std::string& command : commands) {
    const CommandResult result = RunCommand(command + " 2>&1");
    if (result.exit_code != 0) {
      return absl::InternalError(absl::StrCat(command, ": ", result.output));
    }
  }
  return absl::OkStatus();
}

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_UNSPEC;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

absl::StatusOr<SocketAddress> ParseAddress(const std::string& ip, int port) {
  SocketAddress address;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    address.length = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    address.length = sizeof(sockaddr_in6);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("not an IP literal: ", ip));
  }
  address.family = address.storage.ss_family;
  return address;
}

// Waits (bounded) until linkwatch reports `device` operationally up: only then does it
// transmit; before, its packets are dropped.
absl::Status WaitOperUp(const std::string& netns, const std::string& device) {
  const std::string command = absl::StrCat("ip -n ", netns, " -br link show dev ", device);
  const absl::Time deadline = absl::Now() + absl::Seconds(3);
  std::string state;
  while (true) {
    state = RunCommand(command).output;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(state, ' ', absl::SkipWhitespace());
    if (fields.size() >= 2 && fields[1] == "UP") return absl::OkStatus();
    if (absl::Now() > deadline) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError(
      absl::StrCat(device, " in ", netns, " not up within 3 s: ", state));
}

// Runs `fn` inside `ns` and hands back its result; sockets it opens belong to `ns`.
absl::StatusOr<int> RunSocketFn(const TestNetns& ns,
                                const std::function<absl::StatusOr<int>()>& fn) {
  absl::StatusOr<int> result = absl::InternalError("not run");
  const absl::Status entered = ns.RunInside([&] { result = fn(); });
  if (!entered.ok()) return entered;
  return result;
}

// Whether `ip` answers a TCP connect from `from` within ~1 s (a refusal is an answer). A TCP
// probe rather than ping: the round trip proves the same, and ping is not a dependency.
absl::Status ProbeReachable(const TestNetns& from, const std::string& ip) {
  absl::Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    absl::StatusOr<int> fd = ConnectFrom(from, ip, kProbePort, /*nonblocking=*/true);
    if (!fd.ok()) {
      last = fd.status();
      continue;
    }
    pollfd entry{*fd, POLLOUT, 0};
    const int ready = poll(&entry, 1, 1000);
    int error = 0;
    socklen_t length = sizeof(error);
    getsockopt(*fd, SOL_SOCKET, SO_ERROR, &error, &length);
    close(*fd);
    if (ready == 1 && (error == 0 || error == ECONNREFUSED)) return absl::OkStatus();
    last = ready == 1 ? ErrnoError(error, "connect") : absl::DeadlineExceededError("no answer");
  }
  return absl::UnavailableError(absl::StrCat("after RebootB, A cannot reach B at ", ip, ":",
                                             kProbePort, " (last attempt: ", last.ToString(), ")"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TwoHostNetwork>> TwoHostNetwork::Create(const std::string& tag) {
  absl::StatusOr<std::unique_ptr<TestNetns>> a = TestNetns::Create(tag + "-a");
  if (!a.ok()) return a.status();
  absl::StatusOr<std::unique_ptr<TestNetns>> b = TestNetns::Create(tag + "-b");
  if (!b.ok()) return b.status();  // A's destructor deletes it
  // Interface names are at most 15 characters; the pid keeps parallel test processes apart.
  const int id = getpid() % 100000;
  std::unique_ptr<TwoHostNetwork> network(new TwoHostNetwork(
      std::move(*a), std::move(*b), absl::StrCat("tsa", id), absl::StrCat("tsb", id)));
  // On failure the network's destructor removes both namespaces and any veth between them.
  if (absl::Status linked = network->Link(); !linked.ok()) return linked;
  return network;
}

absl::Status TwoHostNetwork::Link() {
  const std::string& a = a_->name();
  const std::string& b = b_->name();
  absl::Status status = Run({
      // Created inside A with its peer inside B, so the pair never exists in the root namespace.
      // Distinct ifindexes: linkwatch takes a device whose ifindex equals its peer's (both are 2
      // in fresh namespaces) for an unstacked one and may delay activating its qdisc by up to
      // 1 s after carrier-up; packets sent meanwhile (ARP, NDP, SYN) are dropped, costing 1 s.
      absl::StrCat("ip -n ", a, " link add ", veth_a_, " index ", kVethIndexA,
                   " type veth peer name ", veth_b_, " index ", kVethIndexB, " netns ", b),
      absl::StrCat("ip -n ", a, " addr add ", a_ipv4(), "/24 dev ", veth_a_),
      absl::StrCat("ip -n ", b, " addr add ", b_ipv4(), "/24 dev ", veth_b_),
      // nodad: usable at once instead of tentative (bind fails) for about a second.
      absl::StrCat("ip -n ", a, " addr add ", a_ipv6(), "/64 dev ", veth_a_, " nodad"),
      absl::StrCat("ip -n ", b, " addr add ", b_ipv6(), "/64 dev ", veth_b_, " nodad"),
      absl::StrCat("ip -n ", a, " link set ", veth_a_, " up"),
      absl::StrCat("ip -n ", b, " link set ", veth_b_, " up"),
  });
  if (status.ok()) status = WaitOperUp(a, veth_a_);
  if (status.ok()) status = WaitOperUp(b, veth_b_);
  if (status.ok()) status = SetNeighbourFromA(unreachable_silent_ipv4());
  return status;
}

absl::Status TwoHostNetwork::SetBogusNeighbour(const TestNetns& ns, const std::string& device,
                                               const std::string& ip) {
  // Added after the link is up: taking a device down flushes even permanent entries.
  return Run({absl::StrCat("ip -n ", ns.name(), " neigh replace ", ip, " lladdr ", kBogusMac,
                           " dev ", device, " nud permanent")});
}

absl::Status TwoHostNetwork::SetNeighbourFromA(const std::string& ip) {
  return SetBogusNeighbour(*a_, veth_a_, ip);
}

absl::Status TwoHostNetwork::BlackholeFromA(const std::string& peer_ip) {
  return SetNeighbourFromA(peer_ip);
}

absl::Status TwoHostNetwork::UnblackholeFromA(const std::string& peer_ip) {
  return Run({absl::StrCat("ip -n ", a_->name(), " neigh del ", peer_ip, " dev ", veth_a_)});
}

absl::Status TwoHostNetwork::BlackholeFromB(const std::string& peer_ip) {
  return SetBogusNeighbour(*b_, veth_b_, peer_ip);
}

absl::Status TwoHostNetwork::UnblackholeFromB(const std::string& peer_ip) {
  return Run({absl::StrCat("ip -n ", b_->name(), " neigh del ", peer_ip, " dev ", veth_b_)});
}

absl::Status TwoHostNetwork::RebootB() {
  const std::string& b = b_->name();
  // The veth goes first and explicitly: sockets still open in the old B keep that namespace
  // alive after `ip netns del`, and its veth end with it, still linked to A.
  RunCommand(absl::StrCat("ip -n ", a_->name(), " link del ", veth_a_, " 2>/dev/null"));
  RunCommand(absl::StrCat("ip netns del ", b, " 2>/dev/null"));
  // b_ keeps naming B: the object stays valid for callers, only the namespace is new.
  absl::Status status =
      Run({absl::StrCat("ip netns add ", b), absl::StrCat("ip -n ", b, " link set lo up")});
  if (status.ok()) status = Link();
  if (status.ok()) status = ProbeReachable(*a_, b_ipv4());
  return status;
}

absl::Status SetSysctl(const TestNetns& ns, const std::string& key, const std::string& value) {
  return Run({absl::StrCat("ip netns exec ", ns.name(), " sysctl -qw ", key, "=", value)});
}

absl::StatusOr<int> ListenIn(const TestNetns& ns, const std::string& ip, int port) {
  absl::StatusOr<SocketAddress> address = ParseAddress(ip, port);
  if (!address.ok()) return address.status();
  return RunSocketFn(ns, [&]() -> absl::StatusOr<int> {
    const int fd = socket(address->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return ErrnoError(errno, "socket");
    const int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (bind(fd, address->get(), address->length) != 0 || listen(fd, 16) != 0) {
      const int error = errno;
      close(fd);
      return ErrnoError(error, absl::StrCat("listen on ", ip, " port ", port, " in ", ns.name()));
    }
    return fd;
  });
}

absl::StatusOr<int> ConnectFrom(const TestNetns& ns, const std::string& ip, int port,
                                bool nonblocking) {
  absl::StatusOr<SocketAddress> address = ParseAddress(ip, port);
  if (!address.ok()) return address.status();
  return RunSocketFn(ns, [&]() -> absl::StatusOr<int> {
    const int fd =
        socket(address->family, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) return ErrnoError(errno, "socket");
    if (connect(fd, address->get(), address->length) != 0 &&
        !(nonblocking && errno == EINPROGRESS)) {
      const int error = errno;
      close(fd);
      return ErrnoError(error,
                        absl::StrCat("connect to ", ip, " port ", port, " from ", ns.name()));
    }
    return fd;
  });
}

absl::StatusOr<int> AcceptOne(int listen_fd) {
  pollfd entry{listen_fd, POLLIN, 0};
  const int ready = poll(&entry, 1, 5000);
  if (ready < 0) return ErrnoError(errno, "poll");
  if (ready == 0) return absl::DeadlineExceededError("no connection to accept within 5 s");
  const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "accept");
  return fd;
}

absl::StatusOr<int> LocalPort(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return ErrnoError(errno, "getsockname");
  }
  if (address.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
  }
  if (address.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port);
  }
  return absl::InvalidArgumentError("not an IP socket");
}

std::optional<int> ErrnoOf(const absl::Status& status) {
  const auto payload = status.GetPayload(kErrnoPayload);
  int error = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &error)) {
    return std::nullopt;
  }
  return error;
}

}  // namespace tcpscope::testing
