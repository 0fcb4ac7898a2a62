// The Observer gRPC service: agents, current connections and live events for the CLI and any
// other client.
#pragma once

#include "service/aggregator.h"
#include "service/event_hub.h"
#include "service/service_metrics.h"
#include "tcpscope/v1/observer.grpc.pb.h"

namespace tcpscope::service {

struct ObserverOptions {
  size_t watcher_queue_events = 10000;  // per watcher; beyond it events are missed and counted
  size_t max_events_per_response = 256;
};

class ObserverService : public v1::Observer::CallbackService {
 public:
  ObserverService(Aggregator* aggregator, EventHub* hub, ServiceMetrics* metrics,
                  ObserverOptions options = {})
      : aggregator_(aggregator), hub_(hub), metrics_(metrics), options_(options) {}

  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* context,
                                       const v1::ListAgentsRequest* request,
                                       v1::ListAgentsResponse* response) override;
  grpc::ServerUnaryReactor* ListConnections(grpc::CallbackServerContext* context,
                                            const v1::ListConnectionsRequest* request,
                                            v1::ListConnectionsResponse* response) override;
  grpc::ServerWriteReactor<v1::GetEventsResponse>* GetEvents(
      grpc::CallbackServerContext* context, const v1::GetEventsRequest* request) override;

 private:
  class Watcher;
  Aggregator* const aggregator_;
  EventHub* const hub_;
  ServiceMetrics* const metrics_;
  const ObserverOptions options_;
};

}  // namespace tcpscope::service
