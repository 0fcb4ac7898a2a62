// The unary commands. Each call has the --timeout deadline and fails fast when the service
// cannot be reached.
#include "cli/query_commands.h"

#include "absl/time/clock.h"
#include "cli/agent_format.h"
#include "cli/command_line.h"
#include "cli/connection_format.h"
#include "cli/json_output.h"
#include "cli/paired_format.h"
#include "cli/partial_answer.h"
#include "cli/rpc_failure.h"
#include "cli/summary_format.h"
#include "grpcpp/client_context.h"
#include "tcpscope/v1/observer.grpc.pb.h"

namespace tcpscope::cli {
namespace {

void SetDeadline(const CommonOptions& options, grpc::ClientContext& context) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  AddToken(options, context);
}

int Failed(grpc::Channel& channel, const CommonOptions& options, const grpc::Status& status,
           std::ostream& err) {
  err << DescribeRpcFailure(options.service, status, options.timeout,
                            channel.GetState(false) == GRPC_CHANNEL_READY)
      << std::endl;
  return kExitFailed;
}

}  // namespace

int RunAgents(const std::shared_ptr<grpc::Channel>& channel, const CommonOptions& options,
              std::ostream& out, std::ostream& err) {
  auto stub = v1::Observer::NewStub(channel);
  grpc::ClientContext context;
  SetDeadline(options, context);
  v1::ListAgentsResponse response;
  if (grpc::Status status = stub->ListAgents(&context, {}, &response); !status.ok()) {
    return Failed(*channel, options, status, err);
  }
  if (options.format == OutputFormat::kJson) {
    out << JsonLine(response) << std::endl;
    return ReportUnanswered(response.unanswered_replicas(), err);
  }
  AgentsTable(response, absl::Now()).Print(out);
  out.flush();
  if (response.agents().empty()) err << "tcpscope: no agents have connected" << std::endl;
  return ReportUnanswered(response.unanswered_replicas(), err);
}

int RunConnections(const std::shared_ptr<grpc::Channel>& channel, const CommonOptions& options,
                   const v1::ListConnectionsRequest& request, std::ostream& out,
                   std::ostream& err) {
  auto stub = v1::Observer::NewStub(channel);
  grpc::ClientContext context;
  SetDeadline(options, context);
  v1::ListConnectionsResponse response;
  if (grpc::Status status = stub->ListConnections(&context, request, &response); !status.ok()) {
    return Failed(*channel, options, status, err);
  }
  if (options.format == OutputFormat::kJson) {
    out << JsonLine(response) << std::endl;
    return ReportUnanswered(response.unanswered_replicas(), err);
  }
  const absl::Time now = absl::Now();
  (request.paired() ? PairedConnectionsTable(response, now) : ConnectionsTable(response, now))
      .Print(out);
  out.flush();
  if (response.connections().empty()) err << "tcpscope: no connections match" << std::endl;
  return ReportUnanswered(response.unanswered_replicas(), err);
}

int RunSummary(const std::shared_ptr<grpc::Channel>& channel, const CommonOptions& options,
               const v1::SummaryRequest& request, std::ostream& out, std::ostream& err) {
  auto stub = v1::Observer::NewStub(channel);
  grpc::ClientContext context;
  SetDeadline(options, context);
  v1::SummaryResponse response;
  if (grpc::Status status = stub->Summary(&context, request, &response); !status.ok()) {
    return Failed(*channel, options, status, err);
  }
  if (options.format == OutputFormat::kJson) {
    out << JsonLine(response) << std::endl;
    return ReportUnanswered(response.unanswered_replicas(), err);
  }
  PrintSummary(response, /*fleet=*/request.host().empty(), absl::LocalTimeZone(), out);
  out.flush();
  if (response.hosts().empty()) err << "tcpscope: no hosts match" << std::endl;
  return ReportUnanswered(response.unanswered_replicas(), err);
}

}  // namespace tcpscope::cli
