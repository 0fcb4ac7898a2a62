// Pairing and half-open judgement. One lock over the whole index: a snapshot's ends are
// re-indexed and judged under it in one pass, O(ends) hash operations.
//
// An entry holds the ends reported for one connection tuple, on two sides: side 0 is the end
// whose local (address, port) sorts before its remote one. An end stays in its entry while its
// host's latest snapshot has it; once lost (closed, gone from the snapshot, gone with a reboot
// or an expired host) it stays only while the other side still has an end that may be its
// survivor.
#include "service/connection_pairs.h"

#include <algorithm>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "common/log.h"
#include "common/tcp_names.h"
#include "common/unix_time.h"

namespace tcpscope::service {

struct ConnectionPairs::TupleKey {
  std::array<char, 16> low_address{};
  std::array<char, 16> high_address{};
  uint16_t low_port = 0;
  uint16_t high_port = 0;
  uint8_t address_size = 0;

  bool operator==(const TupleKey& other) const {
    return low_address == other.low_address && high_address == other.high_address &&
           low_port == other.low_port && high_port == other.high_port &&
           address_size == other.address_size;
  }
  template <typename H>
  friend H AbslHashValue(H h, const TupleKey& key) {
    return H::combine(std::move(h), key.low_address, key.high_address, key.low_port, key.high_port,
                      key.address_size);
  }
};

struct ConnectionPairs::End {
  std::shared_ptr<const std::string> host;
  uint64_t connection_id = 0;
  uint64_t round = 0;  // the host's snapshot round that last had this end
  // Where the end was last seen: its host's snapshot while it is there, a copy once lost.
  std::shared_ptr<const v1::Snapshot> snapshot;
  int index = 0;
  std::unique_ptr<v1::Connection> last;
  bool lost = false;
  absl::Time lost_at;
  v1::HalfOpenReason lost_as = v1::HALF_OPEN_REASON_UNSPECIFIED;  // for the survivor
  v1::HalfOpenReason half_open = v1::HALF_OPEN_REASON_UNSPECIFIED;
  // The workload series its half-open reason is counted in (WorkloadMetrics::AddHalfOpen).
  std::unique_ptr<const std::string> workload_series;

  const v1::Connection& connection() const {
    return last != nullptr ? *last : snapshot->connections(index);
  }
  void Lose(absl::Time at, v1::HalfOpenReason as) {
    lost = true;
    lost_at = at;
    lost_as = as;
    if (last == nullptr) last = std::make_unique<v1::Connection>(connection());
    snapshot.reset();
  }
};

struct ConnectionPairs::Entry {
  std::array<absl::InlinedVector<End, 1>, 2> sides;
  // The connection ids of the two ends once both were seen ESTABLISHED at once: only then are
  // they known to be ends of one connection, not a new connection on a tuple whose previous
  // one still has an end (in TIME_WAIT, say) on the other side.
  std::array<uint64_t, 2> confirmed{};
};

struct ConnectionPairs::HostRecord {
  std::shared_ptr<const std::string> name;
  std::shared_ptr<WorkloadMetrics> workloads;  // may be null
  std::shared_ptr<HostMetrics> metrics;        // may be null
  std::string boot_id;
  bool rebooted = false;  // a new boot id, not yet followed by a snapshot
  bool live = false;      // connected, with a snapshot
  bool down = false;      // silent past peer_down_after
  absl::Time last_seen;   // when marked down
  uint64_t round = 0;
  absl::Time snapshot_time;
  std::vector<std::pair<TupleKey, int>> ends;  // of the latest snapshot
  HostMetrics::HalfOpenCounts half_open{};
};

struct ConnectionPairs::Index {
  absl::flat_hash_map<std::string, std::unique_ptr<HostRecord>> hosts;
  absl::flat_hash_map<TupleKey, Entry> entries;
};

namespace {

// Ends past the handshake: an end in SYN_SENT or SYN_RECV has no settled peer yet.
bool Pairable(v1::TcpState state) {
  switch (state) {
    case v1::TCP_STATE_ESTABLISHED:
    case v1::TCP_STATE_FIN_WAIT1:
    case v1::TCP_STATE_FIN_WAIT2:
    case v1::TCP_STATE_TIME_WAIT:
    case v1::TCP_STATE_CLOSE_WAIT:
    case v1::TCP_STATE_LAST_ACK:
    case v1::TCP_STATE_CLOSING:
      return true;
    default:
      return false;
  }
}

// The end has sent its FIN (or is past it): the other end should be hearing of it.
bool Closing(v1::TcpState state) {
  switch (state) {
    case v1::TCP_STATE_FIN_WAIT1:
    case v1::TCP_STATE_FIN_WAIT2:
    case v1::TCP_STATE_TIME_WAIT:
    case v1::TCP_STATE_LAST_ACK:
    case v1::TCP_STATE_CLOSING:
    case v1::TCP_STATE_CLOSE:
      return true;
    default:
      return false;
  }
}

bool Loopback(const std::string& address) {
  static constexpr unsigned char kV6Loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  static constexpr unsigned char kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (address.size() == 4) return static_cast<unsigned char>(address[0]) == 127;
  if (address.size() != 16) return false;
  if (std::memcmp(address.data(), kV6Loopback, 16) == 0) return true;
  return std::memcmp(address.data(), kV4MappedPrefix, 12) == 0 &&
         static_cast<unsigned char>(address[12]) == 127;
}

}  // namespace

ConnectionPairs::ConnectionPairs(ServiceMetrics* metrics, EventLog* log, HalfOpenPolicy policy)
    : metrics_(metrics), log_(log), policy_(policy), index_(std::make_unique<Index>()) {}

ConnectionPairs::~ConnectionPairs() = default;

std::optional<std::pair<ConnectionPairs::TupleKey, int>> ConnectionPairs::KeyOf(
    const v1::Endpoints& endpoints) {
  const std::string& local = endpoints.local_address();
  const std::string& remote = endpoints.remote_address();
  if ((local.size() != 4 && local.size() != 16) || local.size() != remote.size()) {
    return std::nullopt;
  }
  if (Loopback(local) || Loopback(remote)) return std::nullopt;
  const int order = std::memcmp(local.data(), remote.data(), local.size());
  const bool local_low =
      order < 0 || (order == 0 && endpoints.local_port() < endpoints.remote_port());
  if (order == 0 && endpoints.local_port() == endpoints.remote_port()) return std::nullopt;
  TupleKey key;
  key.address_size = static_cast<uint8_t>(local.size());
  const std::string& low = local_low ? local : remote;
  const std::string& high = local_low ? remote : local;
  std::memcpy(key.low_address.data(), low.data(), low.size());
  std::memcpy(key.high_address.data(), high.data(), high.size());
  key.low_port =
      static_cast<uint16_t>(local_low ? endpoints.local_port() : endpoints.remote_port());
  key.high_port =
      static_cast<uint16_t>(local_low ? endpoints.remote_port() : endpoints.local_port());
  return std::make_pair(key, local_low ? 0 : 1);
}

ConnectionPairs::HostRecord& ConnectionPairs::RecordOf(
    const std::shared_ptr<const std::string>& host) {
  std::unique_ptr<HostRecord>& slot = index_->hosts[*host];
  if (slot == nullptr) {
    slot = std::make_unique<HostRecord>();
    slot->name = host;
  }
  return *slot;
}

void ConnectionPairs::Connected(const std::shared_ptr<const std::string>& host,
                                const std::string& boot_id,
                                std::shared_ptr<WorkloadMetrics> workloads,
                                std::shared_ptr<HostMetrics> metrics) {
  absl::MutexLock lock(&mu_);
  HostRecord& record = RecordOf(host);
  if (workloads != nullptr) record.workloads = std::move(workloads);
  if (metrics != nullptr) record.metrics = std::move(metrics);
  if (!record.boot_id.empty() && record.boot_id != boot_id) {
    record.rebooted = true;
    TS_LOG(INFO) << "host " << *host << " rebooted (boot id " << record.boot_id << " -> " << boot_id
                 << "): ends its next snapshot lacks are lost with the reboot";
  }
  record.boot_id = boot_id;
}

void ConnectionPairs::Apply(const std::shared_ptr<const std::string>& host, const v1::Batch& batch,
                            std::shared_ptr<const v1::Snapshot> snapshot, absl::Time now) {
  // A close ends its end now, more precisely than the next snapshot could. Keys are made
  // before locking, and a batch without closes or snapshot does not lock at all.
  struct Closed {
    std::pair<TupleKey, int> key;
    uint64_t connection_id;
    absl::Time at;
  };
  std::vector<Closed> closes;
  for (const v1::Event& event : batch.events()) {
    if (!event.has_close()) continue;
    if (auto key = KeyOf(event.endpoints()); key.has_value()) {
      closes.push_back({*key, event.connection_id(), TimeFromUnixNanos(event.time_unix_ns())});
    }
  }
  if (closes.empty() && snapshot == nullptr) return;
  Findings findings;
  {
    absl::MutexLock lock(&mu_);
    HostRecord& record = RecordOf(host);
    for (const Closed& close : closes) {
      auto it = index_->entries.find(close.key.first);
      if (it == index_->entries.end()) continue;
      for (End& end : it->second.sides[close.key.second]) {
        if (*end.host == *record.name && end.connection_id == close.connection_id && !end.lost) {
          end.Lose(close.at, v1::HALF_OPEN_PEER_CLOSED);
        }
      }
    }
    if (snapshot != nullptr) ApplySnapshot(record, std::move(snapshot), now, &findings);
  }
  Publish(std::move(findings));
}

void ConnectionPairs::ApplySnapshot(HostRecord& host, std::shared_ptr<const v1::Snapshot> snapshot,
                                    absl::Time now, Findings* findings) {
  const bool rebooted = std::exchange(host.rebooted, false);
  ++host.round;
  host.snapshot_time = TimeFromUnixNanos(snapshot->time_unix_ns());
  host.down = false;
  if (!host.live) {
    host.live = true;
    ShowGauges(host);
  }
  std::vector<std::pair<TupleKey, int>> ends;
  ends.reserve(static_cast<size_t>(snapshot->connections_size()));
  for (int i = 0; i < snapshot->connections_size(); ++i) {
    const v1::Connection& connection = snapshot->connections(i);
    if (!Pairable(connection.state())) continue;
    const auto key = KeyOf(connection.endpoints());
    if (!key.has_value()) continue;
    auto& side = index_->entries[key->first].sides[key->second];
    auto it = std::find_if(side.begin(), side.end(),
                           [&](const End& end) { return *end.host == *host.name; });
    if (it != side.end() && it->connection_id != connection.connection_id()) {
      // The tuple's earlier connection is over; this is a new one.
      SetHalfOpen(*it, v1::HALF_OPEN_REASON_UNSPECIFIED, nullptr, absl::Time(), now, findings);
      side.erase(it);
      it = side.end();
    }
    if (it == side.end()) {
      side.emplace_back();
      it = side.end() - 1;
      it->host = host.name;
      it->connection_id = connection.connection_id();
    }
    it->round = host.round;
    if (!it->lost) {  // a close already seen stays seen, even if this dump predates it
      it->snapshot = snapshot;
      it->index = i;
    }
    ends.push_back(*key);
  }
  // Ends of the previous snapshot that this one lacks are lost.
  const size_t present = ends.size();
  for (const auto& [key, side_index] : host.ends) {
    auto entry = index_->entries.find(key);
    if (entry == index_->entries.end()) continue;
    bool lost_here = false;
    for (End& end : entry->second.sides[side_index]) {
      if (*end.host != *host.name || end.round == host.round) continue;
      if (!end.lost) {
        end.Lose(host.snapshot_time,
                 rebooted ? v1::HALF_OPEN_PEER_REBOOTED : v1::HALF_OPEN_PEER_CLOSED);
      }
      SetHalfOpen(end, v1::HALF_OPEN_REASON_UNSPECIFIED, nullptr, absl::Time(), now, findings);
      lost_here = true;
    }
    if (lost_here) ends.push_back({key, side_index});
  }
  // Judge every entry touched (an entry with an end present is never dropped); the host keeps
  // the ends this snapshot has.
  for (const auto& [key, side_index] : ends) {
    auto entry = index_->entries.find(key);
    if (entry != index_->entries.end()) Judge(key, entry->second, now, findings);
  }
  ends.resize(present);
  host.ends = std::move(ends);
}

bool ConnectionPairs::Listed(const End& end) const {
  if (end.lost) return false;
  auto it = index_->hosts.find(*end.host);
  return it != index_->hosts.end() && it->second->live && it->second->round == end.round;
}

v1::HalfOpenReason ConnectionPairs::Verdict(const End& self, const End& peer,
                                            absl::Time* peer_lost) const {
  const HostRecord& host = *index_->hosts.at(*self.host);
  if (peer.lost) {
    *peer_lost = peer.lost_at;
    return peer.lost_at + policy_.grace <= host.snapshot_time ? peer.lost_as
                                                              : v1::HALF_OPEN_REASON_UNSPECIFIED;
  }
  auto peer_host = index_->hosts.find(*peer.host);
  if (peer_host == index_->hosts.end() || peer_host->second->down) {
    *peer_lost = peer_host == index_->hosts.end() ? absl::Time() : peer_host->second->last_seen;
    return v1::HALF_OPEN_PEER_HOST_DOWN;
  }
  const v1::Connection& connection = peer.connection();
  if (Closing(connection.state())) {
    const absl::Time since = connection.state_since_unix_ns() != 0
                                 ? TimeFromUnixNanos(connection.state_since_unix_ns())
                                 : peer_host->second->snapshot_time;
    *peer_lost = since;
    return since + policy_.grace <= host.snapshot_time ? v1::HALF_OPEN_PEER_CLOSED
                                                       : v1::HALF_OPEN_REASON_UNSPECIFIED;
  }
  return v1::HALF_OPEN_REASON_UNSPECIFIED;
}

void ConnectionPairs::Judge(const TupleKey& key, Entry& entry, absl::Time now, Findings* findings) {
  auto& sides = entry.sides;
  bool paired =
      sides[0].size() == 1 && sides[1].size() == 1 && *sides[0][0].host != *sides[1][0].host;
  if (paired) {
    const End& low = sides[0][0];
    const End& high = sides[1][0];
    if (!low.lost && !high.lost && low.connection().state() == v1::TCP_STATE_ESTABLISHED &&
        high.connection().state() == v1::TCP_STATE_ESTABLISHED) {
      entry.confirmed = {low.connection_id, high.connection_id};
    }
    paired = entry.confirmed[0] == low.connection_id && entry.confirmed[1] == high.connection_id;
  }
  for (int s = 0; s < 2; ++s) {
    for (End& self : sides[s]) {
      v1::HalfOpenReason reason = v1::HALF_OPEN_REASON_UNSPECIFIED;
      absl::Time peer_lost;
      const End* peer = paired ? &sides[1 - s][0] : nullptr;
      if (!paired || self.lost) {
        reason = v1::HALF_OPEN_REASON_UNSPECIFIED;
      } else if (!Listed(self)) {
        continue;  // its host is not connected: judged again when it is
      } else if (self.connection().state() == v1::TCP_STATE_ESTABLISHED) {
        reason = Verdict(self, *peer, &peer_lost);
      }
      SetHalfOpen(self, reason, peer, peer_lost, now, findings);
    }
  }
  // A lost end matters only while the other side has an end it may have left half-open.
  for (int s = 0; s < 2; ++s) {
    const bool other_open =
        std::any_of(sides[1 - s].begin(), sides[1 - s].end(), [](const End& end) {
          return !end.lost && end.connection().state() == v1::TCP_STATE_ESTABLISHED;
        });
    if (!other_open) {
      sides[s].erase(
          std::remove_if(sides[s].begin(), sides[s].end(), [](const End& end) { return end.lost; }),
          sides[s].end());
    }
  }
  if (sides[0].empty() && sides[1].empty()) index_->entries.erase(key);
}

void ConnectionPairs::SetHalfOpen(End& end, v1::HalfOpenReason reason, const End* peer,
                                  absl::Time peer_lost, absl::Time now, Findings* findings) {
  if (end.half_open == reason) return;
  auto it = index_->hosts.find(*end.host);
  if (it == index_->hosts.end()) {
    end.half_open = reason;
    return;
  }
  HostRecord& host = *it->second;
  --host.half_open[end.half_open];
  ++host.half_open[reason];
  if (host.workloads != nullptr) {
    if (end.workload_series != nullptr) {
      host.workloads->RemoveHalfOpen(*end.workload_series, end.half_open);
      end.workload_series.reset();
    }
    if (reason != v1::HALF_OPEN_REASON_UNSPECIFIED) {
      std::string series = host.workloads->AddHalfOpen(end.connection().origin(), reason, now);
      if (!series.empty()) end.workload_series = std::make_unique<const std::string>(series);
    }
  }
  end.half_open = reason;
  if (host.live) ShowGauges(host);
  if (reason == v1::HALF_OPEN_REASON_UNSPECIFIED || peer == nullptr) return;
  // A finding: once per change of reason.
  if (host.metrics != nullptr) host.metrics->CountHalfOpenDetected(reason);
  const v1::Connection& connection = end.connection();
  v1::Event event;
  event.set_time_unix_ns(UnixNanos(now));
  event.set_connection_id(connection.connection_id());
  *event.mutable_origin() = connection.origin();
  *event.mutable_endpoints() = connection.endpoints();
  event.set_role(connection.role());
  v1::HalfOpen* half_open = event.mutable_half_open();
  half_open->set_reason(reason);
  half_open->set_peer_host(*peer->host);
  half_open->set_peer_connection_id(peer->connection_id);
  half_open->set_peer_last_state(peer->connection().state());
  half_open->set_peer_lost_unix_ns(UnixNanos(peer_lost));
  *half_open->mutable_peer_origin() = peer->connection().origin();
  TS_LOG(INFO) << "half-open: " << *host.name << " "
               << FormatAddress(connection.endpoints().local_address(),
                                connection.endpoints().local_port())
               << " -> "
               << FormatAddress(connection.endpoints().remote_address(),
                                connection.endpoints().remote_port())
               << " is ESTABLISHED, its peer's end on " << *peer->host << " is gone ("
               << HalfOpenReasonName(reason) << ", "
               << (peer_lost == absl::Time()
                       ? std::string("when unknown")
                       : absl::StrCat(absl::FormatDuration(
                                          absl::Trunc(now - peer_lost, absl::Milliseconds(1))),
                                      " ago"))
               << ")";
  findings->emplace_back(host.name, std::move(event));
}

void ConnectionPairs::ShowGauges(HostRecord& host) {
  if (host.metrics != nullptr) host.metrics->SetHalfOpen(host.half_open);
}

void ConnectionPairs::Disconnected(const std::string& host) {
  absl::MutexLock lock(&mu_);
  auto it = index_->hosts.find(host);
  if (it == index_->hosts.end()) return;
  HostRecord& record = *it->second;
  record.live = false;
  if (record.metrics != nullptr) record.metrics->ClearHalfOpen();
}

void ConnectionPairs::Forget(const std::string& host) {
  absl::MutexLock lock(&mu_);
  auto it = index_->hosts.find(host);
  if (it == index_->hosts.end()) return;
  std::unique_ptr<HostRecord> record = std::move(it->second);
  index_->hosts.erase(it);  // its series go with its HostMetrics
  // Its open ends are lost with it; its own findings end. Survivors are judged at their next
  // snapshot; entries left without an open end go.
  for (auto entry = index_->entries.begin(); entry != index_->entries.end();) {
    auto current = entry++;
    bool any_open = false;
    for (auto& side : current->second.sides) {
      for (End& end : side) {
        if (*end.host == host) {
          if (!end.lost) end.Lose(record->last_seen, v1::HALF_OPEN_PEER_HOST_DOWN);
          end.half_open = v1::HALF_OPEN_REASON_UNSPECIFIED;
          end.workload_series.reset();  // the host's series go with it
        }
        any_open = any_open || !end.lost;
      }
    }
    if (!any_open) index_->entries.erase(current);
  }
}

void ConnectionPairs::CheckSilence(const std::vector<std::pair<std::string, absl::Time>>& last_seen,
                                   absl::Time now) {
  Findings findings;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, seen] : last_seen) {
      auto it = index_->hosts.find(name);
      if (it == index_->hosts.end()) continue;
      HostRecord& host = *it->second;
      const bool down = now - seen >= policy_.peer_down_after;
      if (down == host.down) continue;
      host.down = down;
      host.last_seen = seen;
      if (down) {
        TS_LOG(WARNING) << "host " << name << " silent for "
                        << absl::FormatDuration(absl::Trunc(now - seen, absl::Seconds(1)))
                        << " (--peer_down_after): its peers' ends of " << host.ends.size()
                        << " connections are judged peer_host_down";
      }
      for (const auto& [key, side] : host.ends) {
        auto entry = index_->entries.find(key);
        if (entry != index_->entries.end()) Judge(key, entry->second, now, &findings);
      }
    }
  }
  Publish(std::move(findings));
}

void ConnectionPairs::Publish(Findings findings) {
  // One published batch per host, in the order found.
  while (!findings.empty()) {
    auto published = std::make_shared<PublishedBatch>();
    published->host = findings.front().first;
    auto batch = std::make_shared<v1::Batch>();
    Findings rest;
    for (auto& [host, event] : findings) {
      if (*host == *published->host) {
        *batch->add_events() = std::move(event);
      } else {
        rest.emplace_back(std::move(host), std::move(event));
      }
    }
    published->batch = std::move(batch);
    log_->Publish(std::move(published));
    findings = std::move(rest);
  }
}

std::vector<EndStatus> ConnectionPairs::Describe(const std::string& host,
                                                 const v1::Snapshot& snapshot,
                                                 bool with_peers) const {
  std::vector<EndStatus> statuses(static_cast<size_t>(snapshot.connections_size()));
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < snapshot.connections_size(); ++i) {
    const v1::Connection& connection = snapshot.connections(i);
    EndStatus& status = statuses[static_cast<size_t>(i)];
    if (!Pairable(connection.state())) continue;
    const auto key = KeyOf(connection.endpoints());
    if (!key.has_value()) {
      status.pairing = v1::PAIRING_LOCAL;
      continue;
    }
    auto entry = index_->entries.find(key->first);
    if (entry == index_->entries.end()) {
      status.pairing = v1::PAIRING_UNPAIRED;
      continue;
    }
    const auto& self_side = entry->second.sides[key->second];
    const auto& peer_side = entry->second.sides[1 - key->second];
    for (const End& end : self_side) {
      if (*end.host == host && end.connection_id == connection.connection_id()) {
        status.half_open = end.half_open;
      }
    }
    if (peer_side.empty()) {
      status.pairing = v1::PAIRING_UNPAIRED;
    } else if (self_side.size() > 1 || peer_side.size() > 1) {
      status.pairing = v1::PAIRING_AMBIGUOUS;
    } else if (*peer_side[0].host == host) {
      status.pairing = v1::PAIRING_LOCAL;
    } else {
      status.pairing = v1::PAIRING_PAIRED;
      const End& peer = peer_side[0];
      status.peer_listed = Listed(peer);
      if (with_peers) {
        v1::PeerEnd& out = status.peer.emplace();
        out.set_host(*peer.host);
        *out.mutable_connection() = peer.connection();
        out.set_present(!peer.lost);
        if (peer.lost) out.set_lost_unix_ns(UnixNanos(peer.lost_at));
      }
    }
  }
  return statuses;
}

HostMetrics::HalfOpenCounts ConnectionPairs::HalfOpenCounts(const std::string& host) const {
  absl::MutexLock lock(&mu_);
  auto it = index_->hosts.find(host);
  if (it == index_->hosts.end()) return {};
  HostMetrics::HalfOpenCounts counts = it->second->half_open;
  counts[0] = 0;
  return counts;
}

ConnectionPairs::Stats ConnectionPairs::stats(bool count_pairs) const {
  absl::MutexLock lock(&mu_);
  Stats stats;
  stats.entries = index_->entries.size();
  for (const auto& [name, host] : index_->hosts) stats.ends += host->ends.size();
  if (!count_pairs) return stats;
  for (const auto& [key, entry] : index_->entries) {
    if (entry.sides[0].size() == 1 && entry.sides[1].size() == 1 &&
        *entry.sides[0][0].host != *entry.sides[1][0].host) {
      ++stats.pairs;
    }
  }
  return stats;
}

}  // namespace tcpscope::service
