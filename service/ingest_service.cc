// Agent stream handling: hello, then batches; each applied batch is acknowledged. Acks are
// cumulative, so when a write is in flight only the latest sequence number is kept to send next.
#include "service/ingest_service.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/tcp_names.h"

namespace tcpscope::service {

class IngestService::StreamReactor
    : public grpc::ServerBidiReactor<v1::AgentMessage, v1::ServiceMessage> {
 public:
  StreamReactor(IngestService* service, grpc::CallbackServerContext* context)
      : service_(service), peer_(context->peer()) {
    service_->metrics_->streams.Increment();
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The agent closed its side or the stream broke: nothing more to apply.
      FinishOnce(grpc::Status::OK);
      return;
    }
    grpc::Status status = Handle();
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
      if (finish_status_.has_value()) {
        finish = finish_status_;
      } else if (ok) {
        write = PrepareWriteLocked();
      }
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
    delete this;
  }

 private:
  grpc::Status Handle() {
    const absl::Time now = absl::Now();
    if (host_ == nullptr) {
      if (!in_.has_hello()) {
        service_->metrics_->Rejected("protocol").Increment();
        return {grpc::StatusCode::FAILED_PRECONDITION, "the first message must be a hello"};
      }
      if (absl::Status s = ValidateHello(in_.hello()); !s.ok()) {
        service_->metrics_->Rejected("invalid_hello").Increment();
        return {grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message())};
      }
      uint64_t last_applied = 0;
      absl::StatusOr<std::shared_ptr<HostState>> host =
          service_->aggregator_->Connect(in_.hello(), now, &last_applied);
      if (!host.ok()) {
        service_->metrics_->Rejected("duplicate_host").Increment();
        return {grpc::StatusCode::ALREADY_EXISTS, std::string(host.status().message())};
      }
      host_ = std::move(*host);
      host_name_ = in_.hello().host_name();
      TS_LOG(INFO) << "agent " << in_.hello().host_name() << " connected from " << peer_
                   << " (version " << in_.hello().agent_version() << ", source "
                   << SourceKindName(in_.hello().source()) << ", resuming after batch "
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
    if (!in_.has_batch()) {
      service_->metrics_->Rejected("protocol").Increment();
      return {grpc::StatusCode::FAILED_PRECONDITION,
              "expected a batch: hello is sent once, at the start of the stream"};
    }
    if (absl::Status s = ValidateBatch(in_.batch(), now, service_->limits_); !s.ok()) {
      service_->metrics_->Rejected("invalid_batch").Increment();
      return {grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message())};
    }
    // The batch moves (no copy) into the event history and to subscribers.
    auto batch = std::make_shared<v1::Batch>();
    batch->Swap(in_.mutable_batch());
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
    if (write_in_flight_ || finish_status_.has_value()) return false;
    if (pending_hello_ack_.has_value()) {
      out_.Clear();
      out_.mutable_hello_ack()->set_last_applied_seq(*pending_hello_ack_);
      pending_hello_ack_.reset();
    } else if (pending_ack_.has_value()) {
      out_.Clear();
      out_.mutable_ack()->set_seq(*pending_ack_);
      pending_ack_.reset();
    } else {
      return false;
    }
    write_in_flight_ = true;
    return true;
  }

  // Finish must wait for a write in flight; OnWriteDone finishes then.
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
  v1::AgentMessage in_;
  std::shared_ptr<HostState> host_;
  std::string host_name_;

  absl::Mutex mu_;
  v1::ServiceMessage out_;  // written under mu_, read by the one write in flight
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<uint64_t> pending_hello_ack_ ABSL_GUARDED_BY(mu_);
  std::optional<uint64_t> pending_ack_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> finish_status_ ABSL_GUARDED_BY(mu_);
};

grpc::ServerBidiReactor<v1::AgentMessage, v1::ServiceMessage>* IngestService::Stream(
    grpc::CallbackServerContext* context) {
  return new StreamReactor(this, context);
}

}  // namespace tcpscope::service
