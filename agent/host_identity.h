// Who this agent is: host name, kernel boot id and a random id for this process start.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tcpscope::agent {

absl::StatusOr<std::string> MachineHostName();
// /proc/sys/kernel/random/boot_id: changes when the host reboots.
absl::StatusOr<std::string> BootId();
// The boot id of a host that is one network namespace (--netns), with the namespace's
// SO_NETNS_COOKIE: "<kernel boot id>/netns-<cookie>". A namespace deleted and created again (a
// restarted container or test host) reads as a reboot; the same namespace always gives the same
// id. At most 63 characters (36 + 7 + 20), within the service's limit of 64.
std::string NamespaceBootId(absl::string_view kernel_boot_id, uint64_t netns_cookie);
// Random, non-zero; batch sequence numbers restart with it.
uint64_t NewInstanceId();

}  // namespace tcpscope::agent
