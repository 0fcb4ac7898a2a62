// agents, connections and summary: one unary call each, printed as an aligned table or as one
// JSON object (the whole response) on one line. An empty table prints its header alone to
// stdout, a note to stderr, and exits 0.
#pragma once

#include <memory>
#include <ostream>

#include "cli/request_builder.h"
#include "grpcpp/channel.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::cli {

// Each returns the exit code: kExitOk, kExitFailed, or kExitPartial (the answer printed misses
// a replica's part, named on `err`).
int RunAgents(const std::shared_ptr<grpc::Channel>& channel, const CommonOptions& options,
              std::ostream& out, std::ostream& err);
int RunConnections(const std::shared_ptr<grpc::Channel>& channel, const CommonOptions& options,
                   const v1::ListConnectionsRequest& request, std::ostream& out, std::ostream& err);
int RunSummary(const std::shared_ptr<grpc::Channel>& channel, const CommonOptions& options,
               const v1::SummaryRequest& request, std::ostream& out, std::ostream& err);

}  // namespace tcpscope::cli
