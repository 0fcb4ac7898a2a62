// UNAVAILABLE and DEADLINE_EXCEEDED mean no answer; every other code is the service's refusal.
#include "cli/rpc_failure.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tcpscope::cli {

std::string DescribeRpcFailure(absl::string_view service, const grpc::Status& status,
                               absl::Duration timeout, bool connected) {
  const std::string where = absl::StrCat("tcpscope: tcpscope-service at ", service);
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return absl::StrCat(where, " is unreachable: ", status.error_message());
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      if (connected) {
        return absl::StrCat(where, " did not answer within ", absl::FormatDuration(timeout),
                            " (--timeout)");
      }
      return absl::StrCat(where, " is unreachable: not connected within ",
                          absl::FormatDuration(timeout), " (--timeout)");
    default:
      break;
  }
  std::string text =
      absl::StrCat(where, " refused the request: ",
                   absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())));
  if (!status.error_message().empty()) absl::StrAppend(&text, ": ", status.error_message());
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    absl::StrAppend(&text, " (the service is older than this tcpscope)");
  }
  return text;
}

std::string DescribeLostStream(absl::string_view service, const grpc::Status& status) {
  std::string text =
      absl::StrCat("tcpscope: lost the stream from tcpscope-service at ", service, ": ",
                   absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())));
  if (!status.error_message().empty()) absl::StrAppend(&text, ": ", status.error_message());
  return text;
}

}  // namespace tcpscope::cli
