// Loading, ring-buffer consumption and snapshots of the eBPF source.
#include "agent/ebpf_source.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
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
// A flushed batch of kFlushEvents takes about 1 MiB of arena: a few blocks, growing to this.
constexpr size_t kArenaStartBlockBytes = 64 << 10;
constexpr size_t kArenaMaxBlockBytes = 512 << 10;
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
  return std::unique_ptr<EbpfSource>(
      new EbpfSource(options, skeleton, std::move(snapshots), metrics, attribution));
}

EbpfSource::EbpfSource(const EbpfOptions& options, tcpscope_bpf* skeleton,
                       std::unique_ptr<SnapshotCollector> snapshots, AgentMetrics* metrics,
                       Attribution attribution)
    : options_(options),
      skeleton_(skeleton),
      snapshots_(std::move(snapshots)),
      metrics_(metrics),
      attribution_(attribution),
      monotonic_to_unix_ns_(MonotonicToUnixOffsetNs()) {
  StartBatch();
}

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

v1::Role EbpfSource::GuessRole(const v1::Event& event) {
  {
    absl::MutexLock lock(&roles_mu_);
    if (auto it = roles_.find(event.connection_id()); it != roles_.end()) return it->second;
  }
  // Not in the start-up dump either: an ephemeral local port facing a well-known one is the
  // connecting side.
  const uint32_t local = event.endpoints().local_port();
  const uint32_t remote = event.endpoints().remote_port();
  return local >= 32768 && remote < 32768 ? v1::ROLE_CLIENT : v1::ROLE_SERVER;
}

int EbpfSource::OnRecord(void* self, void* data, size_t size) {
  auto* source = static_cast<EbpfSource*>(self);
  if (size >= sizeof(tcpscope_event) &&
      static_cast<const tcpscope_event*>(data)->kind == TCPSCOPE_EVENT_FIN_SENT) {
    const auto* raw = static_cast<const tcpscope_event*>(data);
    source->fin_times_.Note(
        raw->cookie,
        absl::FromUnixNanos(static_cast<int64_t>(raw->time_ns) +
                            source->monotonic_to_unix_ns_.load(std::memory_order_relaxed)),
        raw->pid, raw->cgroup_id, raw->pid != 0 ? CommandOf(raw->comm) : std::string());
    return 0;
  }
  v1::Event* event = source->pending_batch_->add_events();
  const absl::Status status = DecodeBpfEvent(
      data, size, source->monotonic_to_unix_ns_.load(std::memory_order_relaxed), event);
  if (!status.ok()) {
    source->pending_batch_->mutable_events()->RemoveLast();
    if (source->decode_errors_++ == 0) TS_LOG(ERROR) << "undecodable eBPF record: " << status;
    source->metrics_->events_dropped_agent.Increment();
    return 0;
  }
  if (event->role() == v1::ROLE_UNSPECIFIED) event->set_role(source->GuessRole(*event));
  return 0;
}

void EbpfSource::StartBatch() {
  google::protobuf::ArenaOptions options;
  options.start_block_size = kArenaStartBlockBytes;
  options.max_block_size = kArenaMaxBlockBytes;
  pending_.arena = std::make_unique<google::protobuf::Arena>(options);
  pending_.message = google::protobuf::Arena::CreateMessage<v1::AgentMessage>(pending_.arena.get());
  pending_batch_ = pending_.message->mutable_batch();
}

void EbpfSource::Flush(EventSink* sink) {
  if (pending_batch_->events_size() > 0) {
    if (attribution_.owners != nullptr || attribution_.workloads != nullptr) {
      std::shared_ptr<const OwnersByCookie> owners;
      {
        absl::MutexLock lock(&roles_mu_);
        owners = owners_;
      }
      AttributeEvents(pending_batch_->mutable_events(), owners.get(), attribution_, absl::Now());
    }
    metrics_->events_generated.Increment(static_cast<double>(pending_batch_->events_size()));
    sink->PublishOnArena(std::move(pending_));
    StartBatch();
  }
}

void EbpfSource::ConsumeRing(EventSink* sink) {
  ring_buffer* ring =
      ring_buffer__new(bpf_map__fd(skeleton_->maps.events), &EbpfSource::OnRecord, this, nullptr);
  if (ring == nullptr) {
    TS_LOG(ERROR) << "cannot read the eBPF ring buffer: " << strerror(errno);
    return;
  }
  absl::Time last_flush = absl::Now();
  uint64_t reported_drops = 0;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    int polled = ring_buffer__poll(ring, kPollTimeoutMs);
    if (polled >= 0) polled = ring_buffer__consume(ring);  // what arrived without a wakeup
    if (polled < 0 && polled != -EINTR) {
      TS_LOG(ERROR) << "eBPF ring buffer poll failed: " << strerror(-polled);
      break;
    }
    const absl::Time now = absl::Now();
    if (static_cast<size_t>(pending_batch_->events_size()) >= kFlushEvents ||
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
  absl::Time next = absl::Now();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
      mu_.AwaitWithDeadline(absl::Condition(&wake), next);
      if (stopping_) break;
    }
    const absl::Time start = absl::Now();
    next = start + options_.snapshot_interval;
    monotonic_to_unix_ns_.store(MonotonicToUnixOffsetNs(), std::memory_order_relaxed);
    // The program attached before the first dump, so nothing falls between them. The events a
    // dump diff would derive come exactly from the kernel instead; only the snapshot is used.
    SnapshotCollector::Result collected = snapshots_->Collect(start);
    metrics_->dump_duration.Observe(absl::ToDoubleSeconds(absl::Now() - start));
    metrics_->dumps.Increment();
    if (collected.failed_namespaces > 0) {
      metrics_->dump_errors.Increment(static_cast<double>(collected.failed_namespaces));
    }
    {
      absl::MutexLock lock(&roles_mu_);
      roles_.clear();
      for (const v1::Connection& connection : collected.snapshot.connections()) {
        roles_[connection.connection_id()] = connection.role();
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
