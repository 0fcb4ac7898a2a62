// The service's record of applied events: a bounded history (the newest events, whole batches,
// up to a capacity in events) and the live subscribers. Batches are shared, never copied: the
// history and every subscriber hold the same immutable batch.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "tcpscope/v1/ingest.pb.h"

namespace tcpscope::service {

// One applied batch's events, as published.
struct PublishedBatch {
  std::shared_ptr<const std::string> host;
  std::shared_ptr<const v1::Batch> batch;
};

class EventSubscriber {
 public:
  virtual ~EventSubscriber() = default;
  // Called for every batch published after the subscription; must not block.
  virtual void Offer(const std::shared_ptr<const PublishedBatch>& batch) = 0;
};

class EventLog {
 public:
  // Keeps at least the newest `capacity_events` events (fewer only before that many arrived).
  explicit EventLog(size_t capacity_events) : capacity_(capacity_events) {}

  void Publish(std::shared_ptr<const PublishedBatch> batch);

  struct History {
    std::vector<std::shared_ptr<const PublishedBatch>> batches;  // oldest first
    bool evicted = false;  // events were dropped from the history since the service started
  };
  // Returns the current history and (when `subscriber` is not null) subscribes it, both under
  // one lock: the subscriber is offered exactly the batches after the history returned.
  History Subscribe(EventSubscriber* subscriber);
  // After Unsubscribe returns, the subscriber is never offered anything again.
  void Unsubscribe(EventSubscriber* subscriber);

  struct Stats {
    uint64_t events = 0;
    uint64_t oldest_unix_ns = 0;  // time of the oldest event held, 0 when empty
  };
  Stats stats() const;

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<std::shared_ptr<const PublishedBatch>> history_ ABSL_GUARDED_BY(mu_);
  size_t history_events_ ABSL_GUARDED_BY(mu_) = 0;
  bool evicted_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<EventSubscriber*> subscribers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tcpscope::service
