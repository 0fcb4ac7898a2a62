// Turns successive sock_diag dumps of one network namespace into events and snapshots: new
// established connections become handshakes, vanished or TIME_WAIT ones become closes, and
// each dump becomes a snapshot with keepalive state. Socket-destroy notifications, when
// available, report closes between dumps.
//
// What polling cannot see: a connection that opens and fully disappears between two dumps
// (unless its end lingers in TIME_WAIT), exact handshake durations, and who closed first
// when the closing states were never observed (reported as initiator "unknown").
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "agent/sock_diag_parser.h"
#include "agent/socket_owners.h"
#include "agent/workload.h"
#include "tcpscope/v1/events.pb.h"

namespace tcpscope::agent {

struct TrackerUpdate {
  std::vector<v1::Event> events;
  v1::Snapshot snapshot;
  // The owner of every end of the snapshot that has one, by socket cookie (for events whose
  // kernel context has no process).
  absl::flat_hash_map<uint64_t, OwnerRef> owners;
};

class ConnectionTracker {
 public:
  // An end's addresses as the dump showed them when it was first seen (after an abort the kernel
  // zeroes the remote port), an IPv4-mapped IPv6 pair as IPv4.
  struct Ends {
    std::array<uint8_t, 16> local{};
    std::array<uint8_t, 16> remote{};
    uint16_t local_port = 0;
    uint16_t remote_port = 0;
    uint8_t address_length = 0;
  };
  // What a close reports of the end's last full socket (TIME_WAIT has none).
  struct Counters {
    uint64_t bytes_acked = 0;
    uint64_t bytes_received = 0;
    uint32_t segs_out = 0;
    uint32_t segs_in = 0;
    uint32_t total_retrans = 0;
    uint32_t rtt_us = 0;
  };
  // Whether Update derives events from the dumps, or only snapshots (a source whose events
  // come from elsewhere, the kernel's tracepoints, builds none to discard).
  enum class Events { kDerive, kNone };

  // `workloads` may be null: no container or pod in origins.
  explicit ConnectionTracker(uint64_t netns_inode, WorkloadResolver* workloads = nullptr,
                             Events events = Events::kDerive)
      : netns_inode_(netns_inode),
        workloads_(workloads),
        derive_events_(events == Events::kDerive) {}

  // Compares `dump` (every TCP socket of the namespace) with the previous one. The first dump
  // is the baseline: its connections already existed, so it yields no events.
  // `owners` (null: none known) names the process of each end, by the socket inode of its
  // record. Owners are sticky per cookie: an end whose record has no inode (TIME_WAIT, orphaned,
  // not accepted yet) or whose inode the scan missed keeps the owner it had; a server end that
  // never had one (in the accept queue) gets its listening socket's owner.
  TrackerUpdate Update(const std::vector<SocketRecord>& dump, absl::Time now,
                       const OwnerTable* owners = nullptr);

  // Closes for the tracked, established connections among `destroyed` (sockets the kernel
  // reported freed), so they need not wait for the next dump. The initiator comes from the
  // states dumps saw before; the destroy message itself always says CLOSE. The next dump emits
  // nothing more for these cookies, also not for a TIME_WAIT successor, which keeps the cookie.
  // Unknown cookies are ignored: a socket that opened and died between dumps looks the same as
  // one that never connected (SYN_SENT and refused also ends in CLOSE with tcp_info), and if it
  // did connect and left a TIME_WAIT behind, the next dump reports it as before.
  std::vector<v1::Event> OnDestroyed(const std::vector<SocketRecord>& destroyed, absl::Time now);

  size_t tracked() const { return connections_.size(); }

  // Whether `cookie` is an established connection whose close has not been reported yet.
  bool IsOpen(uint64_t cookie) const;

 private:
  // One per end, ~10^5 on a churning host, and each dump looks every one up (a cache miss each):
  // 128 bytes with its key and nothing on the heap (it was 184, with two strings on the heap).
  struct Tracked {
    uint32_t generation = 0;
    v1::Role role = v1::ROLE_UNSPECIFIED;
    v1::TcpState state = v1::TCP_STATE_UNSPECIFIED;
    bool start_observed : 1 = false;    // appeared after the baseline, so its lifetime is known
    bool established : 1 = false;       // reached ESTABLISHED or a later state
    bool closed : 1 = false;            // close event already emitted (at TIME_WAIT or destroy)
    bool keepalive : 1 = false;         // last known; kept while a retransmit timer hides it
    bool saw_local_close : 1 = false;   // FIN_WAIT1/FIN_WAIT2
    bool saw_remote_close : 1 = false;  // CLOSE_WAIT/LAST_ACK
    bool saw_simultaneous : 1 = false;  // CLOSING
    int64_t first_seen_unix_ns = 0;
    int64_t state_since_unix_ns = 0;  // first dump that showed `state`
    OwnerRef owner;                   // the process that last held the socket; null: none seen
    Ends ends;
    Counters last;  // from the last full socket
  };

  v1::Event NewEvent(uint64_t cookie, const Tracked& tracked, absl::Time now) const;
  v1::Event CloseEvent(uint64_t cookie, const Tracked& tracked, absl::Time now) const;
  static void ObserveState(v1::TcpState state, Tracked& tracked);
  void FillOrigin(const Tracked& tracked, v1::Origin* origin) const;

  uint64_t netns_inode_;
  WorkloadResolver* workloads_;
  const bool derive_events_;
  uint32_t generation_ = 0;
  absl::flat_hash_map<uint64_t, Tracked> connections_;  // by socket cookie
};

}  // namespace tcpscope::agent
