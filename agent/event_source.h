// The one interface between where events come from (eBPF, sock_diag, a replay) and the rest of
// the agent, so the same pipeline runs on live kernel events or a test feed.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tcpscope/v1/events.pb.h"
#include "tcpscope/v1/ingest.pb.h"

namespace tcpscope::agent {

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Takes the events (and snapshot, if any) a source produced, as one batch whose seq and
  // losses the sink fills in; the batch is the sink's to change until it returns. Called from
  // the source's threads. By reference: a batch on an arena (the eBPF source's) is used where it
  // is, since moving it into a message elsewhere would copy it.
  virtual void Publish(v1::Batch&& batch) = 0;
  // Events the kernel side lost so far (cumulative), to report as stage="kernel".
  virtual void SetKernelLosses(uint64_t cumulative) {}
  // The source's health from now on (healthy until told otherwise), to report at once and with
  // every later batch.
  virtual void SetSourceHealth(const v1::SourceHealth& health) {}
};

class EventSource {
 public:
  virtual ~EventSource() = default;
  virtual v1::SourceKind kind() const = 0;
  // What the source can observe, sent in the hello ("handshake", "close", "snapshot", ...).
  virtual std::vector<std::string> capabilities() const = 0;
  // Produces into `sink` until Stop() is called; an error means the source broke (and ended on
  // its own, without Stop()).
  virtual absl::Status Run(EventSink* sink) = 0;
  // Thread-safe; makes Run() return soon.
  virtual void Stop() = 0;
};

}  // namespace tcpscope::agent
