// Ring-record handling shared by the eBPF and replay sources.
#include "agent/ring_records.h"

#include <utility>
#include <variant>

#include "agent/bpf_event_decoder.h"
#include "common/log.h"

namespace tcpscope::agent {

RingRecords::RingRecords(AgentMetrics* metrics, FinTimes* fin_times, KnownRole known_role,
                         KnownRoles* roles, std::unique_ptr<RingCaptureWriter> capture)
    : metrics_(metrics),
      fin_times_(fin_times),
      known_role_(std::move(known_role)),
      roles_(roles),
      capture_(std::move(capture)) {
  StartBatch();
}

void RingRecords::StartBatch() {
  // Blocks grow to 256 KiB: a full batch (kFlushEvents of ~400 bytes) takes a few.
  google::protobuf::ArenaOptions options;
  options.start_block_size = 16 << 10;
  options.max_block_size = 256 << 10;
  arena_ = std::make_unique<google::protobuf::Arena>(options);
  pending_ = google::protobuf::Arena::CreateMessage<v1::Batch>(arena_.get());
}

void RingRecords::Add(const void* data, size_t size, int64_t monotonic_to_unix_ns) {
  if (capture_ != nullptr && !capture_failed_) {
    if (absl::Status status = capture_->Append(data, size); !status.ok()) {
      TS_LOG(ERROR) << "ring capture stopped: " << status;  // the agent itself goes on
      capture_failed_ = true;
    }
  }
  // Decoded in place, as the batch's next event: taken back unless the record was one.
  google::protobuf::RepeatedPtrField<v1::Event>& events = *pending_->mutable_events();
  v1::Event* event = events.Add();
  absl::StatusOr<BpfRecord> record = DecodeBpfRecord(data, size, monotonic_to_unix_ns, event);
  const KernelEvent* decoded = record.ok() ? std::get_if<KernelEvent>(&*record) : nullptr;
  if (decoded == nullptr) events.RemoveLast();
  if (!record.ok()) {
    if (decode_errors_++ == 0) TS_LOG(ERROR) << "undecodable eBPF record: " << record.status();
    metrics_->events_dropped_agent.Increment();
    return;
  }
  if (auto* fin = std::get_if<FinSent>(&*record)) {
    fin_times_->Note(fin->connection_id, fin->time, fin->pid, fin->cgroup_id, fin->command);
  } else if (auto* reset = std::get_if<ResetAnswered>(&*record)) {
    abort_on_data_.ResetAnswered(reset->connection_id, &events);
  } else {
    if (roles_ != nullptr) roles_->Observe(*event);
    // The program knows the role of the ends it saw open; for older ones, the source may.
    if (event->role() == v1::ROLE_UNSPECIFIED && known_role_) {
      event->set_role(known_role_(event->connection_id()));
    }
    if (decoded->reset_maybe_sent) {
      abort_on_data_.Hold(*event, decoded->monotonic_ns);  // a copy off the arena: rare
      events.RemoveLast();
    }
  }
}

void RingRecords::Drained(uint64_t drain_started_ns) {
  if (!abort_on_data_.empty()) abort_on_data_.Release(drain_started_ns, pending_->mutable_events());
  if (capture_ != nullptr && !capture_failed_) {
    if (absl::Status status = capture_->Flush(); !status.ok()) {
      TS_LOG(ERROR) << "ring capture stopped: " << status;
      capture_failed_ = true;
    }
  }
}

void RingRecords::ReleaseHeld() { abort_on_data_.ReleaseAll(pending_->mutable_events()); }

}  // namespace tcpscope::agent
