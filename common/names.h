// The rule for every name that becomes a label value, a table cell or a filter: host names (the
// `host` label, checked by the agent on its flag and by the service on every hello) and the
// names of workload identity (container ids and names, pod names, namespaces and uids), which
// come from whoever starts containers and are untrusted. The agent drops (and counts) a
// workload name that breaks the rule; the service refuses one.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tcpscope {

inline constexpr size_t kMaxNameLength = 253;

// 1 to 253 characters of [A-Za-z0-9._-], starting with a letter or digit. `kind` names the
// value in the error ("host name", "pod name", ...).
absl::Status ValidateName(absl::string_view kind, absl::string_view name);

inline absl::Status ValidateHostName(absl::string_view host_name) {
  return ValidateName("host name", host_name);
}

}  // namespace tcpscope
