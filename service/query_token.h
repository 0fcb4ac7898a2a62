// The Observer API's optional bearer token (read with ReadBearerToken from --query_token_file),
// compared in constant time with each call's "authorization: Bearer TOKEN" metadata.
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "grpcpp/server_context.h"
#include "prometheus/counter.h"

namespace tcpscope::service {

// OK when `token` is empty (none required) or the call carries it; UNAUTHENTICATED otherwise.
grpc::Status CheckQueryToken(const grpc::CallbackServerContext& context, const std::string& token);

// CheckQueryToken for a call of `caller` ("query", "replica call"): a refusal is counted in
// `refused` and logged with the caller's address.
grpc::Status AuthorizeCall(const grpc::CallbackServerContext& context, const std::string& token,
                           prometheus::Counter& refused, absl::string_view caller);

}  // namespace tcpscope::service
