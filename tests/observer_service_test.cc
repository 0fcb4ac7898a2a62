// The Observer service over a real gRPC channel on loopback, fed through the aggregator: history
// and live events join without a gap or a repeat, a subscriber that does not read never slows
// ingestion and is told exactly how much it missed, and bad requests are refused by field.
#include "service/observer_service.h"

#include <memory>
#include <thread>

#include "absl/time/clock.h"
#include "common/shared_origins.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace tcpscope::service {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1800000000);

class ObserverServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ObserverOptions options;
    options.subscriber_queue_events = 1000;
    observer_ = std::make_unique<ObserverService>(&queries_, &log_, &metrics_, options);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(observer_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    stub_ = v1::Observer::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    v1::Hello hello;
    hello.set_host_name("a");
    hello.set_boot_id("boot");
    hello.set_instance_id(1);
    hello.set_source(v1::SOURCE_KIND_EBPF);
    uint64_t last_applied = 0;
    host_ = *aggregator_.Connect(hello, kNow, &last_applied);
  }

  void TearDown() override { server_->Shutdown(); }

  // Applies a batch of `count` handshakes whose local ports number them from `first`.
  void Publish(int first, int count) {
    auto batch = std::make_shared<v1::Batch>();
    batch->set_seq(++seq_);
    for (int i = 0; i < count; ++i) {
      v1::Event* event = batch->add_events();
      event->set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(kNow)) +
                              static_cast<uint64_t>(first + i));
      event->set_role(v1::ROLE_CLIENT);
      event->mutable_endpoints()->set_local_port(static_cast<uint32_t>(first + i));
      event->mutable_handshake();
    }
    ASSERT_TRUE(aggregator_.Apply(*host_, std::move(batch), kNow));
  }

  ServiceMetrics metrics_;
  EventLog log_{100};
  Aggregator aggregator_{&metrics_, &log_};
  FleetQueries queries_{&aggregator_};
  std::unique_ptr<ObserverService> observer_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Observer::Stub> stub_;
  std::shared_ptr<HostState> host_;
  uint64_t seq_ = 0;
};

TEST_F(ObserverServiceTest, LastNThenLiveWithoutGapOrRepeat) {
  for (int i = 0; i < 10; ++i) Publish(i, 1);
  grpc::ClientContext context;
  v1::GetEventsRequest request;
  request.set_last(4);
  request.set_follow(true);
  auto reader = stub_->GetEvents(&context, request);
  std::vector<uint32_t> ports;
  v1::GetEventsResponse response;
  while (ports.size() < 4 && reader->Read(&response)) {
    for (const auto& entry : response.events())
      ports.push_back(entry.event().endpoints().local_port());
  }
  for (int i = 10; i < 13; ++i) Publish(i, 1);
  while (ports.size() < 7 && reader->Read(&response)) {
    for (const auto& entry : response.events())
      ports.push_back(entry.event().endpoints().local_port());
  }
  EXPECT_EQ(ports, (std::vector<uint32_t>{6, 7, 8, 9, 10, 11, 12}));
  context.TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// Agents send each batch's distinct origins once (Batch.origins, Event.origin_ref): filters see
// every event's origin, and served events carry it inline.
TEST_F(ObserverServiceTest, EventsOfSharedOriginsAreFilteredAndServedInline) {
  auto batch = std::make_shared<v1::Batch>();
  batch->set_seq(++seq_);
  for (int i = 0; i < 6; ++i) {
    v1::Event* event = batch->add_events();
    event->set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(kNow)) + i);
    event->set_role(v1::ROLE_CLIENT);
    event->mutable_endpoints()->set_local_port(static_cast<uint32_t>(100 + i));
    event->mutable_handshake();
    event->mutable_origin()->set_pod(i % 3 == 0 ? "db-0" : "web-0");
    event->mutable_origin()->set_pod_namespace("shop");
  }
  ShareBatchOrigins(*batch);
  ASSERT_EQ(batch->origins_size(), 2);
  ASSERT_TRUE(aggregator_.Apply(*host_, std::move(batch), kNow));

  grpc::ClientContext context;
  v1::GetEventsRequest request;
  request.set_last(10);
  request.mutable_filter()->set_pod("db-0");
  auto reader = stub_->GetEvents(&context, request);
  std::vector<uint32_t> ports;
  v1::GetEventsResponse response;
  while (reader->Read(&response)) {
    for (const auto& entry : response.events()) {
      ports.push_back(entry.event().endpoints().local_port());
      EXPECT_EQ(entry.event().origin_ref(), 0u);
      EXPECT_EQ(entry.event().origin().pod(), "db-0");
      EXPECT_EQ(entry.event().origin().pod_namespace(), "shop");
    }
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(ports, (std::vector<uint32_t>{100, 103}));
}

TEST_F(ObserverServiceTest, HistoryOnlyEndsAndReportsTruncation) {
  for (int i = 0; i < 30; ++i) Publish(i * 10, 10);  // 300 events; the history keeps 100
  grpc::ClientContext context;
  v1::GetEventsRequest request;
  request.set_since_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(kNow)));  // all of them
  request.mutable_filter()->set_port(295);
  auto reader = stub_->GetEvents(&context, request);
  v1::GetEventsResponse response;
  int events = 0;
  int responses = 0;
  bool truncated = false;
  while (reader->Read(&response)) {
    truncated |= response.history_truncated();
    events += response.events_size();
    ++responses;
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(events, 1);  // port 295 only
  EXPECT_EQ(responses, 1);
  EXPECT_TRUE(truncated);
}

TEST_F(ObserverServiceTest, ASubscriberThatDoesNotReadMissesExactlyWhatDidNotFit) {
  grpc::ClientContext context;
  v1::GetEventsRequest request;
  request.set_follow(true);
  auto reader = stub_->GetEvents(&context, request);
  absl::SleepFor(absl::Milliseconds(100));  // subscribed
  // 200,000 events while the client reads nothing: ingestion is not held up by it.
  constexpr int kBatches = 200;
  constexpr int kPerBatch = 1000;
  const absl::Time start = absl::Now();
  for (int i = 0; i < kBatches; ++i) Publish(i * kPerBatch, kPerBatch);
  const absl::Duration publishing = absl::Now() - start;
  // Now read everything that was queued or sent, and the missed count.
  uint64_t received = 0;
  uint64_t missed = 0;
  v1::GetEventsResponse response;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (received + missed < kBatches * kPerBatch && absl::Now() < deadline &&
         reader->Read(&response)) {
    received += static_cast<uint64_t>(response.events_size());
    missed += response.missed();
  }
  EXPECT_EQ(received + missed, static_cast<uint64_t>(kBatches * kPerBatch));
  EXPECT_GT(missed, 0u);
  EXPECT_EQ(metrics_.watch_events_missed.Value(), static_cast<double>(missed));
  std::cerr << "published " << kBatches * kPerBatch << " events in "
            << absl::FormatDuration(publishing) << " to a stalled subscriber; it received "
            << received << " and missed " << missed << "\n";
  context.TryCancel();
  while (reader->Read(&response)) {
  }
}

TEST_F(ObserverServiceTest, BadRequestsAreRefusedByField) {
  auto refused = [&](const v1::GetEventsRequest& request) {
    grpc::ClientContext context;
    auto reader = stub_->GetEvents(&context, request);
    v1::GetEventsResponse response;
    while (reader->Read(&response)) {
    }
    return reader->Finish();
  };
  v1::GetEventsRequest request;
  grpc::Status status = refused(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("nothing asked"), std::string::npos);
  request.set_last(1);
  request.mutable_filter()->set_address("10.0.0.0/99");
  status = refused(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("filter.address"), std::string::npos);
  request.mutable_filter()->clear_address();
  request.mutable_filter()->set_pod("db-0\"}");
  status = refused(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("filter.pod has character 0x22"), std::string::npos);
  request.mutable_filter()->clear_pod();
  request.mutable_filter()->set_process(std::string(65, 'x'));
  status = refused(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("filter.process"), std::string::npos);

  {
    grpc::ClientContext context;
    v1::ListConnectionsRequest connections;
    connections.set_container(std::string(254, 'c'));
    v1::ListConnectionsResponse listed;
    status = stub_->ListConnections(&context, connections, &listed);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(status.error_message().find("container is 254 characters long"), std::string::npos)
        << status.error_message();
  }

  grpc::ClientContext context;
  v1::ListConnectionsRequest connections;
  connections.set_state(static_cast<v1::TcpState>(77));
  v1::ListConnectionsResponse listed;
  status = stub_->ListConnections(&context, connections, &listed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("state"), std::string::npos);

  grpc::ClientContext summary_context;
  v1::SummaryRequest summary;
  summary.set_host("no spaces allowed");
  v1::SummaryResponse summarized;
  status = stub_->Summary(&summary_context, summary, &summarized);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace tcpscope::service
