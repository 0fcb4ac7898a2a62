// A synchronous gRPC service: simple, and the CLI under test cannot tell the difference.
#include "tests/fake_observer.h"

#include "absl/strings/str_cat.h"

namespace tcpscope::testing {

void FakeObserver::SetAgents(v1::ListAgentsResponse response) {
  absl::MutexLock lock(&mu_);
  agents_ = std::move(response);
}

void FakeObserver::SetConnections(v1::ListConnectionsResponse response) {
  absl::MutexLock lock(&mu_);
  connections_ = std::move(response);
}

void FakeObserver::SetSummary(v1::SummaryResponse response) {
  absl::MutexLock lock(&mu_);
  summary_ = std::move(response);
}

void FakeObserver::SetHistory(std::vector<v1::GetEventsResponse> history) {
  absl::MutexLock lock(&mu_);
  history_ = std::move(history);
}

void FakeObserver::FailWith(grpc::Status status) {
  absl::MutexLock lock(&mu_);
  status_ = std::move(status);
}

void FakeObserver::HoldHistoryStreams() {
  absl::MutexLock lock(&mu_);
  hold_history_ = true;
}

void FakeObserver::PushLive(v1::GetEventsResponse response) {
  absl::MutexLock lock(&mu_);
  live_.push_back(std::move(response));
}

int FakeObserver::calls() {
  absl::MutexLock lock(&mu_);
  return calls_;
}

std::vector<v1::ListConnectionsRequest> FakeObserver::connections_requests() {
  absl::MutexLock lock(&mu_);
  return connections_requests_;
}

std::vector<v1::GetEventsRequest> FakeObserver::events_requests() {
  absl::MutexLock lock(&mu_);
  return events_requests_;
}

std::vector<v1::SummaryRequest> FakeObserver::summary_requests() {
  absl::MutexLock lock(&mu_);
  return summary_requests_;
}

bool FakeObserver::WaitForEventStreams(int count, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const auto started = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<int>(events_requests_.size()) >= count;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&started), timeout);
}

bool FakeObserver::WaitForCancelledStreams(int count, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const auto cancelled = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return cancelled_streams_ >= count;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&cancelled), timeout);
}

grpc::Status FakeObserver::ListAgents(grpc::ServerContext* context,
                                      const v1::ListAgentsRequest* request,
                                      v1::ListAgentsResponse* response) {
  absl::MutexLock lock(&mu_);
  ++calls_;
  if (!status_.ok()) return status_;
  *response = agents_;
  return grpc::Status::OK;
}

grpc::Status FakeObserver::ListConnections(grpc::ServerContext* context,
                                           const v1::ListConnectionsRequest* request,
                                           v1::ListConnectionsResponse* response) {
  absl::MutexLock lock(&mu_);
  ++calls_;
  connections_requests_.push_back(*request);
  if (!status_.ok()) return status_;
  *response = connections_;
  return grpc::Status::OK;
}

grpc::Status FakeObserver::Summary(grpc::ServerContext* context, const v1::SummaryRequest* request,
                                   v1::SummaryResponse* response) {
  absl::MutexLock lock(&mu_);
  ++calls_;
  summary_requests_.push_back(*request);
  if (!status_.ok()) return status_;
  *response = summary_;
  return grpc::Status::OK;
}

grpc::Status FakeObserver::GetEvents(grpc::ServerContext* context,
                                     const v1::GetEventsRequest* request,
                                     grpc::ServerWriter<v1::GetEventsResponse>* writer) {
  std::vector<v1::GetEventsResponse> history;
  bool hold = false;
  {
    absl::MutexLock lock(&mu_);
    ++calls_;
    events_requests_.push_back(*request);
    if (!status_.ok()) return status_;
    history = history_;
    hold = hold_history_;
  }
  for (const v1::GetEventsResponse& response : history) writer->Write(response);
  if (!request->follow() && !hold) return grpc::Status::OK;
  size_t sent = 0;
  while (!context->IsCancelled()) {
    std::vector<v1::GetEventsResponse> fresh;
    {
      absl::MutexLock lock(&mu_);
      const auto more = [this, sent]()
                            ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_.size() > sent; };
      mu_.AwaitWithTimeout(absl::Condition(&more), absl::Milliseconds(10));
      if (request->follow()) fresh.assign(live_.begin() + sent, live_.end());
      sent = live_.size();
    }
    for (const v1::GetEventsResponse& response : fresh) writer->Write(response);
  }
  absl::MutexLock lock(&mu_);
  ++cancelled_streams_;
  return grpc::Status::CANCELLED;
}

std::unique_ptr<FakeObserverServer> FakeObserverServer::Start() {
  std::unique_ptr<FakeObserverServer> server(new FakeObserverServer());
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(&server->observer_);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) return nullptr;
  return server;
}

FakeObserverServer::~FakeObserverServer() {
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
  }
}

std::string FakeObserverServer::address() const { return absl::StrCat("127.0.0.1:", port_); }

}  // namespace tcpscope::testing
