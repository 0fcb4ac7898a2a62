// Polling loop of the sock_diag source.
#include "agent/sock_diag_source.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "absl/time/clock.h"
#include "common/allocator.h"
#include "common/log.h"

namespace tcpscope::agent {
namespace {

// Without an eventfd, Stop() is noticed at the end of the current slice.
constexpr absl::Duration kStopSlice = absl::Milliseconds(100);

}  // namespace

SockDiagSource::SockDiagSource(std::unique_ptr<SockDiagDumper> dumper, absl::Duration interval,
                               AgentMetrics* metrics,
                               std::unique_ptr<SockDiagDestroyListener> destroy_listener,
                               Attribution attribution, const Clock* clock)
    : dumper_(std::move(dumper)),
      destroy_listener_(std::move(destroy_listener)),
      close_realtime_(destroy_listener_ != nullptr),
      attribution_(attribution),
      tracker_(dumper_->netns_inode(), attribution.workloads),
      interval_(interval),
      metrics_(metrics),
      clock_(clock),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (wake_fd_ < 0) {
    TS_LOG(WARNING) << "sock_diag source: eventfd failed (" << strerror(errno)
                    << "); stopping may take up to " << absl::FormatDuration(kStopSlice);
  }
}

SockDiagSource::~SockDiagSource() {
  if (wake_fd_ >= 0) close(wake_fd_);
}

std::vector<std::string> SockDiagSource::capabilities() const {
  std::vector<std::string> capabilities = {"snapshot", "handshake", "close", "keepalive_state"};
  if (close_realtime_) capabilities.push_back("close_realtime");
  if (attribution_.owners != nullptr) capabilities.push_back("process");
  return capabilities;
}

void SockDiagSource::Stop() {
  stopping_.store(true);
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    // Can only fail if the counter is about to overflow, which already means "wake up".
    (void)!write(wake_fd_, &one, sizeof(one));
  }
}

bool SockDiagSource::WaitUntil(absl::Time deadline, EventSink* sink) {
  while (!stopping_.load()) {
    const absl::Duration left = deadline - clock_->Now();
    if (left <= absl::ZeroDuration()) {
      // Closes already notified get their exact end state from the notification rather than
      // being found missing by the dump about to run.
      if (destroy_listener_ != nullptr) PublishDestroyed(sink);
      return true;
    }
    const absl::Duration slice = wake_fd_ >= 0 ? left : std::min(left, kStopSlice);
    // Rounded up so the loop does not spin through the last fraction of a millisecond.
    const int timeout_ms = static_cast<int>(std::min<double>(
        std::ceil(absl::ToDoubleMilliseconds(slice)), std::numeric_limits<int>::max()));
    pollfd fds[2];
    nfds_t count = 0;
    if (wake_fd_ >= 0) fds[count++] = {.fd = wake_fd_, .events = POLLIN, .revents = 0};
    const bool listening = destroy_listener_ != nullptr;
    if (listening) {
      fds[count++] = {.fd = destroy_listener_->fd(), .events = POLLIN, .revents = 0};
    }
    const int ready = poll(fds, count, timeout_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      // Never expected for valid descriptors; fall back to sleeping so the loop cannot spin.
      TS_LOG(WARNING) << "sock_diag source: poll failed: " << strerror(errno);
      absl::SleepFor(std::min(left, kStopSlice));
      continue;
    }
    // POLLERR is how an overrun (ENOBUFS) shows; ReadAvailable() counts it.
    if (listening && fds[count - 1].revents != 0) PublishDestroyed(sink);
  }
  return false;
}

void SockDiagSource::PublishDestroyed(EventSink* sink) {
  absl::StatusOr<std::vector<SocketRecord>> destroyed = destroy_listener_->ReadAvailable();
  if (const uint64_t overruns = destroy_listener_->overruns(); overruns > reported_overruns_) {
    // The lost notifications' closes are not lost: the next dump reports them, only later.
    metrics_->destroy_overruns.Increment(static_cast<double>(overruns - reported_overruns_));
    if (reported_overruns_ == 0 || overruns / 100 > reported_overruns_ / 100) {
      TS_LOG(WARNING) << "sock_diag: kernel dropped socket-destroy notifications (" << overruns
                      << " overruns so far); those closes are reported at the next dump";
    }
    reported_overruns_ = overruns;
  }
  if (!destroyed.ok()) {
    TS_LOG(WARNING) << "sock_diag: socket-destroy notifications stopped working: "
                    << destroyed.status() << "; closes are seen at the next dump from now on";
    destroy_listener_.reset();
    return;
  }
  // A destroy notification always says CLOSE. The side that closed first leaves a TIME_WAIT
  // (or orphaned FIN_WAIT2) socket under the same cookie: its state tells the initiator.
  for (SocketRecord& record : *destroyed) {
    if (!tracker_.IsOpen(record.cookie)) continue;
    absl::StatusOr<std::optional<SocketRecord>> successor = dumper_->Lookup(record);
    if (successor.ok() && successor->has_value() && (*successor)->cookie == record.cookie) {
      record.state = (*successor)->state;
    }
  }
  std::vector<v1::Event> events = tracker_.OnDestroyed(*destroyed, clock_->Now());
  metrics_->tracked_connections.Set(static_cast<double>(tracker_.tracked()));
  if (events.empty()) return;
  metrics_->events_generated.Increment(static_cast<double>(events.size()));
  v1::Batch batch;
  for (v1::Event& event : events) *batch.add_events() = std::move(event);
  sink->Publish(std::move(batch));
}

absl::Status SockDiagSource::Run(EventSink* sink) {
  TS_LOG(INFO) << "sock_diag source: dumping network namespace " << dumper_->netns_inode()
               << " every " << absl::FormatDuration(interval_)
               << (destroy_listener_ != nullptr ? ", closes reported as they happen" : "");
  absl::Time next = clock_->Now();
  int consecutive_errors = 0;
  while (true) {
    if (!WaitUntil(next, sink)) return absl::OkStatus();
    const absl::Time start = clock_->Now();
    next = start + interval_;
    absl::StatusOr<std::vector<SocketRecord>> dump = dumper_->Dump();
    metrics_->dump_duration.Observe(absl::ToDoubleSeconds(clock_->Now() - start));
    if (!dump.ok()) {
      metrics_->dump_errors.Increment();
      // Log the first failure and then every 60th, so a persistent fault does not flood.
      if (consecutive_errors++ % 60 == 0) {
        TS_LOG(WARNING) << "sock_diag dump failed (" << consecutive_errors
                        << " in a row): " << dump.status();
      }
      continue;
    }
    if (consecutive_errors > 0) {
      TS_LOG(INFO) << "sock_diag dumps work again after " << consecutive_errors << " failures";
      consecutive_errors = 0;
    }
    metrics_->dumps.Increment();
    // Owners are scanned (when a socket is new) after the dump, so every socket it holds can be
    // in the table.
    std::shared_ptr<const OwnerTable> owners;
    if (attribution_.owners != nullptr) owners = attribution_.owners->ForSnapshot({&*dump}, start);
    TrackerUpdate update = tracker_.Update(*dump, start, owners.get());
    if (attribution_.owners != nullptr) attribution_.owners->ObserveSnapshot(update.snapshot);
    metrics_->tracked_connections.Set(static_cast<double>(tracker_.tracked()));
    metrics_->events_generated.Increment(static_cast<double>(update.events.size()));
    const size_t ends = static_cast<size_t>(update.snapshot.connections_size());
    v1::Batch batch;
    for (v1::Event& event : update.events) *batch.add_events() = std::move(event);
    *batch.mutable_snapshot() = std::move(update.snapshot);
    sink->Publish(std::move(batch));
    // What the snapshot and the events since used, unless the next snapshot needs it again.
    if (snapshot_memory_.ReleaseAfter(ends)) ReleaseFreeMemory();
  }
}

}  // namespace tcpscope::agent
