// Loading, ring-buffer consumption and snapshots of the eBPF source.
#include "agent/ebpf_source.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/bpf_event_decoder.h"
#include "common/allocator.h"
#include "common/log.h"
#include "common/tcp_names.h"
#include "tcpscope.skel.h"

namespace tcpscope::agent {
namespace {

// Reading the ring: the kernel wakes the consumer by the first record written after it had read
// everything (adaptive notification), so an idle agent sleeps in poll() with no timer at all
// (the kernel's drop counters are read with every batch and every snapshot). Once woken it reads
// what is there, then lets records gather for kReadGap before reading again (one wakeup per gap
// under load, not one per record), and hands events to the shipper at most kFlushInterval after the
// previous batch, or at kFlushEvents. An event thus reaches the shipper at most kFlushInterval +
// kReadGap (60 ms) after the kernel wrote it; a lone event on a quiet host at once.
constexpr size_t kFlushEvents = 2048;
constexpr absl::Duration kFlushInterval = absl::Milliseconds(50);
constexpr absl::Duration kReadGap = absl::Milliseconds(10);
// A failing ring is re-opened after kRetryDelay, doubled each time; after kMaxFailures in a row
// the source gives up. A ring read for kHealthyAfter makes the next failure a new incident.
constexpr absl::Duration kRetryDelay = absl::Milliseconds(250);
constexpr int kMaxFailures = 6;
constexpr absl::Duration kHealthyAfter = absl::Seconds(60);

// Every CPU's value of one entry of a per-CPU array of u64; none when it cannot be read.
std::vector<uint64_t> PerCpuValues(const bpf_map* map, uint32_t key) {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return {};
  std::vector<uint64_t> values(static_cast<size_t>(cpus));
  if (bpf_map_lookup_elem(bpf_map__fd(map), &key, values.data()) != 0) return {};
  return values;
}

int TimeoutMs(absl::Duration wait) {
  return static_cast<int>(absl::ToInt64Milliseconds(
      std::clamp(absl::Ceil(wait, absl::Milliseconds(1)), absl::ZeroDuration(), absl::Hours(1))));
}

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
          std::move(capture)),
      forced_failures_left_(options.forced_ring_failures),
      attached_ns_(clock_->MonotonicNanos()),
      stop_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

EbpfSource::~EbpfSource() {
  tcpscope_bpf__destroy(skeleton_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

std::vector<std::string> EbpfSource::capabilities() const {
  std::vector<std::string> capabilities = KernelEventKindNames();
  capabilities.push_back("snapshot");
  capabilities.push_back("process");
  return capabilities;
}

void EbpfSource::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  const uint64_t one = 1;
  if (write(stop_fd_, &one, sizeof(one)) < 0) {
    TS_LOG(ERROR) << "cannot wake the ring consumer to stop: " << strerror(errno);
  }
}

uint64_t EbpfSource::KernelDrops(int index) const {
  uint64_t total = 0;
  for (uint64_t value : PerCpuValues(skeleton_->maps.drops, static_cast<uint32_t>(index))) {
    total += value;
  }
  return total;
}

SocketBirths EbpfSource::Births() const {
  SocketBirths births;
  // A connect() under way as the program attached may not have been noted: the attach counts
  // as a birth.
  births.last_birth_ns = attached_ns_;
  const std::vector<uint64_t> values = PerCpuValues(skeleton_->maps.births, 0);
  // Each CPU's time only grows, so their sum changes with every birth.
  for (uint64_t value : values) {
    births.generation += value;
    births.last_birth_ns = std::max(births.last_birth_ns, value);
  }
  births.walk_started_ns = clock_->MonotonicNanos();
  // Unreadable: no walk counts as settled, so none is skipped.
  if (values.empty()) births.last_birth_ns = births.walk_started_ns;
  return births;
}

v1::Role EbpfSource::SnapshotRole(uint64_t connection_id) {
  absl::MutexLock lock(&roles_mu_);
  auto it = roles_.find(connection_id);
  return it == roles_.end() ? v1::ROLE_UNSPECIFIED : it->second;
}

int EbpfSource::OnRecord(void* self, void* data, size_t size) {
  auto* source = static_cast<EbpfSource*>(self);
  source->records_.Add(data, size, source->monotonic_to_unix_ns_.load(std::memory_order_relaxed));
  // One read can hand over a whole ring (an 8 MiB ring holds over 100k records): batches stay
  // within kFlushEvents, well under what the service accepts in one.
  if (static_cast<size_t>(source->records_.pending().events_size()) >= kFlushEvents) {
    source->Flush(source->reading_for_);
  }
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
    records_.StartBatch();
  }
}

void EbpfSource::ReportKernelDrops(EventSink* sink) {
  absl::MutexLock lock(&drops_mu_);
  prometheus::Counter* by_cause[TCPSCOPE_DROP_COUNT] = {&metrics_->kernel_drops_ring_full,
                                                        &metrics_->kernel_drops_socket_map_full,
                                                        &metrics_->kernel_drops_fin_record};
  uint64_t total = 0;
  bool grew = false;
  for (int index = 0; index < TCPSCOPE_DROP_COUNT; ++index) {
    const uint64_t drops = std::max(KernelDrops(index), reported_drops_[index]);
    if (drops > reported_drops_[index]) {
      const double added = static_cast<double>(drops - reported_drops_[index]);
      by_cause[index]->Increment(added);
      metrics_->events_dropped_kernel.Increment(added);
      if (!grew && total == 0 && reported_drops_[index] == 0) {
        TS_LOG(WARNING) << "the kernel side is dropping records ("
                        << (index == TCPSCOPE_DROP_SOCK_MAP ? "the socket map is full: raise "
                                                              "--ebpf_max_tracked_sockets"
                                                            : "the ring buffer is full: raise "
                                                              "--ebpf_ring_buffer_kib")
                        << "); counted as stage=\"kernel\", first of its cause logged";
      }
      grew = true;
      reported_drops_[index] = drops;
    }
    total += reported_drops_[index];
  }
  if (grew) sink->SetKernelLosses(total);
}

void EbpfSource::SetHealth(EventSink* sink, bool healthy, const std::string& problem) {
  metrics_->source_healthy.Set(healthy ? 1 : 0);
  v1::SourceHealth health;
  health.set_state(healthy ? v1::SOURCE_STATE_HEALTHY : v1::SOURCE_STATE_EVENTS_FAILED);
  health.set_problem(problem);
  sink->SetSourceHealth(health);
}

absl::Status EbpfSource::ReadRing(EventSink* sink, bool* healthy, absl::Time* opened) {
  reading_for_ = sink;
  ring_buffer* ring =
      ring_buffer__new(bpf_map__fd(skeleton_->maps.events), &EbpfSource::OnRecord, this, nullptr);
  if (ring == nullptr) {
    return absl::UnavailableError(absl::StrCat("opening the eBPF ring buffer: ", strerror(errno)));
  }
  absl::Cleanup free_ring = [ring] { ring_buffer__free(ring); };
  if (forced_failures_left_ > 0) {
    --forced_failures_left_;
    return absl::UnavailableError(
        "eBPF ring buffer poll: Input/output error (forced by TCPSCOPE_TEST_RING_FAILURES)");
  }
  *opened = absl::Now();
  if (!*healthy) {
    // The records written meanwhile waited in the ring (those a full ring refused are counted).
    TS_LOG(WARNING) << "the eBPF ring buffer is read again: events flow";
    SetHealth(sink, true, "");
    *healthy = true;
  }
  pollfd ready[2] = {{ring_buffer__epoll_fd(ring), POLLIN, 0}, {stop_fd_, POLLIN, 0}};
  absl::Time last_flush = absl::InfinitePast();
  while (true) {
    const absl::Time before = absl::Now();
    absl::Duration wait = records_.pending().events().empty()
                              ? absl::InfiniteDuration()
                              : last_flush + kFlushInterval - before;
    // A held close waits for its answer only as long as it can take to come.
    if (records_.holding()) wait = std::min(wait, AbortOnDataCloses::kAnswerWithin);
    const int polled = poll(ready, 2, TimeoutMs(wait));
    if (polled < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("eBPF ring buffer poll: ", strerror(errno)));
    }
    const bool stopping = polled > 0 && (ready[1].revents & POLLIN) != 0;
    if (polled > 0 && (ready[0].revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
      return absl::UnavailableError("eBPF ring buffer poll: the ring's descriptor failed");
    }
    // Read at every wakeup: a held close is released only after a read that started late enough
    // to have seen its answer.
    const uint64_t drain_started_ns = clock_->MonotonicNanos();
    const int consumed = ring_buffer__consume(ring);
    if (consumed < 0) {
      return absl::UnavailableError(
          absl::StrCat("reading the eBPF ring buffer: ", strerror(-consumed)));
    }
    records_.Drained(drain_started_ns);
    if (stopping) records_.ReleaseHeld();
    const absl::Time now = absl::Now();
    const v1::Batch& pending = records_.pending();
    if (stopping || static_cast<size_t>(pending.events_size()) >= kFlushEvents ||
        (!pending.events().empty() && now - last_flush >= kFlushInterval)) {
      Flush(sink);
      last_flush = now;
      ReportKernelDrops(sink);
    }
    if (stopping) return absl::OkStatus();
    if (consumed > 0) {
      // Let records gather (still woken by Stop()), but not past the flush that is due.
      const absl::Duration gap = std::min(kReadGap, last_flush + kFlushInterval - now);
      if (gap > absl::ZeroDuration()) poll(&ready[1], 1, TimeoutMs(gap));
    }
  }
}

void EbpfSource::ConsumeRing(EventSink* sink) {
  bool healthy = true;
  int failures = 0;  // in a row
  while (true) {
    absl::Time opened = absl::InfiniteFuture();
    const absl::Status status = ReadRing(sink, &healthy, &opened);
    if (status.ok()) return;  // stopped
    metrics_->source_failures.Increment();
    if (absl::Now() - opened >= kHealthyAfter) failures = 0;
    ++failures;
    if (healthy) {  // once per incident; retries that fail again are only counted
      TS_LOG(ERROR) << status.message() << ": no events until it is read again (re-opening it; "
                    << "snapshots go on)";
      healthy = false;
    }
    SetHealth(sink, false, std::string(status.message()));
    if (failures >= kMaxFailures) {
      TS_LOG(ERROR) << "the eBPF ring buffer failed " << failures
                    << " times in a row; giving up: the agent exits";
      absl::MutexLock lock(&mu_);
      failure_ = absl::UnavailableError(absl::StrCat("the eBPF ring buffer failed ", failures,
                                                     " times in a row; last: ", status.message()));
      return;
    }
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), kRetryDelay * (1 << (failures - 1)))) {
      return;
    }
  }
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
      auto wake = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !failure_.ok(); };
      mu_.AwaitWithDeadline(absl::Condition(&wake), next);
      if (stopping_ || !failure_.ok()) break;
    }
    const absl::Time start = clock_->Now();
    next = start + options_.snapshot_interval;
    monotonic_to_unix_ns_.store(clock_->MonotonicToUnixNs(), std::memory_order_relaxed);
    // The program attached before the first dump, so nothing falls between them. The events a
    // dump diff would derive come exactly from the kernel instead; only the snapshot is used.
    SnapshotCollector::Result collected = snapshots_->Collect(start, Births());
    metrics_->dumps_skipped.Increment(static_cast<double>(collected.skipped_namespaces));
    metrics_->dump_duration.Observe(absl::ToDoubleSeconds(clock_->Now() - start));
    metrics_->dumps.Increment();
    if (collected.failed_namespaces > 0) {
      metrics_->dump_errors.Increment(static_cast<double>(collected.failed_namespaces));
    }
    // The dump knows a role only from a listener on the end's port; the program knew more.
    known_roles_.Apply(&collected.snapshot);
    // Built outside the lock the ring's reader takes at every flush: a dump of a busy host has
    // ~10^5 ends, and the reader must not wait for them while the ring fills.
    absl::flat_hash_map<uint64_t, v1::Role> roles;
    for (const v1::Connection& connection : collected.snapshot.connections()) {
      if (connection.role() != v1::ROLE_UNSPECIFIED) {
        roles[connection.connection_id()] = connection.role();
      }
    }
    auto owners = std::make_shared<const OwnersByCookie>(std::move(collected.owners));
    {
      absl::MutexLock lock(&roles_mu_);
      roles_.swap(roles);
      owners_.swap(owners);
    }
    // The previous map and owners go with `roles` and `owners`, outside the lock.
    metrics_->tracked_connections.Set(static_cast<double>(snapshots_->tracked()));
    for (int index : fin_times_.Apply(&collected.snapshot, start, 2 * options_.snapshot_interval)) {
      // An end named by the process that closed it: its workload too.
      FillWorkload(attribution_.workloads,
                   collected.snapshot.mutable_connections(index)->mutable_origin());
    }
    if (attribution_.owners != nullptr) attribution_.owners->ObserveSnapshot(collected.snapshot);
    // Drops with no event around them (a full socket map writes nothing to the ring) are read
    // here when the ring is quiet, and the snapshot's batch carries them.
    ReportKernelDrops(sink);
    const size_t ends = static_cast<size_t>(collected.snapshot.connections_size());
    v1::Batch batch;
    *batch.mutable_snapshot() = std::move(collected.snapshot);
    sink->Publish(std::move(batch));
    // What the snapshot and the events since used, unless the next snapshot needs it again.
    if (snapshot_memory_.ReleaseAfter(ends)) ReleaseFreeMemory();
  }
  consumer.join();
  absl::MutexLock lock(&mu_);
  return failure_;
}

}  // namespace tcpscope::agent
