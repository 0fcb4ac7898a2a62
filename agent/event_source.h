// The one interface between where events come from (eBPF, sock_diag, a replay) and the rest of
// the agent, so the same pipeline runs on live kernel events or a test feed.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "google/protobuf/arena.h"
#include "tcpscope/v1/events.pb.h"
#include "tcpscope/v1/ingest.pb.h"

namespace tcpscope::agent {

// A message built on an arena of its own, handed over with its arena: a source that decodes
// thousands of events per batch then allocates a few blocks per batch instead of several objects
// per event, and frees them at once.
struct ArenaBatch {
  std::unique_ptr<google::protobuf::Arena> arena;
  v1::AgentMessage* message = nullptr;  // on `arena`; message->batch() holds the events
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Takes the events (and snapshot, if any) a source produced, as one batch whose seq and
  // losses the sink fills in. Called from the source's threads.
  virtual void Publish(v1::Batch batch) = 0;
  // The same for a batch on its own arena, which the sink keeps as long as it needs the batch.
  // By default copied into Publish(v1::Batch).
  virtual void PublishOnArena(ArenaBatch batch) { Publish(v1::Batch(batch.message->batch())); }
  // Events the kernel side lost so far (cumulative), to report as stage="kernel".
  virtual void SetKernelLosses(uint64_t cumulative) {}
};

class EventSource {
 public:
  virtual ~EventSource() = default;
  virtual v1::SourceKind kind() const = 0;
  // What the source can observe, sent in the hello ("handshake", "close", "snapshot", ...).
  virtual std::vector<std::string> capabilities() const = 0;
  // Produces into `sink` until Stop() is called; an error means the source broke.
  virtual absl::Status Run(EventSink* sink) = 0;
  // Thread-safe; makes Run() return soon.
  virtual void Stop() = 0;
};

}  // namespace tcpscope::agent
