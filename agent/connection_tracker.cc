// Dump diffing for the sock_diag source. Keyed by socket cookie, which the kernel keeps when a
// socket becomes a TIME_WAIT socket and which eBPF sees too (bpf_get_socket_cookie).
#include "agent/connection_tracker.h"

#include <algorithm>
#include <tuple>

#include "absl/container/flat_hash_set.h"
#include "agent/socket_owner_index.h"

namespace tcpscope::agent {
namespace {

constexpr uint8_t kListen = 10;

bool IsHandshaking(v1::TcpState state) {
  return state == v1::TCP_STATE_SYN_SENT || state == v1::TCP_STATE_SYN_RECV ||
         state == v1::TCP_STATE_NEW_SYN_RECV;
}

v1::TcpState ToState(uint8_t state) {
  if (state < 1 || state > 12) return v1::TCP_STATE_UNSPECIFIED;
  return static_cast<v1::TcpState>(state);
}

bool IsV4Mapped(const std::array<uint8_t, 16>& address) {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::equal(std::begin(kPrefix), std::end(kPrefix), address.begin());
}

// A dual-stack IPv6 socket serving an IPv4 peer reports ::ffff:a.b.c.d; its peer end reports
// plain IPv4. Both are reported as IPv4 so the two ends of a connection look alike.
ConnectionTracker::Ends EndsOf(const SocketRecord& record) {
  ConnectionTracker::Ends ends;
  size_t offset = 0;
  size_t length = record.address_length();
  if (length == 16 && IsV4Mapped(record.local_address) && IsV4Mapped(record.remote_address)) {
    offset = 12;
    length = 4;
  }
  std::copy_n(record.local_address.begin() + offset, length, ends.local.begin());
  std::copy_n(record.remote_address.begin() + offset, length, ends.remote.begin());
  ends.local_port = record.local_port;
  ends.remote_port = record.remote_port;
  ends.address_length = static_cast<uint8_t>(length);
  return ends;
}

void FillEndpoints(const ConnectionTracker::Ends& ends, v1::Endpoints* endpoints) {
  endpoints->set_local_address(reinterpret_cast<const char*>(ends.local.data()),
                               ends.address_length);
  endpoints->set_local_port(ends.local_port);
  endpoints->set_remote_address(reinterpret_cast<const char*>(ends.remote.data()),
                                ends.address_length);
  endpoints->set_remote_port(ends.remote_port);
}

ConnectionTracker::Counters CountersOf(const TcpInfo& info) {
  return {.bytes_acked = info.bytes_acked,
          .bytes_received = info.bytes_received,
          .segs_out = info.segs_out,
          .segs_in = info.segs_in,
          .total_retrans = info.total_retrans,
          .rtt_us = info.rtt_us};
}

// The role the kernel's state shows, for an end first seen in `state`: seen connecting, a
// client; seen in SYN_RECV, a server; holding a port a listener of its namespace holds, accepted
// by that listener (a connecting socket cannot bind a listening port, SO_REUSEPORT aside).
// Otherwise not known: an end without a listener may be a server whose listener is gone.
v1::Role KnownRole(v1::TcpState state, bool port_listening) {
  if (state == v1::TCP_STATE_SYN_SENT) return v1::ROLE_CLIENT;
  if (state == v1::TCP_STATE_SYN_RECV || state == v1::TCP_STATE_NEW_SYN_RECV || port_listening) {
    return v1::ROLE_SERVER;
  }
  return v1::ROLE_UNSPECIFIED;
}

uint64_t UnixNanos(absl::Time time) { return static_cast<uint64_t>(absl::ToUnixNanos(time)); }
uint64_t UnixNanos(int64_t unix_ns) { return static_cast<uint64_t>(unix_ns); }

}  // namespace

void ConnectionTracker::FillOrigin(const Tracked& tracked, v1::Origin* origin) const {
  origin->set_netns_inode(netns_inode_);
  if (tracked.owner == nullptr) return;
  FillOwner(*tracked.owner, origin);
  FillWorkload(workloads_, origin);
}

v1::Event ConnectionTracker::NewEvent(uint64_t cookie, const Tracked& tracked,
                                      absl::Time now) const {
  v1::Event event;
  event.set_time_unix_ns(UnixNanos(now));
  event.set_connection_id(cookie);
  FillOrigin(tracked, event.mutable_origin());
  FillEndpoints(tracked.ends, event.mutable_endpoints());
  event.set_role(tracked.role);
  return event;
}

v1::Event ConnectionTracker::CloseEvent(uint64_t cookie, const Tracked& tracked,
                                        absl::Time now) const {
  v1::Event event = NewEvent(cookie, tracked, now);
  v1::Close* close = event.mutable_close();
  // TIME_WAIT belongs to the side that sent the first FIN (both sides after CLOSING).
  const bool in_time_wait = tracked.state == v1::TCP_STATE_TIME_WAIT;
  if (tracked.saw_simultaneous) {
    close->set_initiator(v1::CLOSE_INITIATOR_SIMULTANEOUS);
  } else if (tracked.saw_local_close || in_time_wait) {
    close->set_initiator(v1::CLOSE_INITIATOR_LOCAL);
  } else if (tracked.saw_remote_close) {
    close->set_initiator(v1::CLOSE_INITIATOR_REMOTE);
  } else {
    close->set_initiator(v1::CLOSE_INITIATOR_UNKNOWN);
  }
  const bool orderly = tracked.saw_simultaneous || tracked.saw_local_close || in_time_wait ||
                       tracked.saw_remote_close;
  close->set_reason(orderly ? v1::CLOSE_REASON_FIN : v1::CLOSE_REASON_OTHER);
  if (tracked.start_observed) {
    close->set_lifetime_us(static_cast<uint64_t>(
        std::max<int64_t>(0, (absl::ToUnixNanos(now) - tracked.first_seen_unix_ns) / 1000)));
  }
  close->set_bytes_sent(tracked.last.bytes_acked);
  close->set_bytes_received(tracked.last.bytes_received);
  close->set_segments_sent(tracked.last.segs_out);
  close->set_segments_received(tracked.last.segs_in);
  close->set_retransmits(tracked.last.total_retrans);
  close->set_srtt_us(tracked.last.rtt_us);
  close->set_last_state(tracked.state);
  return event;
}

void ConnectionTracker::ObserveState(v1::TcpState state, Tracked& tracked) {
  tracked.state = state;
  switch (state) {
    case v1::TCP_STATE_FIN_WAIT1:
    case v1::TCP_STATE_FIN_WAIT2:
      tracked.saw_local_close = true;
      break;
    case v1::TCP_STATE_CLOSE_WAIT:
    case v1::TCP_STATE_LAST_ACK:
      tracked.saw_remote_close = true;
      break;
    case v1::TCP_STATE_CLOSING:
      tracked.saw_simultaneous = true;
      break;
    default:
      break;
  }
}

TrackerUpdate ConnectionTracker::Update(const std::vector<SocketRecord>& dump, absl::Time now,
                                        const OwnerTable* owners) {
  const bool baseline = generation_ == 0;
  const bool derive = derive_events_ && !baseline;
  ++generation_;
  const int64_t now_unix_ns = absl::ToUnixNanos(now);
  TrackerUpdate update;
  update.snapshot.set_time_unix_ns(UnixNanos(now));

  // A connection whose local port is listening in this namespace was accepted there.
  absl::flat_hash_set<uint16_t> listening_ports;
  // And until a process accepts it, the listener's owner is its owner. Several listeners on one
  // port (SO_REUSEPORT, or one per address) may have different owners: the one `ss -p` would
  // list first among them is taken.
  absl::flat_hash_map<uint16_t, OwnerRef> listener_owners;
  auto owner_of = [owners](const SocketRecord& record) -> OwnerRef {
    if (owners == nullptr || record.inode == 0) return nullptr;
    auto it = owners->sockets.find(record.inode);
    return it == owners->sockets.end() ? nullptr : it->second;
  };
  for (const SocketRecord& record : dump) {
    if (record.state != kListen) continue;
    listening_ports.insert(record.local_port);
    if (OwnerRef owner = owner_of(record)) {
      auto [it, inserted] = listener_owners.try_emplace(record.local_port, owner);
      if (!inserted && PreferOwner(*owner, *it->second)) it->second = std::move(owner);
    }
  }
  // The peers of the ends those listeners accepted, when the peer is in this namespace too
  // (loopback, or two addresses of one namespace): the connecting side, known from its peer.
  using Tuple = std::tuple<std::array<uint8_t, 16>, uint16_t, std::array<uint8_t, 16>, uint16_t>;
  absl::flat_hash_set<Tuple> accepted_peers;
  for (const SocketRecord& record : dump) {
    if (record.state != kListen && listening_ports.contains(record.local_port)) {
      accepted_peers.insert(
          {record.remote_address, record.remote_port, record.local_address, record.local_port});
    }
  }
  update.snapshot.set_listeners(static_cast<uint32_t>(
      std::count_if(dump.begin(), dump.end(), [](const auto& r) { return r.state == kListen; })));

  for (const SocketRecord& record : dump) {
    const v1::TcpState state = ToState(record.state);
    if (state == v1::TCP_STATE_UNSPECIFIED || state == v1::TCP_STATE_LISTEN) continue;
    // CLOSE is also the state of sockets that are only bound, or never connected: a CLOSE
    // socket matters only as the end of a connection already tracked.
    if (state == v1::TCP_STATE_CLOSE && !connections_.contains(record.cookie)) continue;

    auto [it, inserted] = connections_.try_emplace(record.cookie);
    Tracked& tracked = it->second;
    tracked.generation = generation_;
    if (inserted) {
      tracked.ends = EndsOf(record);
      tracked.role = KnownRole(state, listening_ports.contains(record.local_port));
      if (tracked.role == v1::ROLE_UNSPECIFIED &&
          accepted_peers.contains(Tuple{record.local_address, record.local_port,
                                        record.remote_address, record.remote_port})) {
        tracked.role = v1::ROLE_CLIENT;
      }
      tracked.first_seen_unix_ns = now_unix_ns;
      tracked.start_observed = !baseline;
    }
    if (OwnerRef owner = owner_of(record)) {
      tracked.owner = std::move(owner);
    } else if (tracked.owner == nullptr && tracked.role == v1::ROLE_SERVER) {
      if (auto it = listener_owners.find(record.local_port); it != listener_owners.end()) {
        tracked.owner = it->second;
      }
    }
    if (tracked.owner != nullptr) update.owners.emplace(record.cookie, tracked.owner);
    if (state != tracked.state) tracked.state_since_unix_ns = now_unix_ns;
    ObserveState(state, tracked);
    if (record.tcp_info.has_value()) tracked.last = CountersOf(*record.tcp_info);
    if (record.timer == DiagTimer::kKeepalive) {
      tracked.keepalive = true;
    } else if (record.timer != DiagTimer::kRetransmit &&
               record.timer != DiagTimer::kZeroWindowProbe) {
      tracked.keepalive = false;  // a pending retransmission hides the keepalive timer
    }

    if (!IsHandshaking(state) && !tracked.established) {
      tracked.established = true;
      if (derive) {
        v1::Event event = NewEvent(record.cookie, tracked, now);
        event.mutable_handshake();
        update.events.push_back(std::move(event));
      }
    }
    const bool full_socket_gone = state == v1::TCP_STATE_TIME_WAIT || state == v1::TCP_STATE_CLOSE;
    if (full_socket_gone && tracked.established && !tracked.closed) {
      tracked.closed = true;
      if (derive) update.events.push_back(CloseEvent(record.cookie, tracked, now));
    }

    v1::Connection* connection = update.snapshot.add_connections();
    connection->set_connection_id(record.cookie);
    FillOrigin(tracked, connection->mutable_origin());
    FillEndpoints(tracked.ends, connection->mutable_endpoints());
    connection->set_role(tracked.role);
    connection->set_state(state);
    v1::KeepaliveState* keepalive = connection->mutable_keepalive();
    keepalive->set_enabled(tracked.keepalive);
    if (record.timer == DiagTimer::kKeepalive) {
      keepalive->set_probes_out(record.timer_retrans);
      keepalive->set_next_probe_ms(record.timer_expires_ms);
    }
    if (record.tcp_info.has_value()) {
      const TcpInfo& info = *record.tcp_info;
      connection->set_idle_ms(std::min(info.last_data_sent_ms, info.last_data_recv_ms));
      connection->set_srtt_us(info.rtt_us);
      connection->set_rttvar_us(info.rttvar_us);
      connection->set_bytes_sent(info.bytes_acked);
      connection->set_bytes_received(info.bytes_received);
      connection->set_retransmits(info.total_retrans);
    }
    connection->set_send_queue(record.send_queue);
    connection->set_recv_queue(record.recv_queue);
    connection->set_first_seen_unix_ns(UnixNanos(tracked.first_seen_unix_ns));
    connection->set_state_since_unix_ns(UnixNanos(tracked.state_since_unix_ns));
  }

  // Whatever the dump no longer holds has ended.
  for (auto it = connections_.begin(); it != connections_.end();) {
    auto current = it++;
    const Tracked& tracked = current->second;
    if (tracked.generation == generation_) continue;
    if (derive_events_ && tracked.established && !tracked.closed) {
      update.events.push_back(CloseEvent(current->first, tracked, now));
    }
    connections_.erase(current);
  }
  return update;
}

bool ConnectionTracker::IsOpen(uint64_t cookie) const {
  auto it = connections_.find(cookie);
  return it != connections_.end() && it->second.established && !it->second.closed;
}

std::vector<v1::Event> ConnectionTracker::OnDestroyed(const std::vector<SocketRecord>& destroyed,
                                                      absl::Time now) {
  std::vector<v1::Event> events;
  for (const SocketRecord& record : destroyed) {
    auto it = connections_.find(record.cookie);
    if (it == connections_.end()) continue;
    Tracked& tracked = it->second;
    if (!tracked.established) {
      // A handshake that failed: there is no connection to close, and a freed socket never
      // comes back under its cookie.
      connections_.erase(it);
      continue;
    }
    if (tracked.closed) continue;
    // Endpoints stay as tracked: after an abort the kernel has already zeroed the remote port.
    if (const v1::TcpState state = ToState(record.state); state != v1::TCP_STATE_UNSPECIFIED) {
      ObserveState(state, tracked);
    }
    if (record.tcp_info.has_value()) tracked.last = CountersOf(*record.tcp_info);
    // The entry stays, closed, until a dump no longer shows the cookie: that absorbs a
    // TIME_WAIT successor and the dump taken right after.
    tracked.closed = true;
    events.push_back(CloseEvent(record.cookie, tracked, now));
  }
  return events;
}

}  // namespace tcpscope::agent
