// Loading, ring-buffer consumption and snapshots of the eBPF source.
#include "agent/ebpf_source.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/bpf/tcpscope_event.h"
#include "agent/bpf_event_decoder.h"
#include "common/log.h"
#include "common/tcp_names.h"
#include "tcpscope.skel.h"

namespace tcpscope::agent {
namespace {

constexpr size_t kFlushEvents = 2048;
constexpr absl::Duration kFlushInterval = absl::Milliseconds(50);
// The kernel side wakes the consumer only when a lot is waiting (see wakeup_bytes), so the
// consumer drains on this period: it bounds the delay of a quiet host's events.
constexpr int kPollTimeoutMs = 25;

// libbpf's warnings and errors go to our log; its debug chatter does not.
int LibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char text[1024];
  vsnprintf(text, sizeof(text), format, args);
  size_t length = strlen(text);
  while (length > 0 && text[length - 1] == '\n') text[--length] = '\0';
  if (level == LIBBPF_WARN) {
    TS_LOG(WARNING) << "libbpf: " << text;
  } else {
    TS_LOG(INFO) << "libbpf: " << text;
  }
  return 0;
}

absl::Status CheckSupport() {
  if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
    return absl::FailedPreconditionError(
        "the kernel exposes no BTF (/sys/kernel/btf/vmlinux): CO-RE programs cannot load");
  }
  const int ringbuf = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr);
  if (ringbuf == -EPERM) {
    return absl::PermissionDeniedError(
        "not permitted to load eBPF programs (needs root, or CAP_BPF with CAP_PERFMON)");
  }
  if (ringbuf <= 0) {
    return absl::FailedPreconditionError("the kernel has no BPF ring buffer (older than 5.8)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<EbpfSource>> EbpfSource::Open(
    const EbpfOptions& options, std::unique_ptr<SnapshotCollector> snapshots, AgentMetrics* metrics,
    Attribution attribution) {
  libbpf_set_print(LibbpfPrint);
  if (absl::Status status = CheckSupport(); !status.ok()) return status;

  tcpscope_bpf* skeleton = tcpscope_bpf__open();
  if (skeleton == nullptr) {
    return absl::InternalError(absl::StrCat("opening the eBPF object: ", strerror(errno)));
  }
  skeleton->rodata->target_netns = options.netns_inode;
  skeleton->rodata->wakeup_bytes = options.ring_buffer_bytes / 16;
  bpf_map__set_max_entries(skeleton->maps.events, options.ring_buffer_bytes);
  bpf_map__set_max_entries(skeleton->maps.socks, options.max_tracked_sockets);
  if (int error = tcpscope_bpf__load(skeleton); error != 0) {
    tcpscope_bpf__destroy(skeleton);
    return absl::FailedPreconditionError(
        absl::StrCat("loading the eBPF program failed: ", strerror(-error),
                     " (the libbpf messages above say which check failed)"));
  }
  if (int error = tcpscope_bpf__attach(skeleton); error != 0) {
    tcpscope_bpf__destroy(skeleton);
    return absl::FailedPreconditionError(
        absl::StrCat("attaching to the TCP tracepoints failed (tp_btf, kernel 5.5 or newer): ",
                     strerror(-error)));
  }
  std::unique_ptr<RingCaptureWriter> capture;
  if (!options.ring_capture_path.empty()) {
    absl::StatusOr<std::unique_ptr<RingCaptureWriter>> writer =
        RingCaptureWriter::Create(options.ring_capture_path, options.clock->MonotonicToUnixNs());
    if (!writer.ok()) {
      tcpscope_bpf__destroy(skeleton);
      return writer.status();
    }
    capture = std::move(*writer);
  }
  return std::unique_ptr<EbpfSource>(new EbpfSource(options, skeleton, std::move(snapshots),
                                                    metrics, attribution, std::move(capture)));
}

EbpfSource::EbpfSource(const EbpfOptions& options, tcpscope_bpf* skeleton,
                       std::unique_ptr<SnapshotCollector> snapshots, AgentMetrics* metrics,
                       Attribution attribution, std::unique_ptr<RingCaptureWriter> capture)
    : options_(options),
      clock_(options.clock),
      skeleton_(skeleton),
      snapshots_(std::move(snapshots)),
      metrics_(metrics),
      attribution_(attribution),
      monotonic_to_unix_ns_(clock_->MonotonicToUnixNs()),
      records_(
          metrics, &fin_times_, [this](uint64_t id) { return SnapshotRole(id); }, &known_roles_,
          std::move(capture)) {}

EbpfSource::~EbpfSource() { tcpscope_bpf__destroy(skeleton_); }

std::vector<std::string> EbpfSource::capabilities() const {
  // The kinds the program emits, by their proto names.
  std::vector<std::string> capabilities;
#define TCPSCOPE_CAPABILITY(name, number) \
  capabilities.emplace_back(EventKindName(static_cast<v1::EventKind>(TCPSCOPE_EVENT_##name)));
  TCPSCOPE_EVENT_KINDS(TCPSCOPE_CAPABILITY)
#undef TCPSCOPE_CAPABILITY
  capabilities.push_back("snapshot");
  capabilities.push_back("process");
  return capabilities;
}

void EbpfSource::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

uint64_t EbpfSource::KernelDrops(int index) const {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return 0;
  std::vector<uint64_t> values(static_cast<size_t>(cpus));
  uint32_t key = static_cast<uint32_t>(index);
  if (bpf_map_lookup_elem(bpf_map__fd(skeleton_->maps.drops), &key, values.data()) != 0) return 0;
  uint64_t total = 0;
  for (uint64_t value : values) total += value;
  return total;
}

v1::Role EbpfSource::SnapshotRole(uint64_t connection_id) {
  absl::MutexLock lock(&roles_mu_);
  auto it = roles_.find(connection_id);
  return it == roles_.end() ? v1::ROLE_UNSPECIFIED : it->second;
}

int EbpfSource::OnRecord(void* self, void* data, size_t size) {
  auto* source = static_cast<EbpfSource*>(self);
  source->records_.Add(data, size, source->monotonic_to_unix_ns_.load(std::memory_order_relaxed));
  return 0;
}

void EbpfSource::Flush(EventSink* sink) {
  v1::Batch& pending = records_.pending();
  if (pending.events_size() > 0) {
    if (attribution_.owners != nullptr || attribution_.workloads != nullptr) {
      std::shared_ptr<const OwnersByCookie> owners;
      {
        absl::MutexLock lock(&roles_mu_);
        owners = owners_;
      }
      AttributeEvents(pending.mutable_events(), owners.get(), attribution_, clock_->Now());
    }
    metrics_->events_generated.Increment(static_cast<double>(pending.events_size()));
    sink->Publish(std::move(pending));
    pending.Clear();
  }
}

void EbpfSource::ConsumeRing(EventSink* sink) {
  ring_buffer* ring =
      ring_buffer__new(bpf_map__fd(skeleton_->maps.events), &EbpfSource::OnRecord, this, nullptr);
  if (ring == nullptr) {
    TS_LOG(ERROR) << "cannot read the eBPF ring buffer: " << strerror(errno);
    return;
  }
  absl::Time last_flush = clock_->Now();
  uint64_t reported_drops = 0;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    int polled = ring_buffer__poll(ring, kPollTimeoutMs);
    const uint64_t drain_started_ns = clock_->MonotonicNanos();
    if (polled >= 0) polled = ring_buffer__consume(ring);  // what arrived without a wakeup
    records_.Drained(drain_started_ns);
    if (polled < 0 && polled != -EINTR) {
      TS_LOG(ERROR) << "eBPF ring buffer poll failed: " << strerror(-polled);
      break;
    }
    const absl::Time now = clock_->Now();
    if (static_cast<size_t>(records_.pending().events_size()) >= kFlushEvents ||
        now - last_flush >= kFlushInterval) {
      Flush(sink);
      last_flush = now;
      const uint64_t drops = KernelDrops(TCPSCOPE_DROP_RINGBUF);
      if (drops > reported_drops) {
        metrics_->events_dropped_kernel.Increment(static_cast<double>(drops - reported_drops));
        if (reported_drops == 0) {
          TS_LOG(WARNING) << "the eBPF ring buffer overflowed: events lost (counted as "
                             "stage=\"kernel\")";
        }
        reported_drops = drops;
        sink->SetKernelLosses(drops);
      }
    }
  }
  ring_buffer__consume(ring);  // what the kernel wrote before the stop
  records_.ReleaseHeld();
  Flush(sink);
  ring_buffer__free(ring);
}

absl::Status EbpfSource::Run(EventSink* sink) {
  TS_LOG(INFO) << "eBPF source: attached to TCP tracepoints, watching "
               << (options_.netns_inode == 0
                       ? std::string("every network namespace")
                       : absl::StrCat("network namespace ", options_.netns_inode))
               << "; snapshots every " << absl::FormatDuration(options_.snapshot_interval);
  std::thread consumer([this, sink] { ConsumeRing(sink); });
  absl::Time next = clock_->Now();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
      mu_.AwaitWithDeadline(absl::Condition(&wake), next);
      if (stopping_) break;
    }
    const absl::Time start = clock_->Now();
    next = start + options_.snapshot_interval;
    monotonic_to_unix_ns_.store(clock_->MonotonicToUnixNs(), std::memory_order_relaxed);
    // The program attached before the first dump, so nothing falls between them. The events a
    // dump diff would derive come exactly from the kernel instead; only the snapshot is used.
    SnapshotCollector::Result collected = snapshots_->Collect(start);
    metrics_->dump_duration.Observe(absl::ToDoubleSeconds(clock_->Now() - start));
    metrics_->dumps.Increment();
    if (collected.failed_namespaces > 0) {
      metrics_->dump_errors.Increment(static_cast<double>(collected.failed_namespaces));
    }
    // The dump knows a role only from a listener on the end's port; the program knew more.
    known_roles_.Apply(&collected.snapshot);
    {
      absl::MutexLock lock(&roles_mu_);
      roles_.clear();
      for (const v1::Connection& connection : collected.snapshot.connections()) {
        if (connection.role() != v1::ROLE_UNSPECIFIED) {
          roles_[connection.connection_id()] = connection.role();
        }
      }
      owners_ = std::make_shared<const OwnersByCookie>(std::move(collected.owners));
    }
    metrics_->tracked_connections.Set(static_cast<double>(snapshots_->tracked()));
    for (int index : fin_times_.Apply(&collected.snapshot, start, 2 * options_.snapshot_interval)) {
      // An end named by the process that closed it: its workload too.
      FillWorkload(attribution_.workloads,
                   collected.snapshot.mutable_connections(index)->mutable_origin());
    }
    if (attribution_.owners != nullptr) attribution_.owners->ObserveSnapshot(collected.snapshot);
    v1::Batch batch;
    *batch.mutable_snapshot() = std::move(collected.snapshot);
    sink->Publish(std::move(batch));
  }
  consumer.join();
  return absl::OkStatus();
}

}  // namespace tcpscope::agent
