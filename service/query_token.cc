// The per-call token check.
#include "service/query_token.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace tcpscope::service {
namespace {

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char difference = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return difference == 0;
}

}  // namespace

grpc::Status CheckQueryToken(const grpc::CallbackServerContext& context, const std::string& token) {
  if (token.empty()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return {grpc::StatusCode::UNAUTHENTICATED,
            "this service requires a bearer token (authorization metadata; tcpscope "
            "--token_file)"};
  }
  const absl::string_view given(it->second.data(), it->second.size());
  if (!ConstantTimeEquals(given, absl::StrCat("Bearer ", token))) {
    return {grpc::StatusCode::UNAUTHENTICATED, "wrong bearer token"};
  }
  return grpc::Status::OK;
}

grpc::Status AuthorizeCall(const grpc::CallbackServerContext& context, const std::string& token,
                           prometheus::Counter& refused, absl::string_view caller) {
  grpc::Status status = CheckQueryToken(context, token);
  if (!status.ok()) {
    refused.Increment();
    TS_LOG(WARNING) << caller << " from " << context.peer()
                    << " refused: " << status.error_message();
  }
  return status;
}

}  // namespace tcpscope::service
