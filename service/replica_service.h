// The Replica gRPC service (replica.proto) of one replica: answers its peers' pings and reads
// their Exchange streams, handing each message to the inbox in the stream's order. Calls must
// carry the query token when the service has one (peers send theirs).
#pragma once

#include <functional>
#include <string>

#include "service/replica_set.h"
#include "service/service_metrics.h"
#include "tcpscope/v1/replica.grpc.pb.h"

namespace tcpscope::service {

// Applies one peer message; `from` is the sender's --advertise. Returns an error for a message
// that must end the stream (the sender reconnects and the ring rebuilds the state).
using ReplicaInbox = std::function<absl::Status(const std::string& from, v1::ReplicaMessage&)>;

class ReplicaService : public v1::Replica::CallbackService {
 public:
  ReplicaService(const ReplicaSet* replicas, ReplicaInbox inbox, ServiceMetrics* metrics,
                 std::string query_token)
      : replicas_(replicas),
        inbox_(std::move(inbox)),
        metrics_(metrics),
        query_token_(std::move(query_token)) {}

  grpc::ServerUnaryReactor* Ping(grpc::CallbackServerContext* context,
                                 const v1::PingRequest* request,
                                 v1::PingResponse* response) override;
  grpc::ServerReadReactor<v1::ReplicaMessage>* Exchange(grpc::CallbackServerContext* context,
                                                        v1::ExchangeSummary* summary) override;

 private:
  class ExchangeReactor;
  grpc::Status Authorize(const grpc::CallbackServerContext& context);

  const ReplicaSet* const replicas_;
  const ReplicaInbox inbox_;
  ServiceMetrics* const metrics_;
  const std::string query_token_;
};

}  // namespace tcpscope::service
