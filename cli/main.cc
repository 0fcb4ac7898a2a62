// tcpscope: command-line client of tcpscope-service's Observer API.
//   tcpscope agents | connections | events | summary  [flags]; tcpscope help COMMAND
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli/command_line.h"
#include "cli/events_command.h"
#include "cli/flags.h"
#include "cli/query_commands.h"
#include "cli/request_builder.h"
#include "common/shutdown.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace tcpscope::cli {
namespace {

int UsageError(const absl::Status& status, const std::optional<Command>& command) {
  std::cerr << "tcpscope: " << status.message() << "\nRun 'tcpscope help"
            << (command.has_value() ? absl::StrCat(" ", CommandName(*command)) : "")
            << "' for usage.\n";
  return kExitUsage;
}

int Main(const std::vector<std::string>& args) {
  if (args.size() <= 1) {
    std::cerr << OverviewHelp();
    return kExitUsage;
  }
  absl::StatusOr<Invocation> invocation = ParseCommandLine(args);
  if (!invocation.ok()) {
    // For the hint only: the command the user probably meant.
    std::optional<Command> command;
    for (size_t i = 1; i < args.size() && !command.has_value(); ++i) {
      command = CommandNamed(args[i]);
    }
    return UsageError(invocation.status(), command);
  }
  if (invocation->help) {
    std::cout << (invocation->command.has_value() ? CommandHelp(*invocation->command)
                                                  : OverviewHelp());
    return kExitOk;
  }
  const Command command = *invocation->command;
  // Before anything starts gRPC's threads (credentials do), so they inherit the blocked signals
  // and a follower ends cleanly on SIGTERM/SIGINT.
  if (command == Command::kEvents && absl::GetFlag(FLAGS_follow)) BlockShutdownSignals();
  absl::StatusOr<CommonOptions> options = BuildCommonOptions();
  if (!options.ok()) return UsageError(options.status(), command);

  // Created only after the request is built: every flag is checked before any network use.
  const auto channel = [&options] {
    return grpc::CreateChannel(options->service, options->credentials);
  };
  switch (command) {
    case Command::kAgents:
      return RunAgents(channel(), *options, std::cout, std::cerr);
    case Command::kConnections: {
      absl::StatusOr<v1::ListConnectionsRequest> request = BuildListConnectionsRequest(*invocation);
      if (!request.ok()) return UsageError(request.status(), command);
      return RunConnections(channel(), *options, *request, std::cout, std::cerr);
    }
    case Command::kEvents: {
      absl::StatusOr<v1::GetEventsRequest> request =
          BuildGetEventsRequest(*invocation, absl::Now());
      if (!request.ok()) return UsageError(request.status(), command);
      return RunEvents(channel(), *options, *request, std::cout, std::cerr);
    }
    case Command::kSummary: {
      absl::StatusOr<v1::SummaryRequest> request = BuildSummaryRequest(*invocation);
      if (!request.ok()) return UsageError(request.status(), command);
      return RunSummary(channel(), *options, *request, std::cout, std::cerr);
    }
  }
  return kExitUsage;
}

}  // namespace
}  // namespace tcpscope::cli

int main(int argc, char** argv) {
  return tcpscope::cli::Main(std::vector<std::string>(argv, argv + argc));
}
