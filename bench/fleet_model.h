// The simulated fleet of tcpscope-fleet-sim: H hosts, each with C connection ends whose peers are
// ends on other hosts, and what each host's agent would send about them, written straight in
// protobuf's wire format (bench/proto_wire.h).
//
// Connections are slots: host a's client slot j (0 <= j < C/2) is connected to server slot j of
// host (a + d_j) mod H, d_j in 1..H-1 the same for every host, so each host has exactly C/2
// client and C/2 server ends at all times and every end has its peer on another host. Churn
// replaces the connection of a slot (close on both ends, then a new connection with a new
// ephemeral port and new socket cookies between the same two hosts and pods), so the end count
// stays C. Every host has its own IPv4 address (10.0.0.0/8 from 10.0.0.1), ~P pods (Kubernetes
// workload identity), and one server port per pod.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "bench/ingest_stream.h"

namespace tcpscope::bench {

struct FleetShape {
  int hosts = 100;
  int ends_per_host = 1000;  // even
  int pods_per_host = 20;
  double keepalive_fraction = 0.3;  // ends with SO_KEEPALIVE
  uint64_t seed = 1;
};

// What happens per host per second (rates; fractions are carried from tick to tick).
struct FleetRates {
  double new_per_second = 20;        // connections opened by the host (and as many closed)
  double probes_per_second = 2;      // keepalive probes, each answered
  double timeouts_per_minute = 0.5;  // keepalive timeouts (the connection is replaced)
  double failures_per_second = 0.5;  // failed connects (refused, timeout, unreachable)
};

class Fleet {
 public:
  Fleet(const FleetShape& shape, uint64_t now_ns);

  int hosts() const { return shape_.hosts; }
  int ends_per_host() const { return shape_.ends_per_host; }
  // "10.0.0.7" style address of a host, and its IPv4 in network byte order as 4 bytes.
  std::string AddressText(int host) const;

  // One tick of `seconds` at `now_ns` for every host: churn, probes, timeouts, failures. Their
  // events wait in each host's pending list until TakeEvents.
  void Tick(double seconds, uint64_t now_ns, const FleetRates& rates);
  // The host's pending events as a batch body (nullopt-like: events == 0 when none).
  OutBatch TakeEvents(int host);
  // A snapshot batch body of the host's current ends, taken at `now_ns`.
  OutBatch Snapshot(int host, uint64_t now_ns);

  // Who is at the other end of host `host`'s ends: the peer host of each client slot, and of
  // each server slot (tests).
  int ClientPeer(int host, int slot) const;
  int ServerPeer(int host, int slot) const;

 private:
  struct Conn {
    uint64_t client_cookie = 0;
    uint64_t server_cookie = 0;
    uint64_t start_ns = 0;
    uint32_t srtt_us = 0;
    uint32_t byte_rate = 0;  // bytes per second each way, roughly
    uint16_t ephemeral_port = 0;
    bool client_keepalive = false;
    bool server_keepalive = false;
  };
  struct Pod {
    std::string origin;         // Origin with the process
    std::string origin_kernel;  // without it: a server handshake runs in softirq
    uint16_t port = 0;          // the pod's server port
  };
  struct HostState {
    uint32_t address = 0;  // host byte order
    uint16_t next_port = 32768;
    uint64_t next_cookie = 0;
    double churn_credit = 0, probe_credit = 0, timeout_credit = 0, failure_credit = 0;
    std::string pending;  // Batch.events fields
    uint64_t pending_events = 0;
    std::vector<const std::string*> pending_origins;  // their table: pods' origins
    KindCounts pending_kinds{};
  };
  enum class CloseKind { kNormal, kKeepaliveTimeout };

  Conn& ClientConn(int host, int slot) { return conns_[static_cast<size_t>(host) * slots_ + slot]; }
  int PeerOfClient(int host, int slot) const { return (host + distance_[slot]) % shape_.hosts; }
  int PeerOfServer(int host, int slot) const {
    return (host - distance_[slot] + shape_.hosts) % shape_.hosts;
  }
  const Pod& ClientPod(int host, int slot) const;
  const Pod& ServerPod(int host, int slot) const;
  uint16_t NextPort(HostState& host);
  uint64_t Random() { return random_(); }
  double Uniform() { return std::uniform_real_distribution<double>(0, 1)(random_); }

  void NewConnection(int host, int slot, uint64_t now_ns, bool with_events);
  void CloseConnection(int host, int slot, uint64_t now_ns, CloseKind kind);
  void Probe(int host, uint64_t now_ns);
  void Timeout(int host, uint64_t now_ns);
  void Failure(int host, uint64_t now_ns);

  // Appends one event to `host`'s pending list; `kind` writes the kind's field.
  template <typename WriteKind>
  void AddEvent(int host, v1::EventKind kind, uint64_t time_ns, uint64_t cookie,
                const std::string& origin, uint32_t local, uint16_t local_port, uint32_t remote,
                uint16_t remote_port, v1::Role role, WriteKind write_kind);
  void WriteEndpoints(std::string& out, uint32_t local, uint16_t local_port, uint32_t remote,
                      uint16_t remote_port);
  // The pod's position, from 1, in the origin table of the snapshot being written (added at
  // its first end).
  uint32_t OriginRef(const Pod& pod);
  void WriteConnection(std::string& out, const Conn& conn, bool client, const Pod& pod,
                       uint32_t local, uint32_t remote, uint16_t server_port, uint64_t now_ns);

  const FleetShape shape_;
  const int slots_;
  std::mt19937_64 random_;
  std::vector<int> distance_;              // by slot
  std::vector<int> server_pod_;            // by slot: which of the server host's pods serves it
  std::vector<Pod> pods_;                  // host * pods_per_host + pod
  std::vector<const Pod*> snapshot_pods_;  // the snapshot being written: its origin table
  std::vector<uint32_t> pod_refs_;         // and each of the host's pods' position in it
  std::vector<HostState> host_;
  std::vector<Conn> conns_;  // host * slots + slot: client slot `slot` of `host`
  std::string scratch_[3];   // nesting levels of hand-written messages
};

}  // namespace tcpscope::bench
