// Who this agent is: host name, kernel boot id and a random id for this process start.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace tcpscope::agent {

absl::StatusOr<std::string> MachineHostName();
// /proc/sys/kernel/random/boot_id: changes when the host reboots.
absl::StatusOr<std::string> BootId();
// Random, non-zero; batch sequence numbers restart with it.
uint64_t NewInstanceId();

}  // namespace tcpscope::agent
