// From the flags of a parsed command line to Observer API requests, validating every value on
// the way. Needs no server: everything a user can get wrong is caught here, before any call.
// Every error is InvalidArgument with a message naming the flag (a usage error, exit 2).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/command_line.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::cli {

enum class OutputFormat { kTable, kJson };

struct CommonOptions {
  std::string service;
  OutputFormat format = OutputFormat::kTable;
  absl::Duration timeout;
};

// --service (HOST:PORT or a gRPC target URI), -o, --timeout.
absl::StatusOr<CommonOptions> BuildCommonOptions();

absl::StatusOr<v1::ListConnectionsRequest> BuildListConnectionsRequest(
    const Invocation& invocation);

// `now` resolves --since=DURATION ("that long before now").
absl::StatusOr<v1::GetEventsRequest> BuildGetEventsRequest(const Invocation& invocation,
                                                           absl::Time now);

absl::StatusOr<v1::SummaryRequest> BuildSummaryRequest(const Invocation& invocation);

}  // namespace tcpscope::cli
