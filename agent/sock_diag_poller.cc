// Polling loop of the sock_diag source.
#include "agent/sock_diag_poller.h"

#include "absl/time/clock.h"
#include "common/log.h"

namespace tcpscope::agent {

SockDiagPoller::SockDiagPoller(std::unique_ptr<SockDiagDumper> dumper, absl::Duration interval,
                               AgentMetrics* metrics)
    : dumper_(std::move(dumper)),
      tracker_(dumper_->netns_inode()),
      interval_(interval),
      metrics_(metrics) {}

std::vector<std::string> SockDiagPoller::capabilities() const {
  return {"snapshot", "handshake", "close", "keepalive_state"};
}

void SockDiagPoller::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

absl::Status SockDiagPoller::Run(EventSink* sink) {
  TS_LOG(INFO) << "sock_diag source: dumping network namespace " << dumper_->netns_inode()
               << " every " << absl::FormatDuration(interval_);
  absl::Time next = absl::Now();
  int consecutive_errors = 0;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
      mu_.AwaitWithDeadline(absl::Condition(&wake), next);
      if (stopping_) return absl::OkStatus();
    }
    const absl::Time start = absl::Now();
    next = start + interval_;
    absl::StatusOr<std::vector<SocketRecord>> dump = dumper_->Dump();
    metrics_->dump_duration.Observe(absl::ToDoubleSeconds(absl::Now() - start));
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
    TrackerUpdate update = tracker_.Update(*dump, start);
    metrics_->tracked_connections.Set(static_cast<double>(tracker_.tracked()));
    metrics_->events_generated.Increment(static_cast<double>(update.events.size()));
    sink->Publish(std::move(update.events), std::move(update.snapshot));
  }
}

}  // namespace tcpscope::agent
