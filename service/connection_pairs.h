// Both ends of each connection, matched across hosts, and the half-open ends among them: an end
// that is ESTABLISHED while its peer's end, reported by another host's agent, is gone (closed,
// lost with a reboot, or on a host whose agent went silent). Found from snapshots and close
// events, so within a snapshot interval plus a grace period, not after keepalive's 2 h 11 min.
//
// Ends pair on their addresses and ports (A's local = B's remote, and the reverse). What cannot
// pair stays unpaired rather than guessed: a peer without an agent, NAT or a load-balancer VIP
// (the two sides see different addresses), and addresses several hosts claim at once
// (ambiguous). Loopback and self connections are local to one host.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/event_log.h"
#include "service/service_metrics.h"
#include "service/workload_metrics.h"
#include "tcpscope/v1/ingest.pb.h"
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

// What the service knows of one end of a host's latest snapshot.
struct EndStatus {
  v1::Pairing pairing = v1::PAIRING_UNSPECIFIED;
  v1::HalfOpenReason half_open = v1::HALF_OPEN_REASON_UNSPECIFIED;
  std::optional<v1::PeerEnd> peer;  // paired ends, when asked for
  bool peer_listed = false;         // the peer's end is in a connected host's latest snapshot
};

class ConnectionPairs {
 public:
  ConnectionPairs(ServiceMetrics* metrics, EventLog* log, HalfOpenPolicy policy);
  ~ConnectionPairs();

  ConnectionPairs(const ConnectionPairs&) = delete;
  ConnectionPairs& operator=(const ConnectionPairs&) = delete;

  // A host's agent greeted the service. A boot id unlike the previous one means the ends the
  // host's next snapshot lacks were lost with a reboot. Half-open ends of the host are counted
  // into `metrics` and by workload into `workloads` (when given; kept until Forget).
  void Connected(const std::shared_ptr<const std::string>& host, const std::string& boot_id,
                 std::shared_ptr<WorkloadMetrics> workloads = nullptr,
                 std::shared_ptr<HostMetrics> metrics = nullptr);
  // One applied batch of the host: its close events end their ends now; a snapshot replaces
  // the host's ends, and the ends it touches are judged again. Publishes half_open events.
  void Apply(const std::shared_ptr<const std::string>& host, const v1::Batch& batch,
             std::shared_ptr<const v1::Snapshot> snapshot, absl::Time now);
  // The host's agent disconnected: its ends stay as last seen, its half-open gauges go.
  void Disconnected(const std::string& host);
  // The host expired: ends still open on it count as lost with the host (peer_host_down).
  void Forget(const std::string& host);
  // Hosts whose last message is older than peer_down_after are down for their peers (and up
  // again once heard from). `last_seen`: every host the service knows, with its last message.
  void CheckSilence(const std::vector<std::pair<std::string, absl::Time>>& last_seen,
                    absl::Time now);

  // The status of each connection of `snapshot`, the latest one `host` applied; with
  // `with_peers`, paired ends get their peer's end.
  std::vector<EndStatus> Describe(const std::string& host, const v1::Snapshot& snapshot,
                                  bool with_peers) const;
  // The host's half-open ends, indexed by v1::HalfOpenReason (index 0 unused).
  HostMetrics::HalfOpenCounts HalfOpenCounts(const std::string& host) const;

  struct Stats {
    size_t pairs = 0;    // paired connections (both ends, or one end and its lost peer)
    size_t entries = 0;  // connection tuples tracked, paired or not
    size_t ends = 0;     // ends in the hosts' latest snapshots
  };
  // With `count_pairs`, walks every entry (tests, benchmarks); without, cheap (self-metrics).
  Stats stats(bool count_pairs = true) const;

 private:
  struct TupleKey;
  struct End;
  struct Entry;
  struct HostRecord;
  using Findings = std::vector<std::pair<std::shared_ptr<const std::string>, v1::Event>>;

  // The tuple and this end's side of it; nullopt for ends that cannot have a peer on another
  // host (loopback, a connection to itself, malformed addresses).
  static std::optional<std::pair<TupleKey, int>> KeyOf(const v1::Endpoints& endpoints);
  HostRecord& RecordOf(const std::shared_ptr<const std::string>& host)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplySnapshot(HostRecord& host, std::shared_ptr<const v1::Snapshot> snapshot, absl::Time now,
                     Findings* findings) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Judges both ends of an entry again; then drops what no longer matters.
  void Judge(const TupleKey& key, Entry& entry, absl::Time now, Findings* findings)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::HalfOpenReason Verdict(const End& self, const End& peer, absl::Time* peer_lost) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetHalfOpen(End& end, v1::HalfOpenReason reason, const End* peer, absl::Time peer_lost,
                   absl::Time now, Findings* findings) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Listed(const End& end) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ShowGauges(HostRecord& host) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish(Findings findings);

  ServiceMetrics* const metrics_;
  EventLog* const log_;
  const HalfOpenPolicy policy_;
  mutable absl::Mutex mu_;
  struct Index;  // hosts and entries, defined with their types in the .cc
  const std::unique_ptr<Index> index_ ABSL_PT_GUARDED_BY(mu_);
};

}  // namespace tcpscope::service
