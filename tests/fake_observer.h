// An in-process tcpscope.v1.Observer for CLI tests, on 127.0.0.1:0: it records every request,
// answers with canned responses or a chosen error status, and streams live events on demand.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "tcpscope/v1/observer.grpc.pb.h"

namespace tcpscope::testing {

class FakeObserver final : public v1::Observer::Service {
 public:
  // Canned answers.
  void SetAgents(v1::ListAgentsResponse response);
  void SetConnections(v1::ListConnectionsResponse response);
  void SetSummary(v1::SummaryResponse response);
  // What GetEvents sends first, one Write per response.
  void SetHistory(std::vector<v1::GetEventsResponse> history);
  // Every call fails with this status (nothing is sent).
  void FailWith(grpc::Status status);
  // GetEvents without follow sends its history and then never ends (a silent service).
  void HoldHistoryStreams();
  // Sent to every followed stream open now or later.
  void PushLive(v1::GetEventsResponse response);

  // Recorded.
  int calls();
  std::vector<v1::ListConnectionsRequest> connections_requests();
  std::vector<v1::GetEventsRequest> events_requests();
  std::vector<v1::SummaryRequest> summary_requests();
  // Waits until `count` GetEvents calls have started / been cancelled by their client.
  bool WaitForEventStreams(int count, absl::Duration timeout);
  bool WaitForCancelledStreams(int count, absl::Duration timeout);

  grpc::Status ListAgents(grpc::ServerContext* context, const v1::ListAgentsRequest* request,
                          v1::ListAgentsResponse* response) override;
  grpc::Status ListConnections(grpc::ServerContext* context,
                               const v1::ListConnectionsRequest* request,
                               v1::ListConnectionsResponse* response) override;
  grpc::Status GetEvents(grpc::ServerContext* context, const v1::GetEventsRequest* request,
                         grpc::ServerWriter<v1::GetEventsResponse>* writer) override;
  grpc::Status Summary(grpc::ServerContext* context, const v1::SummaryRequest* request,
                       v1::SummaryResponse* response) override;

 private:
  absl::Mutex mu_;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  v1::ListAgentsResponse agents_ ABSL_GUARDED_BY(mu_);
  v1::ListConnectionsResponse connections_ ABSL_GUARDED_BY(mu_);
  v1::SummaryResponse summary_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::GetEventsResponse> history_ ABSL_GUARDED_BY(mu_);
  bool hold_history_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<v1::GetEventsResponse> live_ ABSL_GUARDED_BY(mu_);  // every live response so far
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  int cancelled_streams_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<v1::ListConnectionsRequest> connections_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::GetEventsRequest> events_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::SummaryRequest> summary_requests_ ABSL_GUARDED_BY(mu_);
};

// The fake served by a real gRPC server on a free loopback port.
class FakeObserverServer {
 public:
  static std::unique_ptr<FakeObserverServer> Start();
  ~FakeObserverServer();  // cancels open streams

  FakeObserver& observer() { return observer_; }
  std::string address() const;  // "127.0.0.1:PORT"

 private:
  FakeObserverServer() = default;
  FakeObserver observer_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace tcpscope::testing
