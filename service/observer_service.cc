// Query handlers. GetEvents streams from a bounded per-watcher queue filled by the EventHub.
#include "service/observer_service.h"

#include <deque>

#include "absl/strings/str_cat.h"
#include "common/host_name.h"

namespace tcpscope::service {

class ObserverService::Watcher : public grpc::ServerWriteReactor<v1::GetEventsResponse>,
                                 public EventWatcher {
 public:
  Watcher(ObserverService* service, std::string host) : service_(service), host_(std::move(host)) {
    service_->metrics_->watchers.Increment();
    service_->hub_->Add(this);
  }

  void Offer(const std::string& host,
             const google::protobuf::RepeatedPtrField<v1::Event>& events) override {
    if (!host_.empty() && host != host_) return;
    bool write = false;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      for (const v1::Event& event : events) {
        if (queue_.size() >= service_->options_.watcher_queue_events) {
          ++missed_;
          service_->metrics_->watch_events_missed.Increment();
          continue;
        }
        v1::HostEvent& entry = queue_.emplace_back();
        entry.set_host(host);
        *entry.mutable_event() = event;
      }
      write = PrepareWriteLocked();
    }
    if (write) StartWrite(&out_);
  }

  void OnWriteDone(bool ok) override {
    bool write = false;
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok || cancelled_) {
        finish = !finished_;
        finished_ = true;
      } else {
        write = PrepareWriteLocked();
      }
    }
    if (finish) Finish(grpc::Status::CANCELLED);
    if (write) StartWrite(&out_);
  }

  void OnCancel() override {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      if (!write_in_flight_ && !finished_) {
        finished_ = true;
        finish = true;
      }
    }
    if (finish) Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    service_->hub_->Remove(this);
    service_->metrics_->watchers.Decrement();
    delete this;
  }

 private:
  bool PrepareWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || finished_ || (queue_.empty() && missed_ == 0)) return false;
    out_.Clear();
    const size_t count = std::min(queue_.size(), service_->options_.max_events_per_response);
    for (size_t i = 0; i < count; ++i) {
      *out_.add_events() = std::move(queue_.front());
      queue_.pop_front();
    }
    out_.set_missed(missed_);
    missed_ = 0;
    write_in_flight_ = true;
    return true;
  }

  ObserverService* const service_;
  const std::string host_;
  v1::GetEventsResponse out_;  // written under mu_, read by the one write in flight

  absl::Mutex mu_;
  std::deque<v1::HostEvent> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t missed_ ABSL_GUARDED_BY(mu_) = 0;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

grpc::ServerUnaryReactor* ObserverService::ListAgents(grpc::CallbackServerContext* context,
                                                      const v1::ListAgentsRequest* request,
                                                      v1::ListAgentsResponse* response) {
  for (v1::Agent& agent : aggregator_->Agents()) *response->add_agents() = std::move(agent);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ObserverService::ListConnections(
    grpc::CallbackServerContext* context, const v1::ListConnectionsRequest* request,
    v1::ListConnectionsResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (!request->host().empty() && !ValidateHostName(request->host()).ok()) {
    reactor->Finish({grpc::StatusCode::INVALID_ARGUMENT,
                     absl::StrCat("host filter: ", ValidateHostName(request->host()).message())});
    return reactor;
  }
  if (!v1::TcpState_IsValid(request->state())) {
    reactor->Finish({grpc::StatusCode::INVALID_ARGUMENT,
                     absl::StrCat("state filter ", request->state(), " is not a TCP state")});
    return reactor;
  }
  if (request->port() > 65535) {
    reactor->Finish({grpc::StatusCode::INVALID_ARGUMENT,
                     absl::StrCat("port filter ", request->port(), " is out of range")});
    return reactor;
  }
  for (v1::HostConnection& connection : aggregator_->Connections(*request)) {
    *response->add_connections() = std::move(connection);
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<v1::GetEventsResponse>* ObserverService::GetEvents(
    grpc::CallbackServerContext* context, const v1::GetEventsRequest* request) {
  if (!request->filter().host().empty() && !ValidateHostName(request->filter().host()).ok()) {
    class Refusal : public grpc::ServerWriteReactor<v1::GetEventsResponse> {
     public:
      explicit Refusal(grpc::Status status) { Finish(status); }
      void OnDone() override { delete this; }
    };
    return new Refusal(
        {grpc::StatusCode::INVALID_ARGUMENT,
         absl::StrCat("host filter: ", ValidateHostName(request->filter().host()).message())});
  }
  return new Watcher(this, request->filter().host());
}

}  // namespace tcpscope::service
