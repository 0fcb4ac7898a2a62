// GetEvents for the whole fleet (tcpscope-service --peers): one local-scope GetEvents stream per
// replica, this one included (over the server's in-process channel). The histories are merged by
// time once every replica gave its own (the last N kept), then live events are passed on in
// order of arrival. A replica that gives no history in time, or whose live stream breaks, is
// named in the next response (unanswered_replicas): the stream is partial from then on.
#pragma once

#include <cstddef>
#include <memory>

#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/server_callback.h"
#include "service/query_fanout.h"
#include "service/service_metrics.h"
#include "tcpscope/v1/observer.grpc.pb.h"

namespace tcpscope::service {

struct FanoutEventOptions {
  size_t queue_events = 10000;  // live events queued beyond the history; more are missed
  size_t max_events_per_response = 256;
  // When every replica's history must be in (its call's deadline without follow).
  absl::Time history_deadline;
};

// Starts the stream; the reactor deletes itself when done.
grpc::ServerWriteReactor<v1::GetEventsResponse>* StartFanoutEventStream(
    QueryFanout* fanout, std::shared_ptr<grpc::Channel> local_channel, ServiceMetrics* metrics,
    const v1::GetEventsRequest& request, const FanoutEventOptions& options);

}  // namespace tcpscope::service
