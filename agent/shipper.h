// Ships the source's events to the service: numbers them into batches, keeps every batch until
// the service acknowledges it (bounded), and streams them over one gRPC stream (async API) that it
// reopens with capped, jittered exponential backoff when it breaks. After a reconnect it resends
// what the service has not applied, so nothing is lost or counted twice. With several replicas
// it streams to its home (agent/replica_homing.h): it moves to the next replica of its ranking
// when the home is unreachable past a grace, resending what is unacknowledged (the new replica
// has applied nothing), and back, after the acks of what was sent, when a better-ranked one is
// reachable again.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/agent_metrics.h"
#include "agent/event_source.h"
#include "agent/replica_homing.h"
#include "common/replica_addresses.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "tcpscope/v1/ingest.grpc.pb.h"

namespace tcpscope::agent {

struct ShipperOptions {
  // The service's replicas (one address: a single service).
  ReplicaAddresses service;
  // How long the home may be unreachable before the agent moves to another replica; also how
  // often, away from its first-ranked replica, it checks whether a better one is reachable.
  absl::Duration failover_after = absl::Seconds(5);
  // How often a dns:/// list is looked up again (and whenever the home is unreachable).
  absl::Duration resolve_interval = absl::Seconds(30);
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Added to the log when a connection fails before the service greets the agent: what to check
  // about TLS, which gRPC's "Socket closed" does not say.
  std::string connect_hint;
  v1::Hello hello;
  size_t max_buffered_batches = 4096;
  size_t max_buffered_bytes = 64 << 20;
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(10);
};

class Shipper : public EventSink {
 public:
  Shipper(ShipperOptions options, AgentMetrics* metrics);
  ~Shipper() override;

  // Starts the connection thread.
  void Start();
  // Waits up to `timeout` for the service to acknowledge everything buffered.
  bool Drain(absl::Duration timeout);
  // Closes the stream and joins the thread.
  void Stop();

  void Publish(v1::Batch&& batch) override;
  void SetKernelLosses(uint64_t cumulative) override;
  void SetSourceHealth(const v1::SourceHealth& health) override;

  // Events dropped from the full buffer so far.
  uint64_t events_dropped() const;

 private:
  class StreamAttempt;
  // A channel to one replica and its stub.
  struct Connection {
    std::string replica;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<grpc::GenericStub> stub;
  };
  struct Buffered {
    uint64_t seq;
    int events;
    // The AgentMessage, serialized once; immutable once buffered: a write in flight shares its
    // slices instead of copying them.
    grpc::ByteBuffer wire;
  };
  struct Outgoing {
    uint64_t seq;
    grpc::ByteBuffer wire;
  };

  // Buffers the batch (stamped with its seq, losses and the source's health) and wakes the
  // stream.
  void Enqueue(v1::Batch&& batch);
  void RunConnections();
  // Waits for the stream to end, meanwhile moving home when a better-ranked replica is
  // reachable (the stream is half-closed once its writes are acknowledged) and giving up on an
  // attempt at an unreachable home once the grace is over. Returns the connection to move to
  // (planned moves), or nullopt.
  std::optional<Connection> Supervise(StreamAttempt* attempt, absl::Time unreachable_since);
  Connection Connect(const std::string& replica) const;
  // A connection to `replica` that is up within a short probe timeout, or nullopt (`why` says
  // what was seen).
  std::optional<Connection> Probe(const std::string& replica, std::string* why);
  // The first reachable replica of the ranking other than the home; nullopt when none is.
  std::optional<Connection> FirstReachableOther();
  // Looks a dns:/// list up again when it is time (or `now_anyway`); logs a failure.
  void MaybeResolve(bool now_anyway);
  bool stopping();
  // Called by the stream.
  uint64_t OnHelloAck(const std::string& replica, uint64_t last_applied_seq);
  void OnAck(uint64_t seq);
  std::optional<Outgoing> NextToSend(uint64_t min_seq);

  const ShipperOptions options_;
  const grpc::ByteBuffer hello_wire_;  // the Hello, serialized once for every attempt
  AgentMetrics* const metrics_;
  std::thread thread_;
  // The connection thread's.
  ReplicaHoming homing_;
  absl::Time next_resolve_ = absl::InfinitePast();

  mutable absl::Mutex buffer_mu_;
  std::deque<Buffered> buffer_ ABSL_GUARDED_BY(buffer_mu_);
  size_t buffered_bytes_ ABSL_GUARDED_BY(buffer_mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(buffer_mu_) = 1;
  v1::LossCounters losses_ ABSL_GUARDED_BY(buffer_mu_);
  v1::SourceHealth source_health_ ABSL_GUARDED_BY(buffer_mu_);

  // Order: active_mu_ before an attempt's mutex before buffer_mu_.
  absl::Mutex active_mu_;
  StreamAttempt* active_ ABSL_GUARDED_BY(active_mu_) = nullptr;
  bool stopping_ ABSL_GUARDED_BY(active_mu_) = false;
};

}  // namespace tcpscope::agent
