// Playing a ring capture.
#include "agent/replay_source.h"

#include <cstring>

#include "agent/bpf_event_decoder.h"
#include "agent/clock.h"
#include "agent/fin_times.h"
#include "agent/ring_records.h"
#include "common/log.h"

namespace tcpscope::agent {
namespace {

constexpr int kBatchEvents = 2048;  // as the eBPF source's flushes

void Publish(RingRecords& records, AgentMetrics* metrics, EventSink* sink) {
  v1::Batch& pending = records.pending();
  if (pending.events_size() == 0) return;
  metrics->events_generated.Increment(static_cast<double>(pending.events_size()));
  sink->Publish(std::move(pending));
  records.StartBatch();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ReplaySource>> ReplaySource::Open(const std::string& path,
                                                                 AgentMetrics* metrics) {
  absl::StatusOr<std::unique_ptr<RingCaptureReader>> reader = RingCaptureReader::Open(path);
  if (!reader.ok()) return reader.status();
  metrics->SetSource("replay");
  return std::unique_ptr<ReplaySource>(new ReplaySource(std::move(*reader), path, metrics));
}

std::vector<std::string> ReplaySource::capabilities() const {
  // What the recording eBPF source emitted, without its snapshots.
  std::vector<std::string> capabilities = KernelEventKindNames();
  capabilities.push_back("process");
  return capabilities;
}

void ReplaySource::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

absl::Status ReplaySource::Run(EventSink* sink) {
  // The records' clock, moved by each record's time: the held-close window elapses as it did.
  ManualClock clock(reader_->monotonic_to_unix_ns());
  FinTimes fin_times;  // noted as live, though no snapshot uses them
  RingRecords records(metrics_, &fin_times, /*known_role=*/{});
  absl::Status status;
  uint64_t played = 0;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    absl::StatusOr<std::optional<std::string>> record = reader_->Next();
    if (!record.ok()) {
      status = record.status();
      break;
    }
    if (!record->has_value()) break;
    const std::string& bytes = **record;
    uint64_t time_ns = 0;  // every record starts with its time (tcpscope_event.time_ns)
    if (bytes.size() >= sizeof(time_ns)) std::memcpy(&time_ns, bytes.data(), sizeof(time_ns));
    clock.AdvanceTo(time_ns);
    // Everything recorded before this record has been seen, as after a live drain.
    records.Drained(clock.MonotonicNanos());
    records.Add(bytes.data(), bytes.size(), reader_->monotonic_to_unix_ns());
    ++played;
    if (records.pending().events_size() >= kBatchEvents) Publish(records, metrics_, sink);
  }
  records.ReleaseHeld();
  Publish(records, metrics_, sink);
  TS_LOG(INFO) << "replayed " << played << " ring records from " << path_;
  if (!status.ok()) return status;
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&stopping_));
  return absl::OkStatus();
}

}  // namespace tcpscope::agent
