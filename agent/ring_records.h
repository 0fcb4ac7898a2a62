// What the agent does with the eBPF ring buffer's records, whoever reads them (the live ring or
// a replayed capture): decodes each into the next batch, notes FIN times, holds the closes the
// kernel may have reset itself until it says (agent/abort_on_data.h), fills in roles the
// program did not see, and records the raw records when asked. One consumer thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "agent/abort_on_data.h"
#include "agent/agent_metrics.h"
#include "agent/fin_times.h"
#include "agent/known_roles.h"
#include "agent/ring_capture.h"
#include "google/protobuf/arena.h"
#include "tcpscope/v1/ingest.pb.h"

namespace tcpscope::agent {

class RingRecords {
 public:
  // The role a source knows for an end the program did not see open (ROLE_UNSPECIFIED: none).
  using KnownRole = std::function<v1::Role(uint64_t connection_id)>;

  // `fin_times` receives the FIN facts; `known_role` may be empty; `roles` (may be null) learns
  // the roles of the ends the program saw open; `capture` (may be null) records every raw record.
  RingRecords(AgentMetrics* metrics, FinTimes* fin_times, KnownRole known_role,
              KnownRoles* roles = nullptr, std::unique_ptr<RingCaptureWriter> capture = nullptr);

  // One record as the ring hands it; `monotonic_to_unix_ns` dates it (Clock::MonotonicToUnixNs,
  // or the recording's for a replay).
  void Add(const void* data, size_t size, int64_t monotonic_to_unix_ns);
  // After a drain of every record committed at `drain_started_ns` (CLOCK_MONOTONIC, the
  // records' clock): releases the held closes whose answer would have been among them.
  void Drained(uint64_t drain_started_ns);
  // At the end: releases every held close as it is.
  void ReleaseHeld();

  // Whether closes are held for their answer (the reader must read again within
  // AbortOnDataCloses::kAnswerWithin to release them).
  bool holding() const { return !abort_on_data_.empty(); }

  // The events decoded so far, for the source to attribute and publish. They live on an arena of
  // their own, so a publisher must not move them into a message elsewhere (that would copy);
  // the shipper serializes them where they are (EventSink::Publish).
  v1::Batch& pending() { return *pending_; }
  // After the pending batch was published: frees it, and everything on its arena, at once.
  void StartBatch();

 private:
  AgentMetrics* const metrics_;
  FinTimes* const fin_times_;
  const KnownRole known_role_;
  KnownRoles* const roles_;
  const std::unique_ptr<RingCaptureWriter> capture_;
  // Each batch, its events and all they hold on one arena: decoding an event allocates no heap
  // memory of its own, and a published batch is freed in a few blocks, not event by event.
  std::unique_ptr<google::protobuf::Arena> arena_;
  v1::Batch* pending_;  // on arena_
  AbortOnDataCloses abort_on_data_;
  uint64_t decode_errors_ = 0;
  bool capture_failed_ = false;
};

}  // namespace tcpscope::agent
