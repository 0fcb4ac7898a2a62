// The Observer API's optional bearer token: read once from --query_token_file, then compared
// (in constant time) with each call's "authorization: Bearer TOKEN" metadata.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"

namespace tcpscope::service {

// The file's content without surrounding whitespace: 16 to 4096 printable ASCII characters.
absl::StatusOr<std::string> ReadQueryToken(const std::string& path);

// OK when `token` is empty (none required) or the call carries it; UNAUTHENTICATED otherwise.
grpc::Status CheckQueryToken(const grpc::CallbackServerContext& context, const std::string& token);

}  // namespace tcpscope::service
