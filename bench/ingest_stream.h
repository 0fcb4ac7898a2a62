// One simulated agent's Ingest/Stream for load generators (tcpscope-ingest-load,
// tcpscope-fleet-sim), speaking the agent's protocol (agent/shipper.cc): Hello, wait for
// HelloAck, then batches numbered 1, 2, 3... with one write in flight; acks are cumulative.
//
// Batches are sent as prebuilt serialized bodies (a Batch without its seq): a write is a few
// header bytes carrying the seq followed by the body's bytes, not copied. Two sources, queued
// batches first: batches queued by the caller (Enqueue), each sent once, in order; and, while
// filling, a fixed set of filler bodies sent in turn with at most `window` batches
// unacknowledged (as fast as the service acknowledges them).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::bench {

// Events by kind, indexed by v1::EventKind (index 0 unused).
using KindCounts = std::array<uint64_t, v1::EventKind_ARRAYSIZE>;

// The kind of an event, as the Observer API names it.
v1::EventKind KindOf(const v1::Event& event);

// One batch to send: its serialized body without seq, and what it carries.
struct OutBatch {
  std::shared_ptr<const std::string> body;
  uint64_t events = 0;
  KindCounts kinds{};
  bool snapshot = false;
};

// Counts the events of a serialized body (a Batch without seq) into `batch`; false if it does
// not parse.
bool CountBody(OutBatch& batch);

// AgentMessage{batch: Batch{seq, <body>}}: the header is built per write, the body is shared.
grpc::ByteBuffer BatchMessage(uint64_t seq, std::shared_ptr<const std::string> body);

struct StreamTotals {
  uint64_t batches_written = 0;
  uint64_t events_written = 0;
  uint64_t acked_seq = 0;
  uint64_t batches_acked = 0;
  uint64_t events_acked = 0;
  uint64_t filler_events_acked = 0;
  KindCounts kinds_acked{};
  uint64_t queued_batches = 0;  // enqueued, not yet written
  uint64_t queued_bytes = 0;
  absl::Time last_ack;
};

class IngestStream : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  struct Options {
    uint64_t window = 8;  // filler batches unacknowledged at most
    // With filler: stop after this many batches in all (0: no limit).
    uint64_t max_batches = 0;
    const std::vector<OutBatch>* filler = nullptr;  // outlives the stream
  };

  IngestStream(grpc::GenericStub* stub, const v1::Hello& hello, Options options);

  bool greeted();
  bool done();
  // The RPC's status, or INTERNAL for a protocol error of the service.
  grpc::Status status();
  StreamTotals totals();
  // Everything written is acknowledged and nothing is queued, or the stream is over.
  bool drained();
  // With max_batches: all of them are acknowledged.
  bool quota_acked();

  // Queues a batch, sent after the ones queued before it (once greeted).
  void Enqueue(OutBatch batch);
  // Filler batches flow from now on / no more.
  void StartFilling();
  void StopFilling();
  // Half-closes the stream (the service then finishes it) and lets the RPC end.
  void Close();
  // Once done(): the batches the service never acknowledged (written or still queued), in
  // order, for the stream of another replica to carry as the agent's shipper would (filler
  // batches are load, not data: left out).
  std::vector<OutBatch> TakeUndelivered();

  void OnWriteDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  struct Sent {
    uint64_t seq;
    bool filler;
    OutBatch batch;
  };
  void MaybeWrite();

  const Options options_;
  grpc::ClientContext context_;
  grpc::ByteBuffer in_;

  absl::Mutex mu_;
  grpc::ByteBuffer out_;  // written under mu_ before the one write in flight starts
  std::deque<OutBatch> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<Sent> unacked_ ABSL_GUARDED_BY(mu_);
  StreamTotals totals_ ABSL_GUARDED_BY(mu_);
  uint64_t filler_next_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t filler_unacked_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t in_flight_events_ ABSL_GUARDED_BY(mu_) = 0;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool hello_written_ ABSL_GUARDED_BY(mu_) = false;
  bool greeted_ ABSL_GUARDED_BY(mu_) = false;
  bool filling_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  std::string protocol_error_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// CPU seconds (user + system) of this process.
double SelfCpuSeconds();

// Polls `condition` every `step` until it holds or `deadline` passes.
template <typename Condition>
bool WaitUntil(absl::Time deadline, Condition condition,
               absl::Duration step = absl::Milliseconds(1)) {
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(step);
  }
  return true;
}

// `text` as a JSON string literal (control characters become spaces).
std::string JsonString(absl::string_view text);

}  // namespace tcpscope::bench
