// Agent stream handling: hello, then batches; each applied batch is acknowledged. Acks are
// cumulative, so when a write is in flight only the latest sequence number is kept to send next.
// The method is registered raw (byte buffers): the service parses each message itself, so a
// malformed one gets a clear INVALID_ARGUMENT instead of looking like the end of the stream,
// and each batch lands on its own arena.
#include "service/ingest_service.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/tcp_names.h"
#include "google/protobuf/arena.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "service/token_bucket.h"

namespace tcpscope::service {

class IngestService::StreamReactor
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  StreamReactor(IngestService* service, grpc::CallbackServerContext* context)
      : service_(service),
        peer_(context->peer()),
        rate_(service->limits_.max_events_per_second,
              // Any valid batch must fit the bucket, or a slow limit would refuse it forever.
              std::max(2 * service->limits_.max_events_per_second,
                       static_cast<double>(service->limits_.validation.max_events_per_batch)),
              absl::Now()) {
    service_->metrics_->streams.Increment();
    if (service_->open_streams_.fetch_add(1) >= service_->limits_.max_streams) {
      service_->metrics_->Rejected("too_many_streams").Increment();
      TS_LOG(WARNING) << "refusing stream from " << peer_ << ": already "
                      << service_->limits_.max_streams << " agent streams open";
      FinishOnce({grpc::StatusCode::RESOURCE_EXHAUSTED,
                  absl::StrCat("the service already has ", service_->limits_.max_streams,
                               " agent streams open (--max_agent_streams); retry later")});
      return;
    }
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The agent closed its side or the stream broke: nothing more to apply.
      FinishOnce(grpc::Status::OK);
      return;
    }
    grpc::Status status = Parse();
    if (status.ok()) status = Handle();
    if (!status.ok()) {
      TS_LOG(WARNING) << "refusing stream from " << peer_
                      << (host_ ? absl::StrCat(" (host ", host_name_, ")") : "") << ": "
                      << status.error_message();
      FinishOnce(status);
      return;
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    bool write = false;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok) {
        pending_ack_.reset();
        pending_hello_ack_.reset();
      }
      // Acks still owed go out before the finish: the agent then knows those batches were applied
      // (a half-close right after a batch must not lose its ack).
      if (ok) write = PrepareWriteLocked();
      if (!write && finish_status_.has_value()) finish = finish_status_;
    }
    if (finish.has_value()) Finish(*finish);
    if (write) StartWrite(&out_);
  }

  void OnDone() override {
    if (host_ != nullptr) {
      service_->aggregator_->Disconnect(*host_, absl::Now());
      TS_LOG(INFO) << "agent " << host_name_ << " disconnected (" << peer_ << ")";
    }
    service_->metrics_->streams.Decrement();
    service_->open_streams_.fetch_sub(1);
    delete this;
  }

 private:
  // Parses the message just read onto a fresh arena: the batch and everything in it then live
  // (and die) together in one allocation area, shared with live event subscribers.
  grpc::Status Parse() {
    arena_ = std::make_shared<google::protobuf::Arena>();
    message_ = google::protobuf::Arena::CreateMessage<v1::AgentMessage>(arena_.get());
    grpc::ProtoBufferReader reader(&in_);
    const bool parsed = message_->ParseFromZeroCopyStream(&reader);
    in_.Clear();
    if (!parsed) {
      service_->metrics_->Rejected("malformed").Increment();
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "malformed message: not a tcpscope.v1.AgentMessage (or a string field that is not "
              "valid UTF-8)"};
    }
    return grpc::Status::OK;
  }

  grpc::Status Handle() {
    const absl::Time now = absl::Now();
    const v1::AgentMessage& in = *message_;
    if (host_ == nullptr) {
      if (!in.has_hello()) {
        service_->metrics_->Rejected("protocol").Increment();
        return {grpc::StatusCode::FAILED_PRECONDITION, "the first message must be a hello"};
      }
      if (absl::Status s = ValidateHello(in.hello()); !s.ok()) {
        service_->metrics_->Rejected("invalid_hello").Increment();
        return {grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message())};
      }
      uint64_t last_applied = 0;
      absl::StatusOr<std::shared_ptr<HostState>> host =
          service_->aggregator_->Connect(in.hello(), now, &last_applied);
      if (!host.ok()) {
        service_->metrics_->Rejected("duplicate_host").Increment();
        return {grpc::StatusCode::ALREADY_EXISTS, std::string(host.status().message())};
      }
      host_ = std::move(*host);
      host_name_ = in.hello().host_name();
      TS_LOG(INFO) << "agent " << in.hello().host_name() << " connected from " << peer_
                   << " (version " << in.hello().agent_version() << ", source "
                   << SourceKindName(in.hello().source()) << ", resuming after batch "
                   << last_applied << ")";
      bool write = false;
      {
        absl::MutexLock lock(&mu_);
        pending_hello_ack_ = last_applied;
        write = PrepareWriteLocked();
      }
      if (write) StartWrite(&out_);
      return grpc::Status::OK;
    }
    if (!in.has_batch()) {
      service_->metrics_->Rejected("protocol").Increment();
      return {grpc::StatusCode::FAILED_PRECONDITION,
              "expected a batch: hello is sent once, at the start of the stream"};
    }
    if (absl::Status s = ValidateBatch(in.batch(), now, service_->limits_.validation); !s.ok()) {
      service_->metrics_->Rejected("invalid_batch").Increment();
      return {grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message())};
    }
    if (!rate_.TryTake(in.batch().events_size(), now)) {
      service_->metrics_->Rejected("rate_limited").Increment();
      return {grpc::StatusCode::RESOURCE_EXHAUSTED,
              absl::StrCat("host ", host_name_, " sends more than ",
                           service_->limits_.max_events_per_second,
                           " events/s (--max_events_per_second); batch ", in.batch().seq(),
                           " not applied, resend it after a backoff")};
    }
    // The batch goes, with its arena and without a copy, to the aggregator and live subscribers.
    std::shared_ptr<v1::Batch> batch(arena_, message_->mutable_batch());
    arena_.reset();
    message_ = nullptr;
    const uint64_t seq = batch->seq();
    if (service_->aggregator_->Apply(*host_, std::move(batch), now)) {
      service_->metrics_->batches_applied.Increment();
    } else {
      service_->metrics_->batches_duplicate.Increment();
    }
    bool write = false;
    {
      absl::MutexLock lock(&mu_);
      pending_ack_ = std::max(pending_ack_.value_or(0), seq);
      write = PrepareWriteLocked();
    }
    if (write) StartWrite(&out_);
    return grpc::Status::OK;
  }

  // Fills out_ with the next message to send, if any; the caller starts the write after
  // unlocking, so a reaction that runs inline cannot deadlock on mu_.
  bool PrepareWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_) return false;
    v1::ServiceMessage reply;
    if (pending_hello_ack_.has_value()) {
      reply.mutable_hello_ack()->set_last_applied_seq(*pending_hello_ack_);
      pending_hello_ack_.reset();
    } else if (pending_ack_.has_value()) {
      reply.mutable_ack()->set_seq(*pending_ack_);
      pending_ack_.reset();
    } else {
      return false;
    }
    out_.Clear();
    bool own_buffer = false;
    if (!grpc::SerializationTraits<v1::ServiceMessage>::Serialize(reply, &out_, &own_buffer).ok()) {
      return false;  // cannot happen for these small messages
    }
    write_in_flight_ = true;
    return true;
  }

  // Finish must wait for a write in flight (and the acks still owed); OnWriteDone finishes then.
  void FinishOnce(const grpc::Status& status) {
    bool finish_now = false;
    {
      absl::MutexLock lock(&mu_);
      if (finish_status_.has_value()) return;
      finish_status_ = status;
      finish_now = !write_in_flight_;
    }
    if (finish_now) Finish(status);
  }

  IngestService* const service_;
  const std::string peer_;
  grpc::ByteBuffer in_;
  std::shared_ptr<google::protobuf::Arena> arena_;  // of message_, until handed on
  v1::AgentMessage* message_ = nullptr;
  std::shared_ptr<HostState> host_;
  std::string host_name_;
  TokenBucket rate_;  // events per second of this stream

  absl::Mutex mu_;
  grpc::ByteBuffer out_;  // written under mu_, read by the one write in flight
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<uint64_t> pending_hello_ack_ ABSL_GUARDED_BY(mu_);
  std::optional<uint64_t> pending_ack_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> finish_status_ ABSL_GUARDED_BY(mu_);
};

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* IngestService::Stream(
    grpc::CallbackServerContext* context) {
  return new StreamReactor(this, context);
}

}  // namespace tcpscope::service
