// The Observer API's optional bearer token (read with ReadBearerToken from --query_token_file),
// compared in constant time with each call's "authorization: Bearer TOKEN" metadata.
#pragma once

#include <string>

#include "grpcpp/server_context.h"

namespace tcpscope::service {

// OK when `token` is empty (none required) or the call carries it; UNAUTHENTICATED otherwise.
grpc::Status CheckQueryToken(const grpc::CallbackServerContext& context, const std::string& token);

}  // namespace tcpscope::service
