// The message for a failed call: names the service's address and says whether it could not be
// reached (exit 1: network, service down, no answer in time) or refused the request (exit 1,
// with the service's own message: a bad filter, a missing permission, an older service).
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/support/status.h"

namespace tcpscope::cli {

// One line without a trailing newline, starting "tcpscope: ". `connected`: whether the channel
// had a connection when the call failed, which tells a silent service from an unreachable one.
std::string DescribeRpcFailure(absl::string_view service, const grpc::Status& status,
                               absl::Duration timeout, bool connected);

// A followed stream that was established and then failed (the service stopped, the network
// broke): "tcpscope: lost the stream from tcpscope-service at ADDRESS: CODE: message".
std::string DescribeLostStream(absl::string_view service, const grpc::Status& status);

}  // namespace tcpscope::cli
