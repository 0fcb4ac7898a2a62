// Ships the source's events to the service: numbers them into batches, keeps every batch until
// the service acknowledges it (bounded), and streams them over one gRPC callback stream that it
// reopens with capped, jittered exponential backoff when it breaks. After a reconnect it resends
// what the service has not applied, so nothing is lost or counted twice.
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
#include "grpcpp/grpcpp.h"
#include "tcpscope/v1/ingest.grpc.pb.h"

namespace tcpscope::agent {

struct ShipperOptions {
  std::string service_address;
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

  void Publish(v1::Batch batch) override;
  // Buffers the arena's message itself: no copy, and the arena lives until the batch is acked.
  void PublishOnArena(ArenaBatch batch) override;
  void SetKernelLosses(uint64_t cumulative) override;

  // Events dropped from the full buffer so far.
  uint64_t events_dropped() const;

 private:
  class StreamReactor;
  struct Buffered {
    uint64_t seq;
    size_t bytes;
    int events;
    // Immutable once buffered: a write in flight shares it instead of copying it.
    std::shared_ptr<const v1::AgentMessage> message;
  };

  // Numbers `message` (a batch), buffers it and starts its write if the stream is idle. Its
  // memory is counted as what `arena` (if it is on one) allocated, else as its encoded size.
  void Buffer(std::shared_ptr<v1::AgentMessage> message, const google::protobuf::Arena* arena);
  void RunConnections();
  // Called by the stream.
  uint64_t OnHelloAck(uint64_t last_applied_seq);
  void OnAck(uint64_t seq);
  std::shared_ptr<const v1::AgentMessage> NextToSend(uint64_t min_seq);

  const ShipperOptions options_;
  AgentMetrics* const metrics_;
  std::thread thread_;

  mutable absl::Mutex buffer_mu_;
  std::deque<Buffered> buffer_ ABSL_GUARDED_BY(buffer_mu_);
  size_t buffered_bytes_ ABSL_GUARDED_BY(buffer_mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(buffer_mu_) = 1;
  v1::LossCounters losses_ ABSL_GUARDED_BY(buffer_mu_);

  // Order: active_mu_ before a reactor's mutex before buffer_mu_.
  absl::Mutex active_mu_;
  StreamReactor* active_ ABSL_GUARDED_BY(active_mu_) = nullptr;
  bool stopping_ ABSL_GUARDED_BY(active_mu_) = false;
};

}  // namespace tcpscope::agent
