// Hostile input against the Ingest service over a real gRPC channel on loopback: every refusal
// is a clear status, counted by reason, and nothing of a refused message is applied. The cases
// here are the table in SECURITY.md.
#include "service/ingest_service.h"

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "tests/harness/metrics_text.h"

namespace tcpscope::service {
namespace {

using testing::MetricSum;
using testing::MetricValue;

v1::AgentMessage Hello(const std::string& host, uint64_t instance = 1) {
  v1::AgentMessage message;
  v1::Hello* hello = message.mutable_hello();
  hello->set_host_name(host);
  hello->set_agent_version("test");
  hello->set_boot_id("boot-1");
  hello->set_instance_id(instance);
  hello->set_source(v1::SOURCE_KIND_EBPF);
  return message;
}

v1::Event ValidHandshake() {
  v1::Event event;
  event.set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())));
  event.set_role(v1::ROLE_CLIENT);
  v1::Endpoints* endpoints = event.mutable_endpoints();
  endpoints->set_local_address(std::string("\x0a\x00\x00\x01", 4));
  endpoints->set_remote_address(std::string("\x0a\x00\x00\x02", 4));
  endpoints->set_local_port(40000);
  endpoints->set_remote_port(80);
  event.mutable_handshake()->set_duration_us(100);
  return event;
}

v1::AgentMessage BatchOf(uint64_t seq, std::vector<v1::Event> events) {
  v1::AgentMessage message;
  message.mutable_batch()->set_seq(seq);
  for (v1::Event& event : events) *message.mutable_batch()->add_events() = std::move(event);
  return message;
}

class IngestServiceTest : public ::testing::Test {
 protected:
  void StartServer(IngestLimits limits = {}, int max_message_bytes = 1 << 20) {
    service_ = std::make_unique<IngestService>(&aggregator_, &metrics_, limits);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.SetMaxReceiveMessageSize(max_message_bytes);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    channel_ =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
    stub_ = v1::Ingest::NewStub(channel_);
  }

  // Sends `bytes` as the stream's one message, bypassing protobuf serialization.
  grpc::Status SendRawBytes(const std::string& bytes) {
    grpc::GenericStub generic(channel_);
    grpc::CompletionQueue queue;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto call = generic.PrepareCall(&context, "/tcpscope.v1.Ingest/Stream", &queue);
    void* tag = nullptr;
    bool ok = false;
    call->StartCall(reinterpret_cast<void*>(1));
    queue.Next(&tag, &ok);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer buffer(&slice, 1);
    call->Write(buffer, reinterpret_cast<void*>(2));
    queue.Next(&tag, &ok);
    call->WritesDone(reinterpret_cast<void*>(3));
    queue.Next(&tag, &ok);
    grpc::Status status;
    call->Finish(&status, reinterpret_cast<void*>(4));
    queue.Next(&tag, &ok);
    queue.Shutdown();
    while (queue.Next(&tag, &ok)) {
    }
    return status;
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }

  struct StreamResult {
    grpc::Status status;
    std::vector<v1::ServiceMessage> replies;
  };

  // Sends `messages` on one stream (waiting for each reply where one is due would couple the
  // test to timing; the service answers in order), then half-closes and collects the end.
  StreamResult Send(const std::vector<v1::AgentMessage>& messages) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub_->Stream(&context);
    for (const v1::AgentMessage& message : messages) {
      if (!stream->Write(message)) break;
    }
    stream->WritesDone();
    StreamResult result;
    v1::ServiceMessage reply;
    while (stream->Read(&reply)) result.replies.push_back(reply);
    result.status = stream->Finish();
    return result;
  }

  std::string Exposition() {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, metrics_.Collect());
    return out.str();
  }

  double Rejected(const std::string& reason) {
    return MetricValue(Exposition(), "tcpscope_service_rejected_total", {{"reason", reason}})
        .value_or(0);
  }

  // Nothing of any event was applied anywhere.
  void ExpectNothingApplied() {
    const std::string m = Exposition();
    EXPECT_EQ(MetricSum(m, "tcpscope_agent_events_total", {}), 0) << m;
    EXPECT_EQ(MetricSum(m, "tcpscope_handshakes_total", {}), 0) << m;
  }

  ServiceMetrics metrics_;
  EventLog log_{1000};
  Aggregator aggregator_{&metrics_, &log_};
  std::unique_ptr<IngestService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Ingest::Stub> stub_;
};

TEST_F(IngestServiceTest, AValidStreamIsAppliedAndAcknowledged) {
  StartServer();
  StreamResult result = Send({Hello("a"), BatchOf(1, {ValidHandshake(), ValidHandshake()})});
  EXPECT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_EQ(result.replies.size(), 2u);
  EXPECT_TRUE(result.replies[0].has_hello_ack());
  EXPECT_EQ(result.replies[1].ack().seq(), 1u);
  EXPECT_EQ(MetricValue(Exposition(), "tcpscope_agent_events_total", {{"host", "a"}}), 2);
}

struct HostileCase {
  std::string name;
  std::vector<v1::AgentMessage> messages;
  grpc::StatusCode code;
  std::string message;  // part of the status message
  std::string reason;   // tcpscope_service_rejected_total reason
};

std::vector<HostileCase> HostileCases() {
  auto event_with = [](auto mutate) {
    v1::Event event = ValidHandshake();
    mutate(event);
    return event;
  };
  std::vector<HostileCase> cases;
  cases.push_back({"batch before hello",
                   {BatchOf(1, {ValidHandshake()})},
                   grpc::StatusCode::FAILED_PRECONDITION,
                   "first message must be a hello",
                   "protocol"});
  cases.push_back({"second hello",
                   {Hello("a"), Hello("a")},
                   grpc::StatusCode::FAILED_PRECONDITION,
                   "hello is sent once",
                   "protocol"});
  for (const std::string& host : {std::string(""), std::string("a\"b"), std::string("a\nb"),
                                  std::string("a b"), std::string(254, 'a'), std::string("-a")}) {
    cases.push_back({"host name " + absl::CEscape(host),
                     {Hello(host), BatchOf(1, {ValidHandshake()})},
                     grpc::StatusCode::INVALID_ARGUMENT,
                     "host",
                     "invalid_hello"});
  }
  v1::AgentMessage no_instance = Hello("a", 0);
  cases.push_back({"instance id 0",
                   {no_instance},
                   grpc::StatusCode::INVALID_ARGUMENT,
                   "instance_id",
                   "invalid_hello"});
  v1::AgentMessage bad_source = Hello("a");
  bad_source.mutable_hello()->set_source(static_cast<v1::SourceKind>(99));
  cases.push_back({"unknown source kind",
                   {bad_source},
                   grpc::StatusCode::INVALID_ARGUMENT,
                   "source",
                   "invalid_hello"});
  v1::AgentMessage bad_version = Hello("a");
  bad_version.mutable_hello()->set_agent_version("1.0\x01");
  cases.push_back({"control character in version",
                   {bad_version},
                   grpc::StatusCode::INVALID_ARGUMENT,
                   "agent_version",
                   "invalid_hello"});
  // Invalid UTF-8 in a string field does not even parse: refused before any validation.
  cases.push_back({"invalid UTF-8 host name",
                   {Hello("h\xc3\x28"), BatchOf(1, {ValidHandshake()})},
                   grpc::StatusCode::INVALID_ARGUMENT,
                   "malformed message",
                   "malformed"});

  struct EventCase {
    std::string name;
    v1::Event event;
    std::string message;
  };
  const std::vector<EventCase> events = {
      {"port 70000", event_with([](v1::Event& e) { e.mutable_endpoints()->set_local_port(70000); }),
       "port out of range"},
      {"5-byte address",
       event_with([](v1::Event& e) { e.mutable_endpoints()->set_local_address("12345"); }),
       "addresses must both be 4"},
      {"IPv4 local with IPv6 remote", event_with([](v1::Event& e) {
         e.mutable_endpoints()->set_remote_address(std::string(16, 'x'));
       }),
       "addresses must both be 4"},
      {"unknown role", event_with([](v1::Event& e) { e.set_role(static_cast<v1::Role>(9)); }),
       "role"},
      {"time in 2100",
       event_with([](v1::Event& e) { e.set_time_unix_ns(4102444800ULL * 1000000000ULL); }), "time"},
      {"time 0", event_with([](v1::Event& e) { e.set_time_unix_ns(0); }), "time"},
      {"no kind", event_with([](v1::Event& e) { e.clear_handshake(); }), "no kind"},
      {"half_open from an agent", event_with([](v1::Event& e) {
         e.mutable_half_open()->set_reason(v1::HALF_OPEN_PEER_REBOOTED);
         e.mutable_half_open()->set_peer_host("other");
       }),
       "the service's findings"},
      {"unknown close reason", event_with([](v1::Event& e) {
         e.mutable_close()->set_initiator(v1::CLOSE_INITIATOR_LOCAL);
         e.mutable_close()->set_reason(static_cast<v1::CloseReason>(42));
       }),
       "close reason"},
      {"impossible lifetime", event_with([](v1::Event& e) {
         e.mutable_close()->set_initiator(v1::CLOSE_INITIATOR_LOCAL);
         e.mutable_close()->set_reason(v1::CLOSE_REASON_FIN);
         e.mutable_close()->set_lifetime_us(1ULL << 62);
       }),
       "impossible"},
      {"unknown failure reason", event_with([](v1::Event& e) {
         e.mutable_handshake_failed()->set_reason(static_cast<v1::HandshakeFailureReason>(17));
       }),
       "failure reason"},
      {"probe number 0", event_with([](v1::Event& e) { e.mutable_keepalive_probe(); }),
       "probe number"},
      {"label-breaking command",
       event_with([](v1::Event& e) { e.mutable_origin()->set_command("x\"} 1\nfake 2"); }),
       "command"},
      {"control characters in pod",
       event_with([](v1::Event& e) { e.mutable_origin()->set_pod("pod-\x7f"); }), "pod"},
      {"label-breaking container name",
       event_with([](v1::Event& e) { e.mutable_origin()->set_container_name("x\"} 1\nfake 2"); }),
       "container_name"},
  };
  for (const EventCase& c : events) {
    // The bad event comes after a good one in the same batch: the whole batch is refused.
    cases.push_back({c.name,
                     {Hello("a"), BatchOf(1, {ValidHandshake(), c.event})},
                     grpc::StatusCode::INVALID_ARGUMENT,
                     c.message,
                     "invalid_batch"});
  }
  v1::AgentMessage utf8_pod = BatchOf(1, {ValidHandshake()});
  utf8_pod.mutable_batch()->mutable_events(0)->mutable_origin()->set_pod("pod-\xc3");
  cases.push_back({"invalid UTF-8 pod",
                   {Hello("a"), utf8_pod},
                   grpc::StatusCode::INVALID_ARGUMENT,
                   "malformed message",
                   "malformed"});
  cases.push_back({"sequence number 0",
                   {Hello("a"), BatchOf(0, {ValidHandshake()})},
                   grpc::StatusCode::INVALID_ARGUMENT,
                   "seq",
                   "invalid_batch"});
  v1::AgentMessage bad_snapshot = BatchOf(1, {});
  v1::Connection* connection = bad_snapshot.mutable_batch()->mutable_snapshot()->add_connections();
  connection->set_state(v1::TCP_STATE_LISTEN);
  bad_snapshot.mutable_batch()->mutable_snapshot()->set_time_unix_ns(
      static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())));
  v1::AgentMessage idle_forever = BatchOf(1, {});
  v1::Connection* idle = idle_forever.mutable_batch()->mutable_snapshot()->add_connections();
  idle->set_state(v1::TCP_STATE_ESTABLISHED);
  idle->set_idle_ms(1ULL << 63);  // would wrap to a negative duration in the at-risk check
  idle->mutable_endpoints()->set_local_address(std::string(4, '\x01'));
  idle->mutable_endpoints()->set_remote_address(std::string(4, '\x02'));
  idle_forever.mutable_batch()->mutable_snapshot()->set_time_unix_ns(
      static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())));
  cases.push_back({"idle time 2^63 ms",
                   {Hello("a"), idle_forever},
                   grpc::StatusCode::INVALID_ARGUMENT,
                   "idle time",
                   "invalid_batch"});
  cases.push_back({"LISTEN in a snapshot",
                   {Hello("a"), bad_snapshot},
                   grpc::StatusCode::INVALID_ARGUMENT,
                   "not a connection state",
                   "invalid_batch"});
  return cases;
}

TEST_F(IngestServiceTest, HostileMessagesAreRefusedAndChangeNothing) {
  StartServer();
  int index = 0;
  for (HostileCase c : HostileCases()) {
    SCOPED_TRACE(c.name);
    // A host name of its own per case: a refused stream's host may still be disconnecting.
    for (v1::AgentMessage& message : c.messages) {
      if (message.hello().host_name() == "a") {
        message.mutable_hello()->set_host_name(absl::StrCat("case-", ++index));
      }
    }
    const double before = Rejected(c.reason);
    StreamResult result = Send(c.messages);
    EXPECT_EQ(result.status.error_code(), c.code)
        << result.status.error_message() << " replies " << result.replies.size();
    EXPECT_TRUE(absl::StrContains(result.status.error_message(), c.message))
        << result.status.error_message();
    EXPECT_EQ(Rejected(c.reason), before + 1);
    for (const v1::ServiceMessage& reply : result.replies) EXPECT_FALSE(reply.has_ack());
    ExpectNothingApplied();
  }
  // And the service is as good as new: a valid agent is accepted afterwards.
  EXPECT_TRUE(Send({Hello("a"), BatchOf(1, {ValidHandshake()})}).status.ok());
}

TEST_F(IngestServiceTest, BytesThatAreNotAMessageAreRefusedAsMalformed) {
  StartServer();
  for (const std::string& garbage :
       {std::string("\xff\xff\xff\xff\xff"), std::string("\x0a\x7f"),  // bad tag; length past end
        std::string("\x0a\x03\x0a\x01\xc3")}) {  // hello.host_name: invalid UTF-8
    const grpc::Status status = SendRawBytes(garbage);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << absl::CEscape(garbage);
    EXPECT_TRUE(absl::StrContains(status.error_message(), "malformed message"))
        << status.error_message();
  }
  EXPECT_EQ(Rejected("malformed"), 3);
  ExpectNothingApplied();
}

TEST_F(IngestServiceTest, OversizedMessageIsRefusedByTheTransport) {
  StartServer({}, /*max_message_bytes=*/64 << 10);
  std::vector<v1::Event> events(2000, ValidHandshake());  // about 100 KiB
  StreamResult result = Send({Hello("a"), BatchOf(1, events)});
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << result.status.error_message();
  ExpectNothingApplied();
}

TEST_F(IngestServiceTest, TooManyEventsInOneBatchAreRefused) {
  IngestLimits limits;
  limits.validation.max_events_per_batch = 100;
  StartServer(limits);
  std::vector<v1::Event> events(101, ValidHandshake());
  StreamResult result = Send({Hello("a"), BatchOf(1, events)});
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(result.status.error_message(), "101 events; at most 100"));
  ExpectNothingApplied();
}

TEST_F(IngestServiceTest, StreamsBeyondTheLimitAreRefused) {
  IngestLimits limits;
  limits.max_streams = 2;
  StartServer(limits);
  // Two agents hold streams open (hello acknowledged); the third is refused.
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ServiceMessage>>> open;
  for (const char* host : {"a", "b"}) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    open.push_back(stub_->Stream(contexts.back().get()));
    ASSERT_TRUE(open.back()->Write(Hello(host)));
    v1::ServiceMessage ack;
    ASSERT_TRUE(open.back()->Read(&ack));
    ASSERT_TRUE(ack.has_hello_ack());
  }
  StreamResult third = Send({Hello("c")});
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(third.status.error_message(), "2 agent streams open"));
  EXPECT_EQ(Rejected("too_many_streams"), 1);
  for (auto& stream : open) {
    stream->WritesDone();
    EXPECT_TRUE(stream->Finish().ok());
  }
  // With those gone (the service notices within moments), the next agent gets in.
  grpc::Status status;
  for (int attempt = 0; attempt < 50; ++attempt) {
    status = Send({Hello("c")}).status;
    if (status.ok()) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(IngestServiceTest, AnAgentOverItsEventRateIsRefusedWithoutApplyingTheBatch) {
  IngestLimits limits;
  limits.validation.max_events_per_batch = 100;
  limits.max_events_per_second = 10;  // bucket: 100 events (one full batch)
  StartServer(limits);
  std::vector<v1::Event> events(60, ValidHandshake());
  StreamResult result = Send({Hello("a"), BatchOf(1, events), BatchOf(2, events)});
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(result.status.error_message(), "batch 2 not applied"))
      << result.status.error_message();
  EXPECT_EQ(Rejected("rate_limited"), 1);
  // Batch 1 was applied and acknowledged; batch 2 was not.
  EXPECT_EQ(MetricValue(Exposition(), "tcpscope_agent_events_total", {{"host", "a"}}), 60);
}

TEST_F(IngestServiceTest, TwoAgentsClaimingOneHostAreToldSo) {
  StartServer();
  grpc::ClientContext context;
  auto first = stub_->Stream(&context);
  ASSERT_TRUE(first->Write(Hello("a", 1)));
  v1::ServiceMessage ack;
  ASSERT_TRUE(first->Read(&ack));
  StreamResult second = Send({Hello("a", 2), BatchOf(1, {ValidHandshake()})});
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_TRUE(absl::StrContains(second.status.error_message(), "two agents claim one host name"));
  EXPECT_EQ(Rejected("duplicate_host"), 1);
  ExpectNothingApplied();
  first->WritesDone();
  EXPECT_TRUE(first->Finish().ok());
}

}  // namespace
}  // namespace tcpscope::service
