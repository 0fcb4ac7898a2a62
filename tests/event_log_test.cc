// The event history keeps the newest events in whole batches and hands subscribers exactly the
// batches after the history they were given.
#include "service/event_log.h"

#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace tcpscope::service {
namespace {

std::shared_ptr<const PublishedBatch> BatchOf(uint64_t seq, int events,
                                              const std::string& host = "a") {
  auto batch = std::make_shared<v1::Batch>();
  batch->set_seq(seq);
  for (int i = 0; i < events; ++i) {
    batch->add_events()->set_time_unix_ns(seq * 1000 + static_cast<uint64_t>(i));
  }
  auto published = std::make_shared<PublishedBatch>();
  published->host = std::make_shared<const std::string>(host);
  published->batch = std::move(batch);
  return published;
}

std::vector<uint64_t> Seqs(const EventLog::History& history) {
  std::vector<uint64_t> seqs;
  for (const auto& batch : history.batches) seqs.push_back(batch->batch->seq());
  return seqs;
}

class Recorder : public EventSubscriber {
 public:
  void Offer(const std::shared_ptr<const PublishedBatch>& batch) override {
    seqs.push_back(batch->batch->seq());
  }
  std::vector<uint64_t> seqs;
};

TEST(EventLogTest, KeepsTheNewestEventsInWholeBatches) {
  EventLog log(10);
  log.Publish(BatchOf(1, 4));
  log.Publish(BatchOf(2, 4));
  EventLog::History history = log.Subscribe(nullptr);
  EXPECT_EQ(Seqs(history), (std::vector<uint64_t>{1, 2}));
  EXPECT_FALSE(history.evicted);
  // 12 events: dropping batch 1 would leave 8, under the capacity of 10, so it stays.
  log.Publish(BatchOf(3, 4));
  EXPECT_EQ(Seqs(log.Subscribe(nullptr)), (std::vector<uint64_t>{1, 2, 3}));
  log.Publish(BatchOf(4, 4));
  history = log.Subscribe(nullptr);
  EXPECT_EQ(Seqs(history), (std::vector<uint64_t>{2, 3, 4}));
  EXPECT_TRUE(history.evicted);
  EXPECT_EQ(log.stats().events, 12u);
  EXPECT_EQ(log.stats().oldest_unix_ns, 2000u);
  log.Publish(BatchOf(5, 0));  // empty batches are not history
  EXPECT_EQ(log.stats().events, 12u);
}

TEST(EventLogTest, SubscribersGetExactlyWhatFollowsTheirHistory) {
  EventLog log(100);
  log.Publish(BatchOf(1, 1));
  Recorder recorder;
  const EventLog::History history = log.Subscribe(&recorder);
  EXPECT_EQ(Seqs(history), (std::vector<uint64_t>{1}));
  log.Publish(BatchOf(2, 1));
  log.Publish(BatchOf(3, 1));
  log.Unsubscribe(&recorder);
  log.Publish(BatchOf(4, 1));
  EXPECT_EQ(recorder.seqs, (std::vector<uint64_t>{2, 3}));
}

// Hosts publish at once (each host's shard its own lock) while a watcher subscribes midway:
// every batch is either in its history or offered to it, never both, never neither.
TEST(EventLogTest, ConcurrentPublishersAndASubscriberMeetExactly) {
  constexpr int kHosts = 8;
  constexpr uint64_t kBatches = 2000;
  EventLog log(kHosts * kBatches);
  class Collector : public EventSubscriber {
   public:
    void Offer(const std::shared_ptr<const PublishedBatch>& batch) override {
      absl::MutexLock lock(&mu);
      seen.push_back(*batch->host + "/" + std::to_string(batch->batch->seq()));
    }
    absl::Mutex mu;
    std::vector<std::string> seen;
  } collector;
  std::vector<std::thread> publishers;
  for (int h = 0; h < kHosts; ++h) {
    publishers.emplace_back([&log, h] {
      for (uint64_t seq = 1; seq <= kBatches; ++seq) {
        log.Publish(BatchOf(seq, 1, "host-" + std::to_string(h)));
      }
    });
  }
  std::this_thread::yield();
  const EventLog::History history = log.Subscribe(&collector);
  for (auto& publisher : publishers) publisher.join();
  log.Unsubscribe(&collector);
  std::multiset<std::string> all;
  for (const auto& batch : history.batches) {
    all.insert(*batch->host + "/" + std::to_string(batch->batch->seq()));
  }
  {
    absl::MutexLock lock(&collector.mu);
    all.insert(collector.seen.begin(), collector.seen.end());
  }
  EXPECT_EQ(all.size(), kHosts * kBatches);
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), kHosts * kBatches);
  EXPECT_EQ(log.stats().events, kHosts * kBatches);
  EXPECT_FALSE(history.evicted);
}

}  // namespace
}  // namespace tcpscope::service
