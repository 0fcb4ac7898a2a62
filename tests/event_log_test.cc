// The event history keeps the newest events in whole batches and hands subscribers exactly the
// batches after the history they were given.
#include "service/event_log.h"

#include <vector>

#include "gtest/gtest.h"

namespace tcpscope::service {
namespace {

std::shared_ptr<const PublishedBatch> BatchOf(uint64_t seq, int events) {
  auto batch = std::make_shared<v1::Batch>();
  batch->set_seq(seq);
  for (int i = 0; i < events; ++i) {
    batch->add_events()->set_time_unix_ns(seq * 1000 + static_cast<uint64_t>(i));
  }
  auto published = std::make_shared<PublishedBatch>();
  published->host = std::make_shared<const std::string>("a");
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

}  // namespace
}  // namespace tcpscope::service
