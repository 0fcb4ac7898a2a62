// The Observer gRPC service: agents, current connections, recent and live events, and a summary,
// for the CLI and any other client.
#pragma once

#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "grpcpp/channel.h"
#include "service/event_log.h"
#include "service/fleet_queries.h"
#include "service/query_fanout.h"
#include "service/service_metrics.h"
#include "tcpscope/v1/observer.grpc.pb.h"

namespace tcpscope::service {

struct ObserverOptions {
  // Live events queued per following subscriber beyond its history; more are missed and counted.
  size_t subscriber_queue_events = 10000;
  size_t max_events_per_response = 256;
  // When set, every call must carry "authorization: Bearer <query_token>".
  std::string query_token;
};

// With a QueryFanout (tcpscope-service --peers) every call answers for the whole fleet, but a
// call that asks for this replica's part only (AsksLocalPart: a peer's fan-out).
class ObserverService : public v1::Observer::CallbackService {
 public:
  ObserverService(const FleetQueries* queries, EventLog* log, ServiceMetrics* metrics,
                  ObserverOptions options = {}, QueryFanout* fanout = nullptr)
      : queries_(queries), log_(log), metrics_(metrics), options_(options), fanout_(fanout) {}

  // With a fan-out: the server's in-process channel, over which GetEvents reads this replica's
  // part as it reads the peers'. Until it is set, fanned-out GetEvents calls are UNAVAILABLE.
  void set_local_channel(std::shared_ptr<grpc::Channel> channel);

  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* context,
                                       const v1::ListAgentsRequest* request,
                                       v1::ListAgentsResponse* response) override;
  grpc::ServerUnaryReactor* ListConnections(grpc::CallbackServerContext* context,
                                            const v1::ListConnectionsRequest* request,
                                            v1::ListConnectionsResponse* response) override;
  grpc::ServerWriteReactor<v1::GetEventsResponse>* GetEvents(
      grpc::CallbackServerContext* context, const v1::GetEventsRequest* request) override;
  grpc::ServerUnaryReactor* Summary(grpc::CallbackServerContext* context,
                                    const v1::SummaryRequest* request,
                                    v1::SummaryResponse* response) override;

 private:
  class EventStream;
  // UNAUTHENTICATED (counted and logged) when the call lacks the query token.
  grpc::Status Authorize(const grpc::CallbackServerContext& context);
  // Whether this call answers for the fleet (a fan-out) rather than this replica alone.
  bool FansOut(const grpc::CallbackServerContext& context) const {
    return fanout_ != nullptr && !AsksLocalPart(context);
  }
  std::shared_ptr<grpc::Channel> local_channel() const;

  const FleetQueries* const queries_;
  EventLog* const log_;
  ServiceMetrics* const metrics_;
  const ObserverOptions options_;
  QueryFanout* const fanout_;
  mutable absl::Mutex mu_;
  std::shared_ptr<grpc::Channel> local_channel_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tcpscope::service
