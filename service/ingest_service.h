// The Ingest gRPC service: one callback reactor per agent stream. A reaction validates and
// applies one message and returns; it never waits on the network.
#pragma once

#include <atomic>

#include "absl/time/time.h"
#include "service/aggregator.h"
#include "service/batch_validator.h"
#include "service/service_metrics.h"
#include "tcpscope/v1/ingest.grpc.pb.h"

namespace tcpscope::service {

struct IngestLimits {
  ValidationLimits validation;
  // Agent streams open at once; more are refused with RESOURCE_EXHAUSTED.
  int max_streams = 10000;
  // Events one stream may send per second, with a burst of two seconds' worth; a batch over it
  // is refused (RESOURCE_EXHAUSTED) and the agent resends it after its backoff. 0: no limit.
  double max_events_per_second = 200000;
};

class IngestService : public v1::Ingest::WithRawCallbackMethod_Stream<v1::Ingest::Service> {
 public:
  IngestService(Aggregator* aggregator, ServiceMetrics* metrics, IngestLimits limits = {})
      : aggregator_(aggregator), metrics_(metrics), limits_(limits) {}

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Stream(
      grpc::CallbackServerContext* context) override;

 private:
  class StreamReactor;
  Aggregator* const aggregator_;
  ServiceMetrics* const metrics_;
  const IngestLimits limits_;
  std::atomic<int> open_streams_{0};
};

}  // namespace tcpscope::service
