// The events follow what the eBPF source reports (agent/bpf/tcpscope.bpf.c,
// agent/bpf_event_decoder.cc): a close names its initiator, reason, last state, lifetime and
// counters; a keepalive timeout is its unanswered probes, the keepalive_timeout event and a
// close with reason keepalive_timeout (initiator local, ETIMEDOUT); Linux then resets the
// connection, so the peer's end closes with reset_received.
#include "bench/fleet_model.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "absl/strings/str_format.h"
#include "bench/proto_wire.h"

namespace tcpscope::bench {
namespace {

namespace w = wire;

struct App {
  const char* name;
  const char* command;
  const char* namespace_name;
  uint16_t port;
};
constexpr std::array<App, 16> kApps = {{
    {"frontend", "node", "shop", 8080},
    {"checkout", "java", "shop", 8443},
    {"cart", "dotnet", "shop", 7070},
    {"catalog", "python3", "shop", 8000},
    {"payments", "java", "payments", 9443},
    {"ledger", "java", "payments", 9090},
    {"postgres", "postgres", "data", 5432},
    {"redis", "redis-server", "data", 6379},
    {"kafka", "java", "data", 9092},
    {"mongodb", "mongod", "data", 27017},
    {"envoy", "envoy", "mesh", 15001},
    {"prometheus", "prometheus", "monitoring", 9091},
    {"coredns", "coredns", "kube-system", 53},
    {"search", "java", "search", 9200},
    {"auth", "auth-server", "auth", 8081},
    {"api-gateway", "nginx", "default", 443},
}};

constexpr uint64_t kSecond = 1'000'000'000;
constexpr uint16_t kFirstEphemeral = 32768;
constexpr uint16_t kLastEphemeral = 60999;
constexpr uint32_t kFirstAddress = 0x0a000001;  // 10.0.0.1

// splitmix64: per-connection pseudo-random numbers derived from a cookie, without state.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::string Ipv4Bytes(uint32_t address) {
  const char bytes[4] = {static_cast<char>(address >> 24), static_cast<char>(address >> 16),
                         static_cast<char>(address >> 8), static_cast<char>(address)};
  return std::string(bytes, 4);
}

}  // namespace

Fleet::Fleet(const FleetShape& shape, uint64_t now_ns)
    : shape_(shape), slots_(shape.ends_per_host / 2), random_(shape.seed) {
  const int hosts = shape_.hosts;
  const int pods = shape_.pods_per_host;
  distance_.resize(static_cast<size_t>(slots_));
  server_pod_.resize(static_cast<size_t>(slots_));
  for (int j = 0; j < slots_; ++j) {
    distance_[j] = 1 + static_cast<int>(Random() % static_cast<uint64_t>(hosts - 1));
    server_pod_[j] = static_cast<int>(Random() % static_cast<uint64_t>(pods));
  }
  host_.resize(static_cast<size_t>(hosts));
  pods_.resize(static_cast<size_t>(hosts) * pods);
  for (int h = 0; h < hosts; ++h) {
    HostState& host = host_[h];
    host.address = kFirstAddress + static_cast<uint32_t>(h);
    host.next_cookie = (static_cast<uint64_t>(h + 1) << 40) | (Random() & 0xffffff);
    // Each host's rates start at a different fraction, so hosts do not act in lockstep.
    host.churn_credit = Uniform();
    host.probe_credit = Uniform();
    host.timeout_credit = Uniform();
    host.failure_credit = Uniform();
    for (int p = 0; p < pods; ++p) {
      const App& app = kApps[static_cast<size_t>(h * 7 + p) % kApps.size()];
      const uint64_t id = Mix((static_cast<uint64_t>(h) << 20) | p);
      const std::string pod_name = absl::StrFormat("%s-%08x-%05x", app.name,
                                                   static_cast<uint32_t>(id), (id >> 32) & 0xfffff);
      const std::string container_id =
          absl::StrFormat("%016x%016x%016x%016x", Mix(id), Mix(id + 1), Mix(id + 2), Mix(id + 3));
      const uint64_t u = Mix(id + 4);
      const uint64_t v = Mix(id + 5);
      const std::string pod_uid =
          absl::StrFormat("%08x-%04x-4%03x-8%03x-%012x", u & 0xffffffff, (u >> 32) & 0xffff,
                          (u >> 48) & 0xfff, v & 0xfff, (v >> 12) & 0xffffffffffff);
      auto write_origin = [&](std::string& out, bool with_process) {
        w::Varint(out, 1, 4026532000ULL + static_cast<uint64_t>(p));  // netns_inode
        w::Varint(out, 2, 10000 + static_cast<uint64_t>(p) * 7);      // cgroup_id
        w::Bytes(out, 3, container_id);
        w::Bytes(out, 4, pod_name);
        if (with_process) {
          w::Varint(out, 5, 1000 + static_cast<uint64_t>(p) * 97);  // pid
          w::Bytes(out, 6, app.command);
        }
        w::Bytes(out, 7, app.name);            // container_name
        w::Bytes(out, 8, app.namespace_name);  // pod_namespace
        w::Bytes(out, 9, pod_uid);
        w::Varint(out, 10, v1::CONTAINER_RUNTIME_CONTAINERD);
      };
      Pod& pod = pods_[static_cast<size_t>(h) * pods + p];
      write_origin(pod.origin, true);
      write_origin(pod.origin_kernel, false);
      pod.port = app.port;
    }
  }
  conns_.resize(static_cast<size_t>(hosts) * slots_);
  for (int h = 0; h < hosts; ++h) {
    for (int j = 0; j < slots_; ++j) {
      // Connections older than the simulation: no handshake event, started up to an hour ago.
      NewConnection(h, j, now_ns - Random() % (3600 * kSecond), /*with_events=*/false);
    }
  }
}

std::string Fleet::AddressText(int host) const {
  const uint32_t a = host_[host].address;
  return absl::StrFormat("%d.%d.%d.%d", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

int Fleet::ClientPeer(int host, int slot) const { return PeerOfClient(host, slot); }
int Fleet::ServerPeer(int host, int slot) const { return PeerOfServer(host, slot); }

const Fleet::Pod& Fleet::ClientPod(int host, int slot) const {
  return pods_[static_cast<size_t>(host) * shape_.pods_per_host + slot % shape_.pods_per_host];
}

const Fleet::Pod& Fleet::ServerPod(int host, int slot) const {
  return pods_[static_cast<size_t>(host) * shape_.pods_per_host + server_pod_[slot]];
}

uint16_t Fleet::NextPort(HostState& host) {
  const uint16_t port = host.next_port;
  host.next_port = port == kLastEphemeral ? kFirstEphemeral : port + 1;
  return port;
}

void Fleet::WriteEndpoints(std::string& out, uint32_t local, uint16_t local_port, uint32_t remote,
                           uint16_t remote_port) {
  const std::string local_bytes = Ipv4Bytes(local);
  const std::string remote_bytes = Ipv4Bytes(remote);
  w::Bytes(out, 1, local_bytes);
  w::Varint(out, 2, local_port);
  w::Bytes(out, 3, remote_bytes);
  w::Varint(out, 4, remote_port);
}

template <typename WriteKind>
void Fleet::AddEvent(int host, v1::EventKind kind, uint64_t time_ns, uint64_t cookie,
                     const std::string& origin, uint32_t local, uint16_t local_port,
                     uint32_t remote, uint16_t remote_port, v1::Role role, WriteKind write_kind) {
  HostState& state = host_[host];
  w::Message(state.pending, 2, scratch_[0], [&](std::string& event) {
    w::Varint(event, 1, time_ns);
    w::Varint(event, 2, cookie);
    w::Message(event, 4, scratch_[1], [&](std::string& endpoints) {
      WriteEndpoints(endpoints, local, local_port, remote, remote_port);
    });
    w::Varint(event, 5, role);
    // As the agent sends it: the origin is an entry of the batch's table (a few per batch).
    auto it = std::find(state.pending_origins.begin(), state.pending_origins.end(), &origin);
    if (it == state.pending_origins.end()) {
      it = state.pending_origins.insert(state.pending_origins.end(), &origin);
    }
    w::Varint(event, 6, static_cast<uint64_t>(it - state.pending_origins.begin()) + 1);
    write_kind(event, scratch_[1]);
  });
  ++state.pending_events;
  ++state.pending_kinds[kind];
}

void Fleet::NewConnection(int host, int slot, uint64_t now_ns, bool with_events) {
  const int server = PeerOfClient(host, slot);
  Conn& conn = ClientConn(host, slot);
  HostState& client_state = host_[host];
  HostState& server_state = host_[server];
  conn.client_cookie = client_state.next_cookie++;
  conn.server_cookie = server_state.next_cookie++;
  conn.start_ns = now_ns;
  conn.ephemeral_port = NextPort(client_state);
  const uint64_t r = Random();
  conn.srtt_us = 50 + static_cast<uint32_t>(r % 2000);  // one zone: 50 us to 2 ms
  conn.byte_rate = static_cast<uint32_t>(Mix(r) % 200000);
  conn.client_keepalive = Uniform() < shape_.keepalive_fraction;
  conn.server_keepalive = Uniform() < shape_.keepalive_fraction;
  if (!with_events) return;
  const Pod& client_pod = ClientPod(host, slot);
  const Pod& server_pod = ServerPod(server, slot);
  const uint64_t handshake_us = 2 * conn.srtt_us;
  auto handshake = [&](std::string& event, std::string& scratch) {
    w::Message(event, 10, scratch, [&](std::string& h) { w::Varint(h, 1, handshake_us); });
  };
  AddEvent(host, v1::EVENT_KIND_HANDSHAKE, now_ns, conn.client_cookie, client_pod.origin,
           client_state.address, conn.ephemeral_port, server_state.address, server_pod.port,
           v1::ROLE_CLIENT, handshake);
  AddEvent(server, v1::EVENT_KIND_HANDSHAKE, now_ns + conn.srtt_us * 500ULL, conn.server_cookie,
           server_pod.origin_kernel, server_state.address, server_pod.port, client_state.address,
           conn.ephemeral_port, v1::ROLE_SERVER, handshake);
}

void Fleet::CloseConnection(int host, int slot, uint64_t now_ns, CloseKind kind) {
  const int server = PeerOfClient(host, slot);
  const Conn& conn = ClientConn(host, slot);
  const HostState& client_state = host_[host];
  const HostState& server_state = host_[server];
  const Pod& client_pod = ClientPod(host, slot);
  const Pod& server_pod = ServerPod(server, slot);
  const uint64_t lifetime_us = (now_ns - std::min(now_ns, conn.start_ns)) / 1000;
  const uint64_t bytes = conn.byte_rate * lifetime_us / 1'000'000 + 517;
  const uint64_t r = Random();
  // Who closes first and how: the client in 60 % of the cases; 5 % are aborts (RST).
  const bool client_first = kind == CloseKind::kKeepaliveTimeout || r % 100 < 60;
  const bool reset = kind == CloseKind::kNormal && (r >> 8) % 100 < 5;
  struct Side {
    v1::CloseInitiator initiator;
    v1::CloseReason reason;
    v1::TcpState last_state;
    int32_t error;
  };
  Side first, second;
  if (kind == CloseKind::kKeepaliveTimeout) {
    first = {v1::CLOSE_INITIATOR_LOCAL, v1::CLOSE_REASON_KEEPALIVE_TIMEOUT,
             v1::TCP_STATE_ESTABLISHED, 110};
    second = {v1::CLOSE_INITIATOR_REMOTE, v1::CLOSE_REASON_RESET_RECEIVED,
              v1::TCP_STATE_ESTABLISHED, 104};
  } else if (reset) {
    first = {v1::CLOSE_INITIATOR_LOCAL, v1::CLOSE_REASON_RESET_SENT, v1::TCP_STATE_ESTABLISHED, 0};
    second = {v1::CLOSE_INITIATOR_REMOTE, v1::CLOSE_REASON_RESET_RECEIVED,
              v1::TCP_STATE_ESTABLISHED, 104};
  } else {
    first = {v1::CLOSE_INITIATOR_LOCAL, v1::CLOSE_REASON_FIN, v1::TCP_STATE_TIME_WAIT, 0};
    second = {v1::CLOSE_INITIATOR_REMOTE, v1::CLOSE_REASON_FIN, v1::TCP_STATE_LAST_ACK, 0};
  }
  const Side& client_side = client_first ? first : second;
  const Side& server_side = client_first ? second : first;
  auto close = [&](const Side& side, bool client) {
    return [&, client](std::string& event, std::string& scratch) {
      w::Message(event, 12, scratch, [&](std::string& c) {
        w::Varint(c, 1, side.initiator);
        w::Varint(c, 2, side.reason);
        w::Varint(c, 3, lifetime_us);
        w::Varint(c, 4, client ? bytes / 4 : bytes);  // requests out, responses back
        w::Varint(c, 5, client ? bytes : bytes / 4);
        w::Varint(c, 6, bytes / 1448 + 3);
        w::Varint(c, 7, bytes / 1448 + 3);
        w::Varint(c, 9, conn.srtt_us);
        w::Varint(c, 10, side.last_state);
        w::Varint(c, 11, static_cast<uint32_t>(side.error));
      });
    };
  };
  AddEvent(host, v1::EVENT_KIND_CLOSE, now_ns, conn.client_cookie, client_pod.origin,
           client_state.address, conn.ephemeral_port, server_state.address, server_pod.port,
           v1::ROLE_CLIENT, close(client_side, true));
  AddEvent(server, v1::EVENT_KIND_CLOSE, now_ns + conn.srtt_us * 500ULL, conn.server_cookie,
           server_pod.origin, server_state.address, server_pod.port, client_state.address,
           conn.ephemeral_port, v1::ROLE_SERVER, close(server_side, false));
}

void Fleet::Probe(int host, uint64_t now_ns) {
  // A client end with keepalive on (a few tries; a host without one skips the probe).
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int slot = static_cast<int>(Random() % static_cast<uint64_t>(slots_));
    const Conn& conn = ClientConn(host, slot);
    if (!conn.client_keepalive) continue;
    const int server = PeerOfClient(host, slot);
    const Pod& pod = ClientPod(host, slot);
    const uint16_t server_port = ServerPod(server, slot).port;
    AddEvent(host, v1::EVENT_KIND_KEEPALIVE_PROBE, now_ns, conn.client_cookie, pod.origin_kernel,
             host_[host].address, conn.ephemeral_port, host_[server].address, server_port,
             v1::ROLE_CLIENT, [&](std::string& event, std::string& scratch) {
               w::Message(event, 13, scratch, [&](std::string& p) {
                 w::Varint(p, 1, 1);
                 w::Varint(p, 2, 60'000);
               });
             });
    AddEvent(host, v1::EVENT_KIND_KEEPALIVE_ANSWERED, now_ns + conn.srtt_us * 1000ULL,
             conn.client_cookie, pod.origin_kernel, host_[host].address, conn.ephemeral_port,
             host_[server].address, server_port, v1::ROLE_CLIENT,
             [&](std::string& event, std::string& scratch) {
               w::Message(event, 15, scratch, [&](std::string& a) { w::Varint(a, 1, 1); });
             });
    return;
  }
}

void Fleet::Timeout(int host, uint64_t now_ns) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int slot = static_cast<int>(Random() % static_cast<uint64_t>(slots_));
    const Conn& conn = ClientConn(host, slot);
    if (!conn.client_keepalive) continue;
    const int server = PeerOfClient(host, slot);
    const Pod& pod = ClientPod(host, slot);
    const uint16_t server_port = ServerPod(server, slot).port;
    // TCP_KEEPIDLE 60 s, TCP_KEEPINTVL 10 s, TCP_KEEPCNT 3: three unanswered probes, then the
    // timeout (the times are in the past: the probes ran over the last 30 s).
    constexpr int kCount = 3;
    for (int probe = 1; probe <= kCount; ++probe) {
      AddEvent(host, v1::EVENT_KIND_KEEPALIVE_PROBE, now_ns - (kCount + 1 - probe) * 10 * kSecond,
               conn.client_cookie, pod.origin_kernel, host_[host].address, conn.ephemeral_port,
               host_[server].address, server_port, v1::ROLE_CLIENT,
               [&](std::string& event, std::string& scratch) {
                 w::Message(event, 13, scratch, [&](std::string& p) {
                   w::Varint(p, 1, static_cast<uint64_t>(probe));
                   w::Varint(p, 2, 60'000 + (probe - 1) * 10'000ULL);
                 });
               });
    }
    AddEvent(host, v1::EVENT_KIND_KEEPALIVE_TIMEOUT, now_ns, conn.client_cookie, pod.origin_kernel,
             host_[host].address, conn.ephemeral_port, host_[server].address, server_port,
             v1::ROLE_CLIENT, [&](std::string& event, std::string& scratch) {
               w::Message(event, 14, scratch, [&](std::string& t) {
                 w::Varint(t, 1, kCount);
                 w::Varint(t, 2, 60);
                 w::Varint(t, 3, 10);
                 w::Varint(t, 4, kCount);
                 w::Varint(t, 5, 110);  // ETIMEDOUT
               });
             });
    CloseConnection(host, slot, now_ns, CloseKind::kKeepaliveTimeout);
    NewConnection(host, slot, now_ns + 1000, /*with_events=*/true);
    return;
  }
}

void Fleet::Failure(int host, uint64_t now_ns) {
  HostState& state = host_[host];
  const uint64_t r = Random();
  const int slot = static_cast<int>(r % static_cast<uint64_t>(slots_));
  const int server = PeerOfClient(host, slot);
  const Pod& pod = ClientPod(host, slot);
  // Refused (nothing listens on the port) 70 %, timed out 20 %, unreachable 10 %.
  const uint64_t which = (r >> 32) % 10;
  const v1::HandshakeFailureReason reason = which < 7   ? v1::HANDSHAKE_FAILURE_REFUSED
                                            : which < 9 ? v1::HANDSHAKE_FAILURE_TIMEOUT
                                                        : v1::HANDSHAKE_FAILURE_UNREACHABLE;
  const int32_t error = reason == v1::HANDSHAKE_FAILURE_REFUSED   ? 111
                        : reason == v1::HANDSHAKE_FAILURE_TIMEOUT ? 110
                                                                  : 113;
  const uint32_t retransmits = reason == v1::HANDSHAKE_FAILURE_TIMEOUT ? 6 : 0;
  const uint64_t duration_us =
      reason == v1::HANDSHAKE_FAILURE_TIMEOUT ? 127'000'000 : 100 + (r >> 48) % 3000;
  const uint16_t port = NextPort(state);
  AddEvent(host, v1::EVENT_KIND_HANDSHAKE_FAILED, now_ns, state.next_cookie++, pod.origin,
           state.address, port, host_[server].address, 9000 + (r >> 16) % 100, v1::ROLE_CLIENT,
           [&](std::string& event, std::string& scratch) {
             w::Message(event, 11, scratch, [&](std::string& f) {
               w::Varint(f, 1, reason);
               w::Varint(f, 2, retransmits);
               w::Varint(f, 3, duration_us);
               w::Varint(f, 4, static_cast<uint32_t>(error));
             });
           });
}

void Fleet::Tick(double seconds, uint64_t now_ns, const FleetRates& rates) {
  for (int h = 0; h < shape_.hosts; ++h) {
    HostState& host = host_[h];
    host.churn_credit += rates.new_per_second * seconds;
    host.probe_credit += rates.probes_per_second * seconds;
    host.timeout_credit += rates.timeouts_per_minute / 60 * seconds;
    host.failure_credit += rates.failures_per_second * seconds;
    for (; host.churn_credit >= 1; host.churn_credit -= 1) {
      const int slot = static_cast<int>(Random() % static_cast<uint64_t>(slots_));
      CloseConnection(h, slot, now_ns, CloseKind::kNormal);
      NewConnection(h, slot, now_ns + 1000, /*with_events=*/true);
    }
    for (; host.probe_credit >= 1; host.probe_credit -= 1) Probe(h, now_ns);
    for (; host.timeout_credit >= 1; host.timeout_credit -= 1) Timeout(h, now_ns);
    for (; host.failure_credit >= 1; host.failure_credit -= 1) Failure(h, now_ns);
  }
}

OutBatch Fleet::TakeEvents(int host) {
  HostState& state = host_[host];
  OutBatch batch;
  if (state.pending_events == 0) return batch;
  auto body = std::make_shared<std::string>(std::move(state.pending));
  state.pending.clear();
  w::Bytes(*body, 4, "", /*always=*/true);  // losses: none (the shipper always sets them)
  for (const std::string* origin : state.pending_origins) w::Bytes(*body, 6, *origin, true);
  state.pending_origins.clear();
  batch.body = std::move(body);
  batch.events = std::exchange(state.pending_events, 0);
  batch.kinds = std::exchange(state.pending_kinds, KindCounts{});
  return batch;
}

void Fleet::WriteConnection(std::string& out, const Conn& conn, bool client, const Pod& pod,
                            uint32_t local, uint32_t remote, uint16_t server_port,
                            uint64_t now_ns) {
  const uint64_t cookie = client ? conn.client_cookie : conn.server_cookie;
  const uint64_t age_ms = (now_ns - std::min(now_ns, conn.start_ns)) / 1'000'000;
  const uint64_t noise = Mix(cookie ^ now_ns);
  const uint64_t idle_ms = std::min<uint64_t>(age_ms, noise % 5000);
  const uint64_t bytes = conn.byte_rate * age_ms / 1000 + 517;
  const bool keepalive = client ? conn.client_keepalive : conn.server_keepalive;
  w::Message(out, 2, scratch_[0], [&](std::string& c) {
    w::Varint(c, 1, cookie);
    w::Message(c, 3, scratch_[1], [&](std::string& endpoints) {
      if (client) {
        WriteEndpoints(endpoints, local, conn.ephemeral_port, remote, server_port);
      } else {
        WriteEndpoints(endpoints, local, server_port, remote, conn.ephemeral_port);
      }
    });
    w::Varint(c, 4, client ? v1::ROLE_CLIENT : v1::ROLE_SERVER);
    w::Varint(c, 5, v1::TCP_STATE_ESTABLISHED);
    if (keepalive) {
      w::Message(c, 6, scratch_[1], [&](std::string& k) {
        w::Varint(k, 1, 1);
        w::Varint(k, 3, 60'000 - std::min<uint64_t>(idle_ms, 59'000));
      });
    }
    w::Varint(c, 7, idle_ms);
    w::Varint(c, 8, conn.srtt_us);
    w::Varint(c, 9, conn.srtt_us / 2);
    w::Varint(c, 12, client ? bytes / 4 : bytes);
    w::Varint(c, 13, client ? bytes : bytes / 4);
    w::Varint(c, 15, conn.start_ns);
    w::Varint(c, 16, conn.start_ns);
    // As the agent sends it: the origin is the pod's entry in the snapshot's table.
    w::Varint(c, 17, OriginRef(pod));
  });
}

uint32_t Fleet::OriginRef(const Pod& pod) {
  uint32_t& ref = pod_refs_[static_cast<size_t>(&pod - pods_.data()) %
                            static_cast<size_t>(shape_.pods_per_host)];
  if (ref == 0) {
    snapshot_pods_.push_back(&pod);
    ref = static_cast<uint32_t>(snapshot_pods_.size());
  }
  return ref;
}

OutBatch Fleet::Snapshot(int host, uint64_t now_ns) {
  const HostState& state = host_[host];
  auto body = std::make_shared<std::string>();
  std::string snapshot;
  snapshot.reserve(static_cast<size_t>(shape_.ends_per_host) * 96 +
                   static_cast<size_t>(shape_.pods_per_host) * pods_[0].origin.size());
  w::Varint(snapshot, 1, now_ns);
  snapshot_pods_.clear();
  pod_refs_.assign(static_cast<size_t>(shape_.pods_per_host), 0);
  for (int j = 0; j < slots_; ++j) {
    const int server = PeerOfClient(host, j);
    WriteConnection(snapshot, ClientConn(host, j), true, ClientPod(host, j), state.address,
                    host_[server].address, ServerPod(server, j).port, now_ns);
  }
  for (int j = 0; j < slots_; ++j) {
    const int client = PeerOfServer(host, j);
    const Pod& pod = ServerPod(host, j);
    WriteConnection(snapshot, ClientConn(client, j), false, pod, state.address,
                    host_[client].address, pod.port, now_ns);
  }
  w::Varint(snapshot, 3, static_cast<uint64_t>(shape_.pods_per_host));  // listeners
  for (const Pod* pod : snapshot_pods_) w::Bytes(snapshot, 4, pod->origin, /*always=*/true);
  body->reserve(snapshot.size() + 16);
  w::Bytes(*body, 3, snapshot, /*always=*/true);
  w::Bytes(*body, 4, "", /*always=*/true);
  OutBatch batch;
  batch.body = std::move(body);
  batch.snapshot = true;
  return batch;
}

}  // namespace tcpscope::bench
