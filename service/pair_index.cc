// Pairing and half-open judgement.
//
// An entry holds the ends reported for one connection tuple, on two sides: side 0 is the end
// whose local (address, port) sorts before its remote one. An end stays in its entry while its
// host's latest view has it; once lost (closed, gone from the view, gone with a reboot or an
// expired host) it keeps a copy of its record and stays only while the other side still has an
// end that may be its survivor.
//
// A host's pass (a snapshot, its closes, its silence) first computes the tuple of every end it
// touches, sorts them by shard, and takes each shard's lock once: at 1000 ends a pass takes 64
// locks, not 1000, and two hosts' passes meet only on a shard both touch at that moment.
#include "service/pair_index.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/hash/hash.h"
#include "absl/synchronization/mutex.h"
#include "common/rendezvous.h"
#include "common/unix_time.h"

namespace tcpscope::service {

std::array<uint32_t, v1::HalfOpenReason_ARRAYSIZE> PairHost::HalfOpenCounts() const {
  std::array<uint32_t, v1::HalfOpenReason_ARRAYSIZE> counts{};
  for (size_t i = 1; i < counts.size(); ++i) counts[i] = half_open[i].load();
  return counts;
}

namespace {

// A connection tuple, its lower (address, port) first.
template <size_t N>
struct TupleKey {
  std::array<char, N> low_address{};
  std::array<char, N> high_address{};
  uint16_t low_port = 0;
  uint16_t high_port = 0;

  bool operator==(const TupleKey& other) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const TupleKey& key) {
    return H::combine(std::move(h), key.low_address, key.high_address, key.low_port, key.high_port);
  }
};
using Key4 = TupleKey<4>;
using Key6 = TupleKey<16>;

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

bool Loopback(absl::string_view address) {
  static constexpr unsigned char kV6Loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  static constexpr unsigned char kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (address.size() == 4) return static_cast<unsigned char>(address[0]) == 127;
  if (address.size() != 16) return false;
  if (std::memcmp(address.data(), kV6Loopback, 16) == 0) return true;
  return std::memcmp(address.data(), kV4MappedPrefix, 12) == 0 &&
         static_cast<unsigned char>(address[12]) == 127;
}

// A lost end: its last record, kept beyond its host's view.
struct LostEnd {
  std::shared_ptr<const PairHost> host;
  EndRecord record;
  std::shared_ptr<const v1::Origin> origin;
  std::array<char, 16> local_address{};
  std::array<char, 16> remote_address{};
  uint64_t round = 0;  // of the host's view that last had it (or the one it closed in)
  absl::Time at;
  v1::HalfOpenReason as = v1::HALF_OPEN_REASON_UNSPECIFIED;  // for the survivor

  v1::Connection connection() const {
    const size_t size = record.ipv6 ? 16 : 4;
    return MakeConnection(record, *origin, {local_address.data(), size},
                          {remote_address.data(), size});
  }
};

// 16 bytes: one word that is either the view a present end points into or the lost end it
// owns (told apart by the low bit, as both are aligned), its slot and its verdicts. A present
// end points into its host's current view without owning it: every pass of a host re-points
// its present ends at the new view (or loses them, copying their record) while the previous
// view is still held by the caller, so no end outlives the view it uses.
class End {
 public:
  End() = default;
  End(End&& other) noexcept
      : word_(std::exchange(other.word_, 0)),
        slot_(other.slot_),
        half_open(other.half_open),
        confirmed(other.confirmed) {}
  End& operator=(End&& other) noexcept {
    if (this != &other) {
      delete lost_end_or_null();
      word_ = std::exchange(other.word_, 0);
      slot_ = other.slot_;
      half_open = other.half_open;
      confirmed = other.confirmed;
    }
    return *this;
  }
  ~End() { delete lost_end_or_null(); }

  bool lost() const { return (word_ & kLostBit) != 0; }
  LostEnd& lost_end() const { return *lost_end_or_null(); }
  const HostView& view() const { return *reinterpret_cast<const HostView*>(word_); }

  // Points a present end at `view`'s record `slot`.
  void Present(const HostView* view, uint32_t slot) {
    word_ = reinterpret_cast<uintptr_t>(view);
    slot_ = slot;
  }

  v1::HalfOpenReason reason() const { return static_cast<v1::HalfOpenReason>(half_open); }
  const EndRecord& record() const { return lost() ? lost_end().record : view().ends[slot_]; }
  const PairHost& host() const { return lost() ? *lost_end().host : *view().host; }
  uint64_t round() const { return lost() ? lost_end().round : view().round; }
  v1::Connection connection() const {
    return lost() ? lost_end().connection() : view().ConnectionOf(view().ends[slot_]);
  }
  bool Established() const { return record().tcp_state() == v1::TCP_STATE_ESTABLISHED; }

  void Lose(absl::Time at, v1::HalfOpenReason as) {  // copies the record out of the view
    auto* copy = new LostEnd();
    const HostView& from = view();
    const EndRecord& end = from.ends[slot_];
    copy->host = from.host;
    copy->record = end;
    copy->origin = from.origins[end.origin];
    const absl::string_view local = from.LocalAddress(end);
    const absl::string_view remote = from.RemoteAddress(end);
    std::memcpy(copy->local_address.data(), local.data(), local.size());
    std::memcpy(copy->remote_address.data(), remote.data(), remote.size());
    copy->round = from.round;
    copy->at = at;
    copy->as = as;
    word_ = reinterpret_cast<uintptr_t>(copy) | kLostBit;
  }

 private:
  static constexpr uintptr_t kLostBit = 1;
  static_assert(alignof(LostEnd) > kLostBit && alignof(HostView) > kLostBit);
  LostEnd* lost_end_or_null() const {
    return lost() ? reinterpret_cast<LostEnd*>(word_ & ~kLostBit) : nullptr;
  }

  uintptr_t word_ = 0;  // const HostView* while present; LostEnd* | kLostBit once lost
  uint32_t slot_ = 0;   // in view().ends, while present

 public:
  uint8_t half_open = v1::HALF_OPEN_REASON_UNSPECIFIED;  // v1::HalfOpenReason
  // Seen ESTABLISHED at once with the other side's one end: only then are the two known to be
  // ends of one connection, not a new connection on a tuple whose previous one still has an
  // end (in TIME_WAIT, say) on the other side. A new end (a new connection id) starts false.
  bool confirmed = false;
};

static_assert(sizeof(End) == 16);

// 48 bytes, 64 with its key in the shard's table.
struct Entry {
  std::array<absl::InlinedVector<End, 1>, 2> sides;
};
static_assert(sizeof(Entry) == 48);

}  // namespace

struct PairIndex::Shard {
  mutable absl::Mutex mu;
  absl::flat_hash_map<Key4, Entry> v4 ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<Key6, Entry> v6 ABSL_GUARDED_BY(mu);

  Entry* Find(const Work& work) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  Entry& Add(const Work& work) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void Erase(const Work& work) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

struct PairIndex::Work {
  enum class Op : uint8_t { kPresent, kAbsent, kClose, kJudge, kDescribe };
  size_t shard = 0;
  bool ipv6 = false;
  uint8_t side = 0;
  Op op = Op::kPresent;
  uint32_t slot = 0;  // the end's index in the pass's view; a close's index
  uint64_t connection_id = 0;
  uint64_t route = 0;  // TupleRouteHash
  Key4 key4;
  Key6 key6;

  // The tuple of an end; false for ends that cannot have a peer on another host (loopback, a
  // connection to itself).
  bool SetKey(absl::string_view local, uint16_t local_port, absl::string_view remote,
              uint16_t remote_port) {
    ipv6 = local.size() == 16;
    if (Loopback(local) || Loopback(remote)) return false;
    const int order = std::memcmp(local.data(), remote.data(), local.size());
    if (order == 0 && local_port == remote_port) return false;
    const bool local_low = order < 0 || (order == 0 && local_port < remote_port);
    const absl::string_view low = local_low ? local : remote;
    const absl::string_view high = local_low ? remote : local;
    side = local_low ? 0 : 1;
    const uint16_t low_port = local_low ? local_port : remote_port;
    const uint16_t high_port = local_low ? remote_port : local_port;
    if (ipv6) {
      std::memcpy(key6.low_address.data(), low.data(), 16);
      std::memcpy(key6.high_address.data(), high.data(), 16);
      key6.low_port = low_port;
      key6.high_port = high_port;
      shard = absl::HashOf(key6) % kShards;
      route = RouteOf(key6);
    } else {
      std::memcpy(key4.low_address.data(), low.data(), 4);
      std::memcpy(key4.high_address.data(), high.data(), 4);
      key4.low_port = low_port;
      key4.high_port = high_port;
      shard = absl::HashOf(key4) % kShards;
      route = RouteOf(key4);
    }
    return true;
  }
  bool SetKey(const HostView& view, const EndRecord& end) {
    return SetKey(view.LocalAddress(end), end.local_port, view.RemoteAddress(end), end.remote_port);
  }
  // Whether the pass's ring (null: one replica) gives this replica the tuple.
  bool Owned(const Ring* ring) const { return ring == nullptr || ring->Owns(route); }

  // The tuple's bytes, ports in network order: the same hash on every replica.
  template <size_t N>
  static uint64_t RouteOf(const TupleKey<N>& key) {
    std::array<char, 2 * N + 4> bytes;
    std::memcpy(bytes.data(), key.low_address.data(), N);
    std::memcpy(bytes.data() + N, key.high_address.data(), N);
    bytes[2 * N] = static_cast<char>(key.low_port >> 8);
    bytes[2 * N + 1] = static_cast<char>(key.low_port);
    bytes[2 * N + 2] = static_cast<char>(key.high_port >> 8);
    bytes[2 * N + 3] = static_cast<char>(key.high_port);
    return StableHash({bytes.data(), bytes.size()});
  }
};

std::optional<uint64_t> TupleRouteHash(absl::string_view local_address, uint32_t local_port,
                                       absl::string_view remote_address, uint32_t remote_port) {
  if (local_address.size() != remote_address.size() ||
      (local_address.size() != 4 && local_address.size() != 16)) {
    return std::nullopt;
  }
  PairIndex::Work work;
  if (!work.SetKey(local_address, static_cast<uint16_t>(local_port), remote_address,
                   static_cast<uint16_t>(remote_port))) {
    return std::nullopt;
  }
  return work.route;
}

Entry* PairIndex::Shard::Find(const Work& work) {
  if (work.ipv6) {
    auto it = v6.find(work.key6);
    return it == v6.end() ? nullptr : &it->second;
  }
  auto it = v4.find(work.key4);
  return it == v4.end() ? nullptr : &it->second;
}

Entry& PairIndex::Shard::Add(const Work& work) { return work.ipv6 ? v6[work.key6] : v4[work.key4]; }

void PairIndex::Shard::Erase(const Work& work) {
  if (work.ipv6) {
    v6.erase(work.key6);
  } else {
    v4.erase(work.key4);
  }
}

struct PairIndex::Hosts {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, std::shared_ptr<PairHost>> by_name ABSL_GUARDED_BY(mu);
  std::atomic<int64_t> ends{0};  // present ends in the index
};

namespace {

// One host is one PairHost object for as long as any end of it is in the index (Forget keeps
// it while its lost ends remain), so identity is the pointer.
bool SameHost(const PairHost& a, const PairHost& b) { return &a == &b; }

std::shared_ptr<const PairHost> HostOf(const End& end) {
  return end.lost() ? end.lost_end().host : end.view().host;
}

// The peer's end as a listing or an event shows it.
PeerFacts FactsOf(const End& end) {
  PeerFacts facts;
  facts.host = HostOf(end);
  facts.connection = end.connection();
  facts.present = !end.lost();
  if (end.lost()) facts.lost_at = end.lost_end().at;
  facts.at_risk = end.record().at_risk_reason();
  facts.half_open = end.reason();
  return facts;
}

// The end is in its host's latest view, and that host is connected.
bool Listed(const End& end) {
  if (end.lost()) return false;
  const PairHost& host = *end.view().host;
  return host.live.load() && host.round.load() == end.view().round;
}

}  // namespace

// The judgement of an entry's ends, adding what changes to a pass's findings.
class PairIndex::Judge {
 public:
  Judge(const HalfOpenPolicy& policy, absl::Time quiet_until, Findings* findings)
      : policy_(policy), quiet_(absl::Now() < quiet_until), findings_(findings) {}

  // Judges both sides again; then drops the lost ends that no longer matter, and the entry
  // when it is empty.
  void Again(Shard& shard, const Work& work, Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu) {
    auto& sides = entry.sides;
    bool paired = sides[0].size() == 1 && sides[1].size() == 1 &&
                  !SameHost(sides[0][0].host(), sides[1][0].host());
    if (paired) {
      End& low = sides[0][0];
      End& high = sides[1][0];
      if (!low.lost() && !high.lost() && low.Established() && high.Established()) {
        low.confirmed = high.confirmed = true;
      }
      paired = low.confirmed && high.confirmed;
    }
    for (int s = 0; s < 2; ++s) {
      for (End& self : sides[s]) {
        v1::HalfOpenReason reason = v1::HALF_OPEN_REASON_UNSPECIFIED;
        absl::Time peer_lost;
        const End* peer = paired ? &sides[1 - s][0] : nullptr;
        if (!paired || self.lost()) {
          reason = v1::HALF_OPEN_REASON_UNSPECIFIED;
        } else if (!Listed(self)) {
          continue;  // its host is not connected: judged again when it is
        } else if (self.Established() && !quiet_) {
          reason = Verdict(self, *peer, &peer_lost);
        }
        Set(self, reason, peer, peer_lost);
      }
    }
    // A lost end matters only while the other side has an end it may have left half-open.
    for (int s = 0; s < 2; ++s) {
      const bool other_open =
          std::any_of(sides[1 - s].begin(), sides[1 - s].end(),
                      [](const End& end) { return !end.lost() && end.Established(); });
      if (!other_open) {
        sides[s].erase(std::remove_if(sides[s].begin(), sides[s].end(),
                                      [](const End& end) { return end.lost(); }),
                       sides[s].end());
      }
    }
    if (sides[0].empty() && sides[1].empty()) shard.Erase(work);
  }

  // Sets an end's half-open reason; a new reason with a peer is a finding.
  void Set(End& end, v1::HalfOpenReason reason, const End* peer, absl::Time peer_lost) {
    if (end.half_open == reason) return;
    const PairHost& host = end.host();
    if (end.half_open != v1::HALF_OPEN_REASON_UNSPECIFIED) --host.half_open[end.half_open];
    if (reason != v1::HALF_OPEN_REASON_UNSPECIFIED) ++host.half_open[reason];
    end.half_open = static_cast<uint8_t>(reason);
    std::shared_ptr<const PairHost> host_ptr = HostOf(end);
    if (findings_->changed.empty() || findings_->changed.back() != host_ptr) {
      findings_->changed.push_back(host_ptr);
    }
    if (reason == v1::HALF_OPEN_REASON_UNSPECIFIED || peer == nullptr) return;
    HalfOpenFinding& finding = findings_->half_open.emplace_back();
    finding.host = std::move(host_ptr);
    finding.connection = end.connection();
    finding.reason = reason;
    finding.peer = FactsOf(*peer);
    finding.peer_lost = peer_lost;
  }

 private:
  v1::HalfOpenReason Verdict(const End& self, const End& peer, absl::Time* peer_lost) const {
    const absl::Time taken = absl::FromUnixNanos(self.host().snapshot_time_ns.load());
    if (peer.lost()) {
      const LostEnd& lost = peer.lost_end();
      *peer_lost = lost.at;
      return lost.at + policy_.grace <= taken ? lost.as : v1::HALF_OPEN_REASON_UNSPECIFIED;
    }
    const PairHost& peer_host = peer.host();
    if (peer_host.down.load()) {
      *peer_lost = absl::FromUnixNanos(peer_host.last_seen_ns.load());
      return v1::HALF_OPEN_PEER_HOST_DOWN;
    }
    const EndRecord& record = peer.record();
    if (Closing(record.tcp_state())) {
      const absl::Time since = record.state_since_unix_ns != 0
                                   ? TimeFromUnixNanos(record.state_since_unix_ns)
                                   : absl::FromUnixNanos(peer_host.snapshot_time_ns.load());
      *peer_lost = since;
      return since + policy_.grace <= taken ? v1::HALF_OPEN_PEER_CLOSED
                                            : v1::HALF_OPEN_REASON_UNSPECIFIED;
    }
    return v1::HALF_OPEN_REASON_UNSPECIFIED;
  }

  const HalfOpenPolicy& policy_;
  const bool quiet_;  // the ring changed lately: nothing is judged half-open
  Findings* const findings_;
};

PairIndex::PairIndex(HalfOpenPolicy policy) : policy_(policy), hosts_(std::make_unique<Hosts>()) {
  for (auto& shard : shards_) shard = std::make_unique<Shard>();
}

PairIndex::~PairIndex() = default;

template <typename Apply, typename Done>
void PairIndex::Pass(std::vector<Work>& works, Apply apply, Done done) const {
  std::stable_sort(works.begin(), works.end(),
                   [](const Work& a, const Work& b) { return a.shard < b.shard; });
  for (size_t begin = 0; begin < works.size();) {
    Shard& shard = *shards_[works[begin].shard];
    size_t end = begin;
    absl::MutexLock lock(&shard.mu);
    while (end < works.size() && works[end].shard == works[begin].shard) ++end;
    for (size_t i = begin; i < end; ++i) apply(shard, works[i]);
    done(shard);
    begin = end;
  }
}

std::shared_ptr<PairHost> PairIndex::Host(const std::string& name) {
  absl::MutexLock lock(&hosts_->mu);
  std::shared_ptr<PairHost>& slot = hosts_->by_name[name];
  if (slot == nullptr) slot = std::make_shared<PairHost>(name);
  return slot;
}

bool PairIndex::Connected(PairHost& host, const std::string& boot_id) {
  const bool rebooted = !host.boot_id.empty() && host.boot_id != boot_id;
  if (rebooted) host.rebooted = true;
  host.boot_id = boot_id;
  return rebooted;
}

void PairIndex::Disconnected(PairHost& host) { host.live = false; }

void PairIndex::ApplyCloses(PairHost& host, const std::vector<Close>& closes) {
  absl::ReaderMutexLock ring_lock(&ring_mu_);
  std::vector<Work> works;
  for (size_t i = 0; i < closes.size(); ++i) {
    const v1::Endpoints& e = *closes[i].endpoints;
    Work work;
    if (!work.SetKey(e.local_address(), static_cast<uint16_t>(e.local_port()), e.remote_address(),
                     static_cast<uint16_t>(e.remote_port())) ||
        !work.Owned(ring_.get())) {
      continue;
    }
    work.op = Work::Op::kClose;
    work.slot = static_cast<uint32_t>(i);
    work.connection_id = closes[i].connection_id;
    works.push_back(work);
  }
  Pass(
      works,
      [&](Shard& shard, const Work& work) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu) {
        Entry* entry = shard.Find(work);
        if (entry == nullptr) return;
        for (End& end : entry->sides[work.side]) {
          if (!end.lost() && &end.host() == &host &&
              end.record().connection_id == work.connection_id) {
            end.Lose(closes[work.slot].at, v1::HALF_OPEN_PEER_CLOSED);
            --hosts_->ends;
          }
        }
      },
      [](Shard&) {});
}

Findings PairIndex::ApplySnapshot(PairHost& host, const std::shared_ptr<const HostView>& view,
                                  const HostView* previous) {
  absl::ReaderMutexLock ring_lock(&ring_mu_);
  const Ring* ring = ring_.get();
  const bool rebooted = std::exchange(host.rebooted, false);
  host.snapshot_time_ns = absl::ToUnixNanos(view->taken);
  host.down = false;
  host.round = view->round;
  host.live = true;
  std::vector<Work> works;
  works.reserve(view->ends.size() + (previous != nullptr ? previous->ends.size() : 0));
  // Within a shard, the works run in this order: every present end, then the absent ones.
  for (size_t i = 0; i < view->ends.size(); ++i) {
    const EndRecord& end = view->ends[i];
    Work work;
    if (!Pairable(end.tcp_state()) || !work.SetKey(*view, end) || !work.Owned(ring)) continue;
    work.op = Work::Op::kPresent;
    work.slot = static_cast<uint32_t>(i);
    work.connection_id = end.connection_id;
    works.push_back(work);
  }
  if (previous != nullptr) {
    for (const EndRecord& end : previous->ends) {
      Work work;
      if (!Pairable(end.tcp_state()) || !work.SetKey(*previous, end) || !work.Owned(ring)) {
        continue;
      }
      work.op = Work::Op::kAbsent;
      work.connection_id = end.connection_id;
      works.push_back(work);
    }
  }
  const v1::HalfOpenReason lost_as =
      rebooted ? v1::HALF_OPEN_PEER_REBOOTED : v1::HALF_OPEN_PEER_CLOSED;
  Findings findings;
  Judge judge(policy_, quiet_until_, &findings);
  std::vector<const Work*> touched;
  Pass(
      works,
      [&](Shard& shard, const Work& work) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu) {
        if (work.op == Work::Op::kPresent) {
          Entry& entry = shard.Add(work);
          auto& side = entry.sides[work.side];
          auto it = std::find_if(side.begin(), side.end(),
                                 [&](const End& end) { return SameHost(end.host(), host); });
          if (it != side.end() && it->record().connection_id != work.connection_id) {
            // The tuple's earlier connection is over; this is a new one.
            judge.Set(*it, v1::HALF_OPEN_REASON_UNSPECIFIED, nullptr, absl::Time());
            if (!it->lost()) --hosts_->ends;
            side.erase(it);
            it = side.end();
          }
          if (it == side.end()) {
            side.emplace_back().Present(view.get(), work.slot);
            ++hosts_->ends;
          } else if (!it->lost()) {
            it->Present(view.get(), work.slot);
          } else {
            it->lost_end().round =
                view->round;  // a close already seen stays seen: the dump predates it
          }
        } else {
          Entry* entry = shard.Find(work);
          if (entry == nullptr) return;
          bool lost_here = false;
          for (End& end : entry->sides[work.side]) {
            if (!SameHost(end.host(), host) || end.round() == view->round) continue;
            if (!end.lost()) {
              end.Lose(view->taken, lost_as);
              --hosts_->ends;
            }
            judge.Set(end, v1::HALF_OPEN_REASON_UNSPECIFIED, nullptr, absl::Time());
            lost_here = true;
          }
          if (!lost_here) return;
        }
        touched.push_back(&work);
      },
      [&](Shard& shard) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu) {
        // Every work of the shard is applied: judge what they touched, still under its lock.
        for (const Work* done : touched) {
          if (Entry* entry = shard.Find(*done); entry != nullptr) judge.Again(shard, *done, *entry);
        }
        touched.clear();
      });
  return findings;
}

Findings PairIndex::SetDown(PairHost& host, bool down, absl::Time last_seen, const HostView* view) {
  absl::ReaderMutexLock ring_lock(&ring_mu_);
  Findings findings;
  host.last_seen_ns = absl::ToUnixNanos(last_seen);
  host.down = down;
  if (view == nullptr) return findings;
  std::vector<Work> works;
  for (const EndRecord& end : view->ends) {
    Work work;
    if (!Pairable(end.tcp_state()) || !work.SetKey(*view, end) || !work.Owned(ring_.get())) {
      continue;
    }
    work.op = Work::Op::kJudge;
    works.push_back(work);
  }
  Judge judge(policy_, quiet_until_, &findings);
  Pass(
      works,
      [&](Shard& shard, const Work& work) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu) {
        if (Entry* entry = shard.Find(work); entry != nullptr) judge.Again(shard, work, *entry);
      },
      [](Shard&) {});
  return findings;
}

void PairIndex::Forget(const std::string& name) {
  std::shared_ptr<PairHost> host;
  {
    absl::MutexLock lock(&hosts_->mu);
    auto it = hosts_->by_name.find(name);
    if (it == hosts_->by_name.end()) return;
    host = it->second;
  }
  absl::ReaderMutexLock ring_lock(&ring_mu_);
  const absl::Time last_seen = absl::FromUnixNanos(host->last_seen_ns.load());
  // Its open ends are lost with it; its own findings end. Survivors are judged at their next
  // snapshot; entries left without an open end go.
  auto forget = [&](auto& map) {
    for (auto entry = map.begin(); entry != map.end();) {
      auto current = entry++;
      bool any_open = false;
      for (auto& side : current->second.sides) {
        for (End& end : side) {
          if (SameHost(end.host(), *host)) {
            if (!end.lost()) {
              end.Lose(last_seen, v1::HALF_OPEN_PEER_HOST_DOWN);
              --hosts_->ends;
            }
            end.half_open = v1::HALF_OPEN_REASON_UNSPECIFIED;
          }
          any_open = any_open || !end.lost();
        }
      }
      if (!any_open) map.erase(current);
    }
  };
  for (auto& shard : shards_) {
    absl::MutexLock lock(&shard->mu);
    forget(shard->v4);
    forget(shard->v6);
  }
}

void PairIndex::Release(const std::string& name) {
  absl::MutexLock lock(&hosts_->mu);
  auto it = hosts_->by_name.find(name);
  if (it != hosts_->by_name.end() && it->second.use_count() == 1) hosts_->by_name.erase(it);
}

std::vector<EndStatus> PairIndex::Describe(const HostView& view, bool with_peers) const {
  absl::ReaderMutexLock ring_lock(&ring_mu_);
  std::vector<EndStatus> statuses(view.ends.size());
  std::vector<Work> works;
  for (size_t i = 0; i < view.ends.size(); ++i) {
    const EndRecord& end = view.ends[i];
    Work work;
    const bool keyed = work.SetKey(view, end);
    if (keyed && !work.Owned(ring_.get())) {
      statuses[i].owned = false;
      continue;
    }
    if (!Pairable(end.tcp_state())) continue;
    if (!keyed) {
      statuses[i].pairing = v1::PAIRING_LOCAL;
      continue;
    }
    work.op = Work::Op::kDescribe;
    work.slot = static_cast<uint32_t>(i);
    work.connection_id = end.connection_id;
    works.push_back(work);
  }
  Pass(
      works,
      [&](Shard& shard, const Work& work) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu) {
        EndStatus& status = statuses[work.slot];
        const Entry* entry = shard.Find(work);
        if (entry == nullptr) {
          status.pairing = v1::PAIRING_UNPAIRED;
          return;
        }
        const auto& self_side = entry->sides[work.side];
        const auto& peer_side = entry->sides[1 - work.side];
        for (const End& end : self_side) {
          if (SameHost(end.host(), *view.host) &&
              end.record().connection_id == work.connection_id) {
            status.half_open = end.reason();
          }
        }
        if (peer_side.empty()) {
          status.pairing = v1::PAIRING_UNPAIRED;
        } else if (self_side.size() > 1 || peer_side.size() > 1) {
          status.pairing = v1::PAIRING_AMBIGUOUS;
        } else if (SameHost(peer_side[0].host(), *view.host)) {
          status.pairing = v1::PAIRING_LOCAL;
        } else {
          status.pairing = v1::PAIRING_PAIRED;
          status.peer_listed = Listed(peer_side[0]);
          if (with_peers) status.peer = FactsOf(peer_side[0]);
        }
      },
      [](Shard&) {});
  return statuses;
}

void PairIndex::SetRing(std::shared_ptr<const Ring> ring, absl::Duration quiet) {
  absl::WriterMutexLock ring_lock(&ring_mu_);
  for (auto& shard : shards_) {
    absl::MutexLock lock(&shard->mu);
    shard->v4.clear();
    shard->v6.clear();
  }
  {
    absl::MutexLock lock(&hosts_->mu);
    for (auto& [name, host] : hosts_->by_name) {
      for (auto& count : host->half_open) count = 0;
    }
  }
  hosts_->ends = 0;
  ring_ = std::move(ring);
  quiet_until_ = absl::Now() + quiet;
}

std::shared_ptr<const Ring> PairIndex::ring() const {
  absl::ReaderMutexLock ring_lock(&ring_mu_);
  return ring_;
}

PairIndex::Stats PairIndex::stats(bool count_pairs) const {
  Stats stats;
  stats.ends = static_cast<size_t>(std::max<int64_t>(0, hosts_->ends.load()));
  auto count = [&](const auto& map) {
    stats.entries += map.size();
    if (!count_pairs) return;
    for (const auto& [key, entry] : map) {
      if (entry.sides[0].size() == 1 && entry.sides[1].size() == 1 &&
          !SameHost(entry.sides[0][0].host(), entry.sides[1][0].host())) {
        ++stats.pairs;
      }
    }
  };
  for (const auto& shard : shards_) {
    absl::MutexLock lock(&shard->mu);
    count(shard->v4);
    count(shard->v6);
  }
  return stats;
}

}  // namespace tcpscope::service
