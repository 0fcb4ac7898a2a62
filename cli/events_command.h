// events: the matching events of the service's history, then with --follow the live ones until
// Ctrl-C or SIGTERM (exit 0). Output is flushed after every response, so a pipe sees each event
// as soon as the service sends it.
#pragma once

#include <memory>
#include <ostream>

#include "cli/request_builder.h"
#include "grpcpp/channel.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::cli {

// With request.follow(), SIGTERM and SIGINT must already be blocked in every thread
// (BlockShutdownSignals() before the channel is created): they end the stream here.
// Returns the exit code.
int RunEvents(const std::shared_ptr<grpc::Channel>& channel, const CommonOptions& options,
              const v1::GetEventsRequest& request, std::ostream& out, std::ostream& err);

}  // namespace tcpscope::cli
