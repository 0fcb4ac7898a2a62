// From the flags of a parsed command line to Observer API requests, validating every value on
// the way. Needs no server: everything a user can get wrong is caught here, before any call.
// Every error is InvalidArgument with a message naming the flag (a usage error, exit 2).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/command_line.h"
#include "grpcpp/client_context.h"
#include "grpcpp/security/credentials.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::cli {

enum class OutputFormat { kTable, kJson };

struct CommonOptions {
  std::string service;
  OutputFormat format = OutputFormat::kTable;
  absl::Duration timeout;
  std::shared_ptr<grpc::ChannelCredentials> credentials;  // --tls_*: plaintext by default
  std::string token;                                      // --token_file; empty: none
};

// --service (HOST:PORT or a gRPC target URI), -o, --timeout, --tls_*, --token_file.
absl::StatusOr<CommonOptions> BuildCommonOptions();

// "authorization: Bearer TOKEN" on a call, when --token_file gave a token.
void AddToken(const CommonOptions& options, grpc::ClientContext& context);

absl::StatusOr<v1::ListConnectionsRequest> BuildListConnectionsRequest(
    const Invocation& invocation);

// `now` resolves --since=DURATION ("that long before now").
absl::StatusOr<v1::GetEventsRequest> BuildGetEventsRequest(const Invocation& invocation,
                                                           absl::Time now);

absl::StatusOr<v1::SummaryRequest> BuildSummaryRequest(const Invocation& invocation);

}  // namespace tcpscope::cli
