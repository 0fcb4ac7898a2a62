// The service's record of applied events: a bounded history (the newest events, whole batches,
// up to a capacity in events) and the live subscribers. Live subscribers share the published
// batch; the history keeps each batch as its wire bytes (about 100 bytes an event, where the
// parsed batch on its ingest arena held ten times that) and parses them again for the rare
// call that reads it.
//
// Sharded by host, so that hosts publishing at once do not wait for each other: each shard has
// its own lock, history and copy of the subscriber list. A subscription takes every shard's lock
// at once (rare), so its history and its live batches still meet exactly. The capacity is for
// the whole log; a publisher evicts from its own shard, so a quiet shard keeps its older
// events a while longer.
#pragma once

#include <array>
#include <atomic>
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
  // Called for every batch published after the subscription, from the publisher's thread
  // (several at once); must not block.
  virtual void Offer(const std::shared_ptr<const PublishedBatch>& batch) = 0;
};

class EventLog {
 public:
  // Keeps at least the newest `capacity_events` events (fewer only before that many arrived).
  explicit EventLog(size_t capacity_events) : capacity_(capacity_events) {}

  void Publish(std::shared_ptr<const PublishedBatch> batch);

  struct History {
    std::vector<std::shared_ptr<const PublishedBatch>> batches;  // in publication order
    bool evicted = false;  // events were dropped from the history since the service started
  };
  // Returns the current history (unless `with_history` is false: then none) and (when
  // `subscriber` is not null) subscribes it, both under one lock: the subscriber is offered
  // exactly the batches after the history returned.
  History Subscribe(EventSubscriber* subscriber, bool with_history = true);
  // After Unsubscribe returns, the subscriber is never offered anything again.
  void Unsubscribe(EventSubscriber* subscriber);

  struct Stats {
    uint64_t events = 0;
    uint64_t oldest_unix_ns = 0;  // time of the oldest event held, 0 when empty
  };
  Stats stats() const;

 private:
  static constexpr size_t kShards = 16;
  struct Published {
    uint64_t seq;  // publication order across shards
    std::shared_ptr<const std::string> host;
    std::string wire;  // the v1::Batch, serialized
    uint32_t events = 0;
    uint64_t oldest_unix_ns = 0;
  };
  struct Shard {
    mutable absl::Mutex mu;
    std::deque<Published> history ABSL_GUARDED_BY(mu);
    std::vector<EventSubscriber*> subscribers ABSL_GUARDED_BY(mu);
  };

  const size_t capacity_;
  std::array<Shard, kShards> shards_;
  std::atomic<uint64_t> next_seq_{0};
  std::atomic<size_t> events_{0};  // held in every shard's history
  std::atomic<bool> evicted_{false};
};

}  // namespace tcpscope::service
