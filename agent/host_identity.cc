// Host identity from the kernel.
#include "agent/host_identity.h"

#include <sys/random.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tcpscope::agent {

absl::StatusOr<std::string> MachineHostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) {
    return absl::ErrnoToStatus(errno, "gethostname");
  }
  return std::string(name);
}

absl::StatusOr<std::string> BootId() {
  constexpr char kPath[] = "/proc/sys/kernel/random/boot_id";
  std::ifstream file(kPath);
  std::string id;
  if (!file || !std::getline(file, id)) {
    return absl::UnavailableError(absl::StrCat("cannot read ", kPath));
  }
  return std::string(absl::StripAsciiWhitespace(id));
}

std::string NamespaceBootId(absl::string_view kernel_boot_id, uint64_t netns_cookie) {
  return absl::StrCat(kernel_boot_id, "/netns-", netns_cookie);
}

uint64_t NewInstanceId() {
  uint64_t id = 0;
  while (id == 0) {
    if (getrandom(&id, sizeof(id), 0) != sizeof(id)) id = std::random_device{}();
  }
  return id;
}

}  // namespace tcpscope::agent
