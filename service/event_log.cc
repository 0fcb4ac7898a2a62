// Bounded history and fan-out of applied events.
#include "service/event_log.h"

#include <algorithm>
#include <functional>

namespace tcpscope::service {

void EventLog::Publish(std::shared_ptr<const PublishedBatch> batch) {
  const size_t events = static_cast<size_t>(batch->batch->events_size());
  if (events == 0) return;
  // Serialized before taking the lock: the history's copy, compact and off the ingest arena.
  Published stored;
  stored.host = batch->host;
  stored.wire = batch->batch->SerializeAsString();
  stored.events = static_cast<uint32_t>(events);
  stored.oldest_unix_ns = UINT64_MAX;
  for (const v1::Event& event : batch->batch->events()) {
    stored.oldest_unix_ns = std::min<uint64_t>(stored.oldest_unix_ns, event.time_unix_ns());
  }
  Shard& shard = shards_[std::hash<std::string>()(*batch->host) % kShards];
  absl::MutexLock lock(&shard.mu);
  for (EventSubscriber* subscriber : shard.subscribers) subscriber->Offer(batch);
  stored.seq = next_seq_.fetch_add(1);
  shard.history.push_back(std::move(stored));
  size_t held = events_.fetch_add(events) + events;
  // Evict whole batches while the rest still holds the capacity.
  while (!shard.history.empty()) {
    const size_t front = shard.history.front().events;
    if (held - front < capacity_) break;
    held = events_.fetch_sub(front) - front;
    shard.history.pop_front();
    evicted_ = true;
  }
}

EventLog::History EventLog::Subscribe(EventSubscriber* subscriber, bool with_history) {
  std::vector<Published> merged;
  // Every shard locked at once (in order), so no batch is both in the history and offered.
  for (Shard& shard : shards_) shard.mu.Lock();
  for (Shard& shard : shards_) {
    if (with_history) merged.insert(merged.end(), shard.history.begin(), shard.history.end());
    if (subscriber != nullptr) shard.subscribers.push_back(subscriber);
  }
  History history;
  history.evicted = evicted_.load();
  for (auto it = shards_.rbegin(); it != shards_.rend(); ++it) it->mu.Unlock();
  std::sort(merged.begin(), merged.end(),
            [](const Published& a, const Published& b) { return a.seq < b.seq; });
  history.batches.reserve(merged.size());
  for (Published& published : merged) {
    auto batch = std::make_shared<v1::Batch>();
    // Bytes this process serialized: they parse.
    batch->ParseFromString(published.wire);
    auto parsed = std::make_shared<PublishedBatch>();
    parsed->host = std::move(published.host);
    parsed->batch = std::move(batch);
    history.batches.push_back(std::move(parsed));
  }
  return history;
}

void EventLog::Unsubscribe(EventSubscriber* subscriber) {
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    shard.subscribers.erase(
        std::remove(shard.subscribers.begin(), shard.subscribers.end(), subscriber),
        shard.subscribers.end());
  }
}

EventLog::Stats EventLog::stats() const {
  Stats stats;
  stats.events = events_.load();
  uint64_t oldest = UINT64_MAX;
  for (const Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    if (shard.history.empty()) continue;
    oldest = std::min(oldest, shard.history.front().oldest_unix_ns);
  }
  if (oldest != UINT64_MAX) stats.oldest_unix_ns = oldest;
  return stats;
}

}  // namespace tcpscope::service
