// Both ends of each connection, matched across hosts, and the half-open ends among them: an end
// that is ESTABLISHED while its peer's end, reported by another host's agent, is gone (closed,
// lost with a reboot, or on a host whose agent went silent). Found from snapshots and close
// events, so within a snapshot interval plus a grace period, not after keepalive's 2 h 11 min.
//
// Ends pair on their addresses and ports (A's local = B's remote, and the reverse). What cannot
// pair stays unpaired rather than guessed: a peer without an agent, NAT or a load-balancer VIP
// (the two sides see different addresses), and addresses several hosts claim at once
// (ambiguous). Loopback and self connections are local to one host.
//
// The index is pure: it holds ends and verdicts and returns what changed (Findings); metrics,
// events and logs are the reporter's (half_open_reporter.h). It is sharded by connection tuple,
// each shard under its own lock, so hosts applying snapshots at once rarely meet; a host's own
// calls (Connected, ApplySnapshot, ApplyCloses, Disconnected) come from its one stream, in order.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/host_view.h"
#include "service/ring.h"
#include "tcpscope/v1/events.pb.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::service {

struct HalfOpenPolicy {
  // A snapshot showing an end ESTABLISHED makes it half-open only if it was taken at least this
  // long after its peer's end was lost (each by its own host's clock): a FIN or RST still in
  // flight, a dump in progress and clock skew between hosts all fit inside it.
  absl::Duration grace = absl::Seconds(3);
  // A host whose agent has sent nothing for this long is down, for its peers' ends.
  absl::Duration peer_down_after = absl::Minutes(1);
};

// What the index knows of a host. Written by the host's own calls; read by any shard's judging.
struct PairHost {
  explicit PairHost(std::string host_name) : name(std::move(host_name)) {}
  const std::string name;
  std::atomic<uint64_t> round{0};  // of the latest view applied
  std::atomic<int64_t> snapshot_time_ns{0};
  std::atomic<bool> live{false};         // connected, with a view
  std::atomic<bool> down{false};         // silent past peer_down_after
  std::atomic<int64_t> last_seen_ns{0};  // when marked down
  // Its ends that are half-open, by v1::HalfOpenReason (index 0 unused); kept by the shards.
  mutable std::array<std::atomic<uint32_t>, v1::HalfOpenReason_ARRAYSIZE> half_open{};
  // Serializes the host's own calls (its stream's, or, with replicas, its home's messages and
  // the ring's rebuild): taken around each, before any index lock.
  absl::Mutex pass_mu;
  // The host's own calls only.
  std::string boot_id;
  bool rebooted = false;  // a new boot id, not yet followed by a view

  std::array<uint32_t, v1::HalfOpenReason_ARRAYSIZE> HalfOpenCounts() const;
};

// A peer's end as last seen: in its host's current view, or kept since it was lost.
struct PeerFacts {
  std::shared_ptr<const PairHost> host;
  v1::Connection connection;
  bool present = true;
  absl::Time lost_at;  // when not present
  v1::AtRiskReason at_risk = v1::AT_RISK_REASON_UNSPECIFIED;
  v1::HalfOpenReason half_open = v1::HALF_OPEN_REASON_UNSPECIFIED;
};

// An end of `host` newly judged half-open for `reason`: the reporter's event.
struct HalfOpenFinding {
  std::shared_ptr<const PairHost> host;
  v1::Connection connection;  // the survivor's end
  v1::HalfOpenReason reason = v1::HALF_OPEN_REASON_UNSPECIFIED;
  PeerFacts peer;
  absl::Time peer_lost;  // zero when unknown
};

struct Findings {
  std::vector<HalfOpenFinding> half_open;
  // Hosts with an end whose half-open reason changed (their gauges are due), each once.
  std::vector<std::shared_ptr<const PairHost>> changed;
  bool empty() const { return half_open.empty() && changed.empty(); }
};

// What the index knows of one end of a view.
struct EndStatus {
  bool owned = true;  // its tuple is this replica's to pair (always, with one replica)
  v1::Pairing pairing = v1::PAIRING_UNSPECIFIED;
  v1::HalfOpenReason half_open = v1::HALF_OPEN_REASON_UNSPECIFIED;
  std::optional<PeerFacts> peer;  // paired ends, when asked for
  bool peer_listed = false;       // the peer's end is in a connected host's latest view
};

// The hash by which replicas share out connection tuples (stable across processes), equal for
// both ends of a connection; none for ends that cannot have a peer on another host (loopback,
// a connection to itself): those stay with their host's home replica.
std::optional<uint64_t> TupleRouteHash(absl::string_view local_address, uint32_t local_port,
                                       absl::string_view remote_address, uint32_t remote_port);
inline std::optional<uint64_t> TupleRouteHash(const v1::Endpoints& endpoints) {
  return TupleRouteHash(endpoints.local_address(), endpoints.local_port(),
                        endpoints.remote_address(), endpoints.remote_port());
}

class PairIndex {
 public:
  explicit PairIndex(HalfOpenPolicy policy);
  ~PairIndex();

  PairIndex(const PairIndex&) = delete;
  PairIndex& operator=(const PairIndex&) = delete;

  // The host's record (made on first use; the same object until Forget).
  std::shared_ptr<PairHost> Host(const std::string& name);
  // A host's agent greeted the service. A boot id unlike the previous one means the ends the
  // host's next view lacks were lost with a reboot: returns true then.
  bool Connected(PairHost& host, const std::string& boot_id);
  // Close events of the host: each ends its end at the close's time, more precisely than the
  // next snapshot could. `closes`: (connection id, endpoints, time).
  struct Close {
    uint64_t connection_id = 0;
    const v1::Endpoints* endpoints = nullptr;
    absl::Time at;
  };
  void ApplyCloses(PairHost& host, const std::vector<Close>& closes);
  // A new view of the host replaces its previous one (`previous`, null for the first); the
  // entries it touches are judged again. The index keeps pointers into `view` until the host's
  // next pass: the caller keeps it alive until then, and `previous` until this returns.
  Findings ApplySnapshot(PairHost& host, const std::shared_ptr<const HostView>& view,
                         const HostView* previous);
  // The host's agent disconnected: its ends stay as last seen, unjudged until it is back.
  void Disconnected(PairHost& host);
  // The host expired: ends still open on it count as lost with the host (peer_host_down).
  void Forget(const std::string& host);
  // Drops the host's record once nothing holds it (call after its views are gone). While its
  // lost ends remain in the index the record stays: a host of that name coming back gets the
  // same one, so its new ends replace those (and a later Release tries again).
  void Release(const std::string& host);
  // Marks the host silent (or heard again) for its peers and judges the entries of `view`,
  // its current one.
  Findings SetDown(PairHost& host, bool down, absl::Time last_seen, const HostView* view);

  // With replicas: from now on only tuples `ring` gives this replica are indexed (the others'
  // ends are skipped by every call, and described as not owned). Everything indexed so far is
  // dropped without a finding, as the ring may have moved it, and each host's half-open counts
  // start again from 0; hosts' next views rebuild the index. For `quiet` from now (the wall
  // clock) no end is judged half-open (hosts' views arrive one by one: a partial index must
  // not judge).
  void SetRing(std::shared_ptr<const Ring> ring, absl::Duration quiet);
  std::shared_ptr<const Ring> ring() const;

  // The status of each end of `view`, the latest one its host applied; with `with_peers`,
  // paired ends get their peer's end.
  std::vector<EndStatus> Describe(const HostView& view, bool with_peers) const;

  struct Stats {
    size_t pairs = 0;    // paired connections (both ends, or one end and its lost peer)
    size_t entries = 0;  // connection tuples tracked, paired or not
    size_t ends = 0;     // ends of the hosts' latest views in the index
  };
  // With `count_pairs`, walks every entry (tests, benchmarks); without, cheap (self-metrics).
  Stats stats(bool count_pairs = true) const;

 private:
  struct Shard;
  static constexpr size_t kShards = 64;

  struct Work;  // one end's tuple in a pass, and what to do with it
  friend std::optional<uint64_t> TupleRouteHash(absl::string_view, uint32_t, absl::string_view,
                                                uint32_t);
  // Runs `apply` on each work under its shard's lock, each shard locked once, in shard order
  // and, within a shard, in the works' order; then `done` on the shard, still locked.
  template <typename Apply, typename Done>
  void Pass(std::vector<Work>& works, Apply apply, Done done) const;
  class Judge;  // the judgement of an entry, with the pass's findings

  const HalfOpenPolicy policy_;
  // Taken shared by every pass, exclusively by SetRing: a pass sees one ring throughout.
  mutable absl::Mutex ring_mu_;
  std::shared_ptr<const Ring> ring_ ABSL_GUARDED_BY(ring_mu_);
  absl::Time quiet_until_ ABSL_GUARDED_BY(ring_mu_);
  std::array<std::unique_ptr<Shard>, kShards> shards_;
  struct Hosts;
  const std::unique_ptr<Hosts> hosts_;
};

}  // namespace tcpscope::service
