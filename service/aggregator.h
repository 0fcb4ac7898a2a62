// The write path: agent streams connect, their validated batches are applied once each (exactly
// once across resends, by sequence number) to their host's state, series and views, close
// events and snapshots feed the pair index, and what it finds is reported. Hosts disconnected
// longer than the expiry are forgotten; hosts silent too long are down for their peers.
//
// No process-wide lock on a batch's path: the host registry's lock is taken only to connect,
// expire and list hosts; a batch takes its own host's lock, the pair index's shards it touches
// and the event log's shard of its host.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/at_risk.h"
#include "service/event_log.h"
#include "service/half_open_reporter.h"
#include "service/host_state.h"
#include "service/pair_index.h"
#include "service/ring.h"
#include "service/service_metrics.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/replica.pb.h"

namespace tcpscope::service {

struct AggregatorOptions {
  AtRiskPolicy at_risk;
  // A disconnected host's series, totals and dedupe state are removed this long after its
  // last message. Longer than any agent reconnect backoff, or a resend could count twice.
  absl::Duration host_expiry = absl::Minutes(10);
  HalfOpenPolicy half_open;
  // Per host, the pods (a container outside Kubernetes counts as one) and server ports with
  // series of their own; the rest are summed into pod="other" and port="other". A pod or port
  // without ends and events for host_expiry frees its slot.
  int max_pods_per_host = 100;
  int max_ports_per_host = 50;
  // With replicas: after the ring changes, no end is judged half-open for this long (the other
  // replicas see the change and send their hosts' views within it).
  absl::Duration ring_quiet = absl::Seconds(5);
};

// With replicas: what the aggregator sends to the other replicas.
class ReplicaSender {
 public:
  virtual ~ReplicaSender() = default;
  virtual void Send(const std::string& replica, v1::ReplicaMessage message) = 0;
};

class Aggregator {
 public:
  Aggregator(ServiceMetrics* metrics, EventLog* log, AggregatorOptions options = {});
  ~Aggregator();

  // Registers an agent stream for hello.host_name(). Fails with ALREADY_EXISTS while another
  // stream holds the host. `last_applied_seq` is what the agent need not resend.
  absl::StatusOr<std::shared_ptr<HostState>> Connect(const v1::Hello& hello, absl::Time now,
                                                     uint64_t* last_applied_seq);
  // Applies a validated batch once and publishes its events: returns false (and changes
  // nothing) for a batch at or below the applied sequence number, i.e. a resend. The snapshot
  // is kept as a compact view; the events are shared, not copied, with the event history.
  bool Apply(HostState& host, std::shared_ptr<v1::Batch> batch, absl::Time now);
  // The stream ended: the host is down, its snapshot gauges go.
  void Disconnect(HostState& host, absl::Time now);
  // Forgets hosts disconnected for longer than the expiry; returns their names.
  std::vector<std::string> ExpireHosts(absl::Time now);
  // Hosts silent for longer than the half-open policy's peer_down_after are down for their
  // peers' ends (called periodically, like ExpireHosts).
  void CheckSilentHosts(absl::Time now);

  // With replicas (not called with one): sends go through `sender` from now on.
  void SetReplicaSender(ReplicaSender* sender);
  // The ring changed: the pair index starts again over the tuples this replica now owns, the
  // other replicas' hosts are dropped, and this replica's hosts' current views are indexed
  // again and sent to their new owners.
  void OnRing(std::shared_ptr<const Ring> ring, absl::Time now);
  // `replica` now agrees on the ring: it gets this replica's hosts' current views.
  void OnAgreement(const std::string& replica);
  // A message of another replica's Exchange stream (validated here; an error ends the stream).
  absl::Status ApplyReplicaMessage(const std::string& from, v1::ReplicaMessage& message,
                                   absl::Time now);
  // The hosts of other replicas with ends in this replica's tuples, sorted by name.
  std::vector<std::shared_ptr<RemoteHost>> RemoteHosts() const;

  // Every host (or only `only`), sorted by name: the queries' starting point.
  std::vector<std::shared_ptr<HostState>> Hosts(const std::string& only) const;
  std::shared_ptr<HostState> Find(const std::string& host) const;
  const PairIndex& pairs() const { return pairs_; }
  const EventLog& log() const { return *log_; }

 private:
  absl::StatusOr<std::shared_ptr<HostState>> ConnectLocked(const v1::Hello& hello, absl::Time now,
                                                           uint64_t* last_applied_seq)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends a host's pairing input to the replicas owning its tuples: their part of its `view`
  // (null: no new one) and of the closes among `events`; and a change of the host to every
  // replica of the ring.
  void Forward(const std::string& host, const std::string& boot_id, const HostView* view,
               const google::protobuf::RepeatedPtrField<v1::Event>& events);
  void ForwardStatus(const std::string& host, v1::HostStatus::Change change, absl::Time last_seen);
  absl::Status ApplyFragment(const std::string& from, uint64_t ring_id, v1::HostFragment& fragment,
                             absl::Time now);
  absl::Status ApplyStatus(const std::string& from, const v1::HostStatus& status, absl::Time now);
  std::shared_ptr<RemoteHost> FindRemote(const std::string& host) const;

  ServiceMetrics* const metrics_;
  EventLog* const log_;
  const AggregatorOptions options_;
  PairIndex pairs_;
  HalfOpenReporter reporter_;
  ReplicaSender* sender_ = nullptr;
  // Fragments and statuses of other replicas' hosts are applied under it shared, a ring change
  // exclusively: no fragment is half applied across the rebuild.
  absl::Mutex remote_apply_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<HostState>> hosts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<RemoteHost>> remote_ ABSL_GUARDED_BY(mu_);
  // A host's latest fragment from another replica that arrived while its agent was still
  // connected here (it moved, and this stream has not ended yet): applied when it ends.
  struct PendingFragment {
    std::string from;
    uint64_t ring_id = 0;
    v1::HostFragment fragment;
  };
  absl::flat_hash_map<std::string, PendingFragment> pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tcpscope::service
