// Bounded history and fan-out of applied events.
#include "service/event_log.h"

#include <algorithm>

namespace tcpscope::service {

void EventLog::Publish(std::shared_ptr<const PublishedBatch> batch) {
  const size_t events = static_cast<size_t>(batch->batch->events_size());
  if (events == 0) return;
  absl::MutexLock lock(&mu_);
  for (EventSubscriber* subscriber : subscribers_) subscriber->Offer(batch);
  history_.push_back(std::move(batch));
  history_events_ += events;
  // Evict whole batches while the rest still holds the capacity.
  while (!history_.empty()) {
    const size_t front = static_cast<size_t>(history_.front()->batch->events_size());
    if (history_events_ - front < capacity_) break;
    history_events_ -= front;
    history_.pop_front();
    evicted_ = true;
  }
}

EventLog::History EventLog::Subscribe(EventSubscriber* subscriber) {
  History history;
  absl::MutexLock lock(&mu_);
  history.batches.assign(history_.begin(), history_.end());
  history.evicted = evicted_;
  if (subscriber != nullptr) subscribers_.push_back(subscriber);
  return history;
}

void EventLog::Unsubscribe(EventSubscriber* subscriber) {
  absl::MutexLock lock(&mu_);
  subscribers_.erase(std::remove(subscribers_.begin(), subscribers_.end(), subscriber),
                     subscribers_.end());
}

EventLog::Stats EventLog::stats() const {
  absl::MutexLock lock(&mu_);
  Stats stats;
  stats.events = history_events_;
  if (!history_.empty()) {
    uint64_t oldest = UINT64_MAX;
    for (const v1::Event& event : history_.front()->batch->events()) {
      oldest = std::min<uint64_t>(oldest, event.time_unix_ns());
    }
    stats.oldest_unix_ns = oldest;
  }
  return stats;
}

}  // namespace tcpscope::service
