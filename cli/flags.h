// The settings of `tcpscope`, one ABSL_FLAG each. command_line.cc decides which command accepts
// which flag and sets them; request_builder.cc validates them and turns them into requests.
#pragma once

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"
#include "absl/time/time.h"

// Every command.
ABSL_DECLARE_FLAG(std::string, service);
ABSL_DECLARE_FLAG(std::string, token_file);
// --tls_cert, --tls_key, --tls_ca: common/tls_flags.
ABSL_DECLARE_FLAG(std::string, o);
ABSL_DECLARE_FLAG(absl::Duration, timeout);

// Filters (connections, events, summary).
ABSL_DECLARE_FLAG(std::string, host);
ABSL_DECLARE_FLAG(int64_t, port);  // wide, so that -1 and 70000 reach our range check
ABSL_DECLARE_FLAG(std::string, address);

// connections
ABSL_DECLARE_FLAG(std::string, state);
ABSL_DECLARE_FLAG(std::string, keepalive);
ABSL_DECLARE_FLAG(bool, at_risk);
ABSL_DECLARE_FLAG(std::string, at_risk_reason);
ABSL_DECLARE_FLAG(bool, half_open);
ABSL_DECLARE_FLAG(bool, paired);

// connections and events
ABSL_DECLARE_FLAG(std::string, half_open_reason);
// Workload filters (connections and events): exact matches on an end's or event's origin.
ABSL_DECLARE_FLAG(std::string, namespace);
ABSL_DECLARE_FLAG(std::string, pod);
ABSL_DECLARE_FLAG(std::string, container);
ABSL_DECLARE_FLAG(std::string, process);

// events
ABSL_DECLARE_FLAG(int64_t, last);
ABSL_DECLARE_FLAG(std::string, since);
ABSL_DECLARE_FLAG(bool, follow);
ABSL_DECLARE_FLAG(std::string, type);
ABSL_DECLARE_FLAG(std::string, reason);
ABSL_DECLARE_FLAG(std::string, role);
