// The rule for host names, which become the `host` label of every series: checked by the agent
// on its flag and by the service on every hello.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tcpscope {

inline constexpr size_t kMaxHostNameLength = 253;

// 1 to 253 characters of [A-Za-z0-9._-], starting with a letter or digit.
absl::Status ValidateHostName(absl::string_view host_name);

}  // namespace tcpscope
