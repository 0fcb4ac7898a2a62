// The Ingest gRPC service: one callback reactor per agent stream. A reaction validates and
// applies one message and returns; it never waits on the network.
#pragma once

#include "absl/time/time.h"
#include "service/aggregator.h"
#include "service/batch_validator.h"
#include "service/service_metrics.h"
#include "tcpscope/v1/ingest.grpc.pb.h"

namespace tcpscope::service {

class IngestService : public v1::Ingest::CallbackService {
 public:
  IngestService(Aggregator* aggregator, ServiceMetrics* metrics, ValidationLimits limits = {})
      : aggregator_(aggregator), metrics_(metrics), limits_(limits) {}

  grpc::ServerBidiReactor<v1::AgentMessage, v1::ServiceMessage>* Stream(
      grpc::CallbackServerContext* context) override;

 private:
  class StreamReactor;
  Aggregator* const aggregator_;
  ServiceMetrics* const metrics_;
  const ValidationLimits limits_;
};

}  // namespace tcpscope::service
