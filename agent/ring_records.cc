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
      capture_(std::move(capture)) {}

void RingRecords::Add(const void* data, size_t size, int64_t monotonic_to_unix_ns) {
  if (capture_ != nullptr && !capture_failed_) {
    if (absl::Status status = capture_->Append(data, size); !status.ok()) {
      TS_LOG(ERROR) << "ring capture stopped: " << status;  // the agent itself goes on
      capture_failed_ = true;
    }
  }
  absl::StatusOr<BpfRecord> record = DecodeBpfRecord(data, size, monotonic_to_unix_ns);
  if (!record.ok()) {
    if (decode_errors_++ == 0) TS_LOG(ERROR) << "undecodable eBPF record: " << record.status();
    metrics_->events_dropped_agent.Increment();
    return;
  }
  if (auto* fin = std::get_if<FinSent>(&*record)) {
    fin_times_->Note(fin->connection_id, fin->time, fin->pid, fin->cgroup_id,
                     std::move(fin->command));
  } else if (auto* reset = std::get_if<ResetAnswered>(&*record)) {
    abort_on_data_.ResetAnswered(reset->connection_id, pending_.mutable_events());
  } else {
    KernelEvent& decoded = std::get<KernelEvent>(*record);
    if (roles_ != nullptr) roles_->Observe(decoded.event);
    // The program knows the role of the ends it saw open; for older ones, the source may.
    if (decoded.event.role() == v1::ROLE_UNSPECIFIED && known_role_) {
      decoded.event.set_role(known_role_(decoded.event.connection_id()));
    }
    if (decoded.reset_maybe_sent) {
      abort_on_data_.Hold(std::move(decoded.event), decoded.monotonic_ns);
    } else {
      pending_.add_events()->Swap(&decoded.event);
    }
  }
}

void RingRecords::Drained(uint64_t drain_started_ns) {
  if (!abort_on_data_.empty()) abort_on_data_.Release(drain_started_ns, pending_.mutable_events());
  if (capture_ != nullptr && !capture_failed_) {
    if (absl::Status status = capture_->Flush(); !status.ok()) {
      TS_LOG(ERROR) << "ring capture stopped: " << status;
      capture_failed_ = true;
    }
  }
}

void RingRecords::ReleaseHeld() { abort_on_data_.ReleaseAll(pending_.mutable_events()); }

}  // namespace tcpscope::agent
