// The tier of replicas as this replica sees it (tcpscope-service --peers, --advertise): every
// replica named by --peers (re-resolved for dns:///), pinged every ping interval; a peer is up
// from its first answered ping until it has failed pings for `down_after`. The ring is this
// replica and the peers up; each change gets a new epoch and is handed to the listener, which
// rebuilds what the ring decides (which replica owns which connection tuples).
//
// Without --peers there is no ReplicaSet: the service is the one replica.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/rendezvous.h"
#include "common/replica_addresses.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/security/credentials.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "service/ring.h"
#include "tcpscope/v1/replica.grpc.pb.h"

namespace tcpscope::service {

struct ReplicaSetOptions {
  std::string advertise;  // how the peers reach this replica; one of the peers
  ReplicaAddresses peers;
  absl::Duration ping_interval = absl::Seconds(1);
  absl::Duration down_after = absl::Seconds(3);
  absl::Duration resolve_interval = absl::Seconds(10);  // dns:/// only
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::string token;  // the query token, sent to peers
};

class ReplicaSet {
 public:
  using RingListener = std::function<void(std::shared_ptr<const Ring>)>;
  // A peer now counts the same replicas up as this one (its pings say so): messages that
  // depend on the ring (pairing fragments) are now accepted by it.
  using AgreementListener = std::function<void(const std::string& peer)>;

  static absl::StatusOr<std::unique_ptr<ReplicaSet>> Create(ReplicaSetOptions options,
                                                            prometheus::Registry& registry);
  ~ReplicaSet();  // stops pinging

  // Pings begin; the listeners get each new ring and each new agreement (from the pinging
  // thread, one at a time, the ring first).
  void Start(RingListener ring_listener, AgreementListener agreement_listener);

  const std::string& self() const { return options_.advertise; }
  std::shared_ptr<const Ring> ring() const;
  // Every known replica but this one, up or not, sorted.
  std::vector<std::string> Peers() const;
  bool IsUp(const std::string& peer) const;
  // A channel to `peer`, made once; reconnects within a second once the peer is back.
  std::shared_ptr<grpc::Channel> Channel(const std::string& peer);
  // Authenticates a call to a peer (the query token, when there is one).
  void Authorize(grpc::ClientContext& context) const;
  // For the Ping RPC: the replicas of the ring in effect (applied by the listener), sorted.
  std::vector<std::string> UpMembers() const;
  // Messages to `peer` were lost (its stream broke): once it answers a ping again and agrees on
  // the ring, the agreement listener sends it everything again.
  void MessagesLost(const std::string& peer);
  // For the Ping RPC: random per process start.
  uint64_t instance() const { return instance_; }

 private:
  struct Peer {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::Replica::Stub> stub;
    bool up = false;
    absl::Time last_answer;
    absl::Time failing_since;  // zero while answering
    uint64_t ring_id = 0;      // of the ring its last answer reported
    uint64_t instance = 0;     // its process, as its last answer reported it
    bool agrees = false;       // reset by a failed ping or a restart: it is sent all again
  };

  ReplicaSet(ReplicaSetOptions options, prometheus::Registry& registry);
  void Run();
  void Resolve(absl::Time now);
  // Pings every peer once (in parallel) and updates the ring.
  void PingAll(absl::Time now);
  Peer& PeerLocked(const std::string& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateRingLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The peers that came to agree with this replica's ring since the last call.
  std::vector<std::string> NewAgreementsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ReplicaSetOptions options_;
  const uint64_t instance_;
  prometheus::Gauge& peers_up_;
  prometheus::Gauge& peers_known_;
  prometheus::Counter& ring_changes_;
  RingListener ring_listener_;
  AgreementListener agreement_listener_;
  absl::Notification stop_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Peer> peers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> listed_ ABSL_GUARDED_BY(mu_);  // from the last resolve, sorted
  std::shared_ptr<const Ring> ring_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const Ring> announced_ ABSL_GUARDED_BY(mu_);  // the ring in effect
};

}  // namespace tcpscope::service
