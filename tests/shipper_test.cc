// The shipper's resend and drop logic against an in-process Ingest service on port 0 whose
// answers the test controls: what the service has applied decides what is resent after a
// broken stream, nothing applied is sent twice, and a full buffer drops the oldest batches and
// counts their events in the losses of the batches that follow. With two replicas: the agent
// homes on its first-ranked one, fails over when it goes, and returns when it is back, each
// batch applied once.
#include "agent/shipper.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/rendezvous.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace tcpscope::agent {
namespace {

constexpr absl::Duration kWait = absl::Seconds(10);

struct Received {
  uint64_t seq;
  int events;
  uint64_t agent_losses;
  int stream;  // 1: the first stream
  v1::Batch batch;
};

// Greets each stream with what it has applied, then applies each newer batch and acks it, as
// the service does, unless told otherwise.
class FakeIngest final : public v1::Ingest::Service {
 public:
  grpc::Status Stream(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ServiceMessage, v1::AgentMessage>* stream) override {
    v1::AgentMessage in;
    if (!stream->Read(&in) || !in.has_hello()) return {grpc::INVALID_ARGUMENT, "no hello"};
    v1::ServiceMessage greeting;
    int stream_number;
    {
      absl::MutexLock lock(&mu_);
      auto may_greet = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return greet_; };
      if (!mu_.AwaitWithTimeout(absl::Condition(&may_greet), kWait)) {
        return {grpc::DEADLINE_EXCEEDED, "never greeted"};
      }
      stream_number = ++streams_;
      greeting.mutable_hello_ack()->set_last_applied_seq(applied_);
    }
    stream->Write(greeting);
    while (stream->Read(&in)) {
      v1::ServiceMessage ack;
      {
        absl::MutexLock lock(&mu_);
        const v1::Batch& batch = in.batch();
        received_.push_back(
            {batch.seq(), batch.events_size(), batch.losses().agent(), stream_number, batch});
        if (cut_at_seq_ == batch.seq()) {
          cut_at_seq_ = 0;
          return {grpc::UNAVAILABLE, "cut by the test"};
        }
        if (batch.seq() > applied_) applied_ = batch.seq();  // a gap is batches the agent dropped
        if (!send_acks_) continue;
        ack.mutable_ack()->set_seq(applied_);
      }
      stream->Write(ack);
    }
    return grpc::Status::OK;
  }

  void set_greet(bool greet) {
    absl::MutexLock lock(&mu_);
    greet_ = greet;
  }
  // The stream that receives batch `seq` breaks before applying it.
  void CutAt(uint64_t seq) {
    absl::MutexLock lock(&mu_);
    cut_at_seq_ = seq;
  }
  void set_send_acks(bool send) {
    absl::MutexLock lock(&mu_);
    send_acks_ = send;
  }
  std::vector<Received> AwaitReceived(size_t count) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return received_.size() >= count; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), kWait);
    return received_;
  }
  std::vector<Received> received() {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  uint64_t applied() {
    absl::MutexLock lock(&mu_);
    return applied_;
  }

 private:
  absl::Mutex mu_;
  bool greet_ ABSL_GUARDED_BY(mu_) = true;
  bool send_acks_ ABSL_GUARDED_BY(mu_) = true;
  uint64_t cut_at_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Received> received_ ABSL_GUARDED_BY(mu_);
};

v1::Batch BatchOf(int events) {
  v1::Batch batch;
  for (int i = 0; i < events; ++i) batch.add_events()->mutable_handshake();
  return batch;
}

std::vector<uint64_t> Seqs(const std::vector<Received>& received) {
  std::vector<uint64_t> seqs;
  for (const Received& r : received) seqs.push_back(r.seq);
  return seqs;
}

class ShipperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&ingest_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    options_.service = *ReplicaAddresses::Parse("--service", absl::StrCat("127.0.0.1:", port));
    options_.credentials = grpc::InsecureChannelCredentials();
    options_.hello.set_host_name("test-host");
    options_.hello.set_instance_id(7);
    options_.initial_backoff = absl::Milliseconds(10);
    options_.max_backoff = absl::Milliseconds(50);
  }

  void TearDown() override {
    if (shipper_ != nullptr) shipper_->Stop();
    server_->Shutdown(std::chrono::system_clock::now());
  }

  void StartShipper() {
    shipper_ = std::make_unique<Shipper>(options_, &metrics_);
    shipper_->Start();
  }

  FakeIngest ingest_;
  std::unique_ptr<grpc::Server> server_;
  ShipperOptions options_;
  AgentMetrics metrics_{"test-host"};
  std::unique_ptr<Shipper> shipper_;
};

TEST_F(ShipperTest, BrokenStreamResendsWhatTheServiceHasNotApplied) {
  ingest_.set_greet(false);  // everything is buffered before the first stream opens
  ingest_.CutAt(2);
  StartShipper();
  for (int i = 0; i < 3; ++i) shipper_->Publish(BatchOf(1));
  ingest_.set_greet(true);
  ASSERT_TRUE(shipper_->Drain(kWait));
  const std::vector<Received> received = ingest_.received();
  // 1 applied; 2 cut the first stream; the second stream greets with 1 and gets 2 and 3 once.
  EXPECT_EQ(Seqs(received), (std::vector<uint64_t>{1, 2, 2, 3}));
  EXPECT_EQ(received[1].stream, 1);
  EXPECT_EQ(received[2].stream, 2);
  EXPECT_EQ(ingest_.applied(), 3u);
  EXPECT_EQ(shipper_->events_dropped(), 0u);
  EXPECT_EQ(metrics_.stream_failures.Value(), 1);
}

TEST_F(ShipperTest, BatchesAppliedWithoutAnAckAreNotSentTwice) {
  ingest_.set_send_acks(false);  // applied, but the acks are lost with the stream
  ingest_.CutAt(3);
  StartShipper();
  shipper_->Publish(BatchOf(1));
  shipper_->Publish(BatchOf(1));
  ASSERT_EQ(ingest_.AwaitReceived(2).size(), 2u);
  EXPECT_FALSE(shipper_->Drain(absl::Milliseconds(100)));  // kept: never acknowledged
  ingest_.set_send_acks(true);
  shipper_->Publish(BatchOf(1));  // cuts the stream
  ASSERT_TRUE(shipper_->Drain(kWait));
  // The second stream's greeting says 2 were applied: only 3 is sent again.
  EXPECT_EQ(Seqs(ingest_.received()), (std::vector<uint64_t>{1, 2, 3, 3}));
  EXPECT_EQ(ingest_.applied(), 3u);
}

TEST_F(ShipperTest, FullBufferDropsTheOldestAndCountsTheirEvents) {
  options_.max_buffered_batches = 2;
  ingest_.set_greet(false);
  StartShipper();
  for (int i = 0; i < 5; ++i) shipper_->Publish(BatchOf(3));
  // 1, 2 and 3 were dropped as 3, 4 and 5 came: 9 events lost.
  EXPECT_EQ(shipper_->events_dropped(), 9u);
  EXPECT_EQ(metrics_.events_dropped_agent.Value(), 9);
  ingest_.set_greet(true);
  ASSERT_TRUE(shipper_->Drain(kWait));
  const std::vector<Received> received = ingest_.received();
  ASSERT_EQ(Seqs(received), (std::vector<uint64_t>{4, 5}));
  // Each batch carries the losses as of its publication (cumulative): batch 4 after 1 was
  // dropped, batch 5 after 2.
  EXPECT_EQ(received[0].agent_losses, 3u);
  EXPECT_EQ(received[1].agent_losses, 6u);
  EXPECT_EQ(received[0].events + received[1].events, 6);
}

TEST_F(ShipperTest, EmptyBatchesAreNotSent) {
  StartShipper();
  shipper_->Publish(v1::Batch());
  shipper_->Publish(BatchOf(2));
  ASSERT_TRUE(shipper_->Drain(kWait));
  EXPECT_EQ(Seqs(ingest_.received()), (std::vector<uint64_t>{1}));
}

// The batch is written before the shipper's lock and its stamp (seq, losses, health) after it,
// as a second part of the same message: the service must read one Batch with all of them.
TEST_F(ShipperTest, EachBatchArrivesWholeWithItsStamp) {
  StartShipper();
  v1::Batch batch = BatchOf(2);
  batch.set_seq(99);                         // the shipper's numbering wins
  batch.mutable_losses()->set_kernel(1234);  // so do its loss counters
  batch.mutable_snapshot()->set_listeners(3);
  shipper_->SetKernelLosses(5);
  v1::SourceHealth failed;
  failed.set_state(v1::SOURCE_STATE_EVENTS_FAILED);
  failed.set_problem("eBPF ring buffer poll: EIO");
  shipper_->SetSourceHealth(failed);  // sent on its own, as an empty batch
  shipper_->Publish(v1::Batch(batch));
  ASSERT_TRUE(shipper_->Drain(kWait));
  const std::vector<Received> received = ingest_.received();
  ASSERT_EQ(received.size(), 2u);
  v1::Batch health_only;
  health_only.set_seq(1);
  health_only.mutable_losses()->set_kernel(5);
  *health_only.mutable_source_health() = failed;
  EXPECT_EQ(received[0].batch.SerializeAsString(), health_only.SerializeAsString());
  v1::Batch expected = batch;
  expected.set_seq(2);
  expected.mutable_losses()->set_kernel(5);
  *expected.mutable_source_health() = failed;
  EXPECT_EQ(received[1].batch.SerializeAsString(), expected.SerializeAsString());
}

// gRPC's channel retries a refused connection on its own schedule (1 s, then 1.6x longer each
// time); a service that starts after the agent must be reached within the agent's backoff.
TEST_F(ShipperTest, ReachesAServiceThatStartsLateWithinItsOwnBackoff) {
  const std::string address = options_.service.spec();
  server_->Shutdown(std::chrono::system_clock::now());
  options_.initial_backoff = absl::Milliseconds(200);  // the agent's
  options_.max_backoff = absl::Seconds(1);
  StartShipper();
  shipper_->Publish(BatchOf(1));
  // Long enough for several refused connections: gRPC's next try is seconds away by now.
  absl::SleepFor(absl::Seconds(6));
  EXPECT_EQ(metrics_.batches_acked.Value(), 0);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&ingest_);
  server_ = builder.BuildAndStart();
  ASSERT_NE(port, 0) << address << " taken meanwhile";
  const absl::Time listening = absl::Now();
  // The backoff is a second at most: two cover it and the connection.
  ASSERT_TRUE(shipper_->Drain(absl::Seconds(2)));
  EXPECT_LT(absl::Now() - listening, absl::Seconds(2));
  EXPECT_EQ(Seqs(ingest_.received()), (std::vector<uint64_t>{1}));
}

// Two replicas, A and B, as in-process services: A ranks first for the test's host name.
class ShipperHomingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = Serve(&ingest_a_, "127.0.0.1:0", &port_a_);
    b_ = Serve(&ingest_b_, "127.0.0.1:0", &port_b_);
    replica_a_ = absl::StrCat("127.0.0.1:", port_a_);
    replica_b_ = absl::StrCat("127.0.0.1:", port_b_);
    for (int i = 0; host_.empty(); ++i) {
      const std::string host = absl::StrCat("host-", i);
      if (RendezvousRanking(host, {replica_a_, replica_b_}).front() == replica_a_) host_ = host;
    }
    options_.service =
        *ReplicaAddresses::Parse("--service", absl::StrCat(replica_b_, ",", replica_a_));
    options_.failover_after = absl::Milliseconds(300);
    options_.credentials = grpc::InsecureChannelCredentials();
    options_.hello.set_host_name(host_);
    options_.hello.set_instance_id(7);
    options_.initial_backoff = absl::Milliseconds(10);
    options_.max_backoff = absl::Milliseconds(50);
    metrics_ = std::make_unique<AgentMetrics>(host_);
  }

  void TearDown() override {
    if (shipper_ != nullptr) shipper_->Stop();
    for (auto* server : {&a_, &b_}) {
      if (*server != nullptr) (*server)->Shutdown(std::chrono::system_clock::now());
    }
  }

  static std::unique_ptr<grpc::Server> Serve(FakeIngest* ingest, const std::string& address,
                                             int* port) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(address, grpc::InsecureServerCredentials(), port);
    builder.RegisterService(ingest);
    return builder.BuildAndStart();
  }

  void StartShipper() {
    shipper_ = std::make_unique<Shipper>(options_, metrics_.get());
    shipper_->Start();
  }

  // Waits (bounded) until the counter reaches `value`.
  static bool AwaitCount(prometheus::Counter& counter, double value) {
    const absl::Time deadline = absl::Now() + kWait;
    while (counter.Value() < value && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    return counter.Value() == value;
  }

  FakeIngest ingest_a_, ingest_b_;
  std::unique_ptr<grpc::Server> a_, b_;
  int port_a_ = 0, port_b_ = 0;
  std::string replica_a_, replica_b_;
  std::string host_;
  ShipperOptions options_;
  std::unique_ptr<AgentMetrics> metrics_;
  std::unique_ptr<Shipper> shipper_;
};

TEST_F(ShipperHomingTest, FailsOverWhenItsReplicaGoesAndReturnsWhenItIsBack) {
  StartShipper();
  shipper_->Publish(BatchOf(1));
  ASSERT_TRUE(shipper_->Drain(kWait));
  EXPECT_EQ(Seqs(ingest_a_.received()), (std::vector<uint64_t>{1}));

  a_->Shutdown(std::chrono::system_clock::now());
  a_.reset();
  shipper_->Publish(BatchOf(1));
  ASSERT_TRUE(shipper_->Drain(kWait));
  // Batch 1 was acknowledged by A: only 2 goes to B.
  EXPECT_EQ(Seqs(ingest_b_.received()), (std::vector<uint64_t>{2}));
  EXPECT_EQ(metrics_->home_changes_failover.Value(), 1);

  FakeIngest back;
  int port = 0;
  a_ = Serve(&back, replica_a_, &port);
  ASSERT_EQ(port, port_a_);
  ASSERT_TRUE(AwaitCount(metrics_->home_changes_return, 1));
  shipper_->Publish(BatchOf(1));
  ASSERT_TRUE(shipper_->Drain(kWait));
  EXPECT_EQ(Seqs(back.received()), (std::vector<uint64_t>{3}));
  EXPECT_EQ(Seqs(ingest_b_.received()), (std::vector<uint64_t>{2}));
  EXPECT_EQ(metrics_->home_changes_failover.Value(), 1);
  EXPECT_EQ(metrics_->home_changes_resolve.Value(), 0);
  shipper_->Stop();
  a_->Shutdown(std::chrono::system_clock::now());
  a_.reset();
}

TEST_F(ShipperHomingTest, StartsOnTheNextReplicaWhenTheFirstIsDownPastTheGrace) {
  a_->Shutdown(std::chrono::system_clock::now());
  a_.reset();
  const absl::Time start = absl::Now();
  StartShipper();
  shipper_->Publish(BatchOf(1));
  ASSERT_TRUE(shipper_->Drain(kWait));
  EXPECT_GE(absl::Now() - start, options_.failover_after);
  EXPECT_EQ(Seqs(ingest_b_.received()), (std::vector<uint64_t>{1}));
  EXPECT_EQ(metrics_->home_changes_failover.Value(), 1);
}

}  // namespace
}  // namespace tcpscope::agent
