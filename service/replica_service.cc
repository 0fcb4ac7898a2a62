#include "service/replica_service.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "service/query_token.h"

namespace tcpscope::service {

grpc::Status ReplicaService::Authorize(const grpc::CallbackServerContext& context) {
  return AuthorizeCall(context, query_token_, metrics_->Rejected("query_token"), "replica call");
}

grpc::ServerUnaryReactor* ReplicaService::Ping(grpc::CallbackServerContext* context,
                                               const v1::PingRequest* request,
                                               v1::PingResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (grpc::Status status = Authorize(*context); !status.ok()) {
    reactor->Finish(status);
    return reactor;
  }
  response->set_advertise(replicas_->self());
  response->set_instance(replicas_->instance());
  for (const std::string& member : replicas_->UpMembers()) response->add_up(member);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

// Reads a peer's messages one at a time and applies each before reading the next, so a peer's
// messages are applied in its order.
class ReplicaService::ExchangeReactor : public grpc::ServerReadReactor<v1::ReplicaMessage> {
 public:
  ExchangeReactor(ReplicaService* service, grpc::CallbackServerContext* context,
                  v1::ExchangeSummary* summary)
      : service_(service), context_(context), summary_(summary) {
    if (grpc::Status status = service_->Authorize(*context); !status.ok()) {
      Finish(status);
      return;
    }
    StartRead(&message_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the peer closed its side
      Finish(grpc::Status::OK);
      return;
    }
    if (from_.empty()) {
      from_ = message_.from();
      if (from_.empty()) {
        Finish({grpc::StatusCode::INVALID_ARGUMENT,
                "Exchange: the first message must name its sender (from)"});
        return;
      }
    } else if (!message_.from().empty() && message_.from() != from_) {
      Finish({grpc::StatusCode::INVALID_ARGUMENT,
              absl::StrCat("Exchange: the sender changed from ", from_, " to ", message_.from())});
      return;
    }
    if (absl::Status status = service_->inbox_(from_, message_); !status.ok()) {
      service_->metrics_->Rejected("replica_message").Increment();
      TS_LOG(WARNING) << "replica " << from_ << " (" << context_->peer()
                      << "): " << status.message() << "; its stream is ended";
      Finish({grpc::StatusCode::INVALID_ARGUMENT, std::string(status.message())});
      return;
    }
    summary_->set_applied(summary_->applied() + 1);
    message_.Clear();
    StartRead(&message_);
  }

  void OnDone() override { delete this; }

 private:
  ReplicaService* const service_;
  grpc::CallbackServerContext* const context_;
  v1::ExchangeSummary* const summary_;
  v1::ReplicaMessage message_;
  std::string from_;
};

grpc::ServerReadReactor<v1::ReplicaMessage>* ReplicaService::Exchange(
    grpc::CallbackServerContext* context, v1::ExchangeSummary* summary) {
  return new ExchangeReactor(this, context, summary);
}

}  // namespace tcpscope::service
