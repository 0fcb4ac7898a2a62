// ip-netns backed test namespaces.
#include "tests/harness/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/harness/process.h"

namespace tcpscope::testing {

std::string RootTestsUnavailableReason() {
  if (geteuid() != 0) return "needs root (network namespaces); run as root, as CI does";
  if (RunCommand("ip netns list >/dev/null 2>&1").exit_code != 0) {
    return "`ip netns` does not work here (is iproute2 installed?)";
  }
  return "";
}

bool RootTestsRequired() {
  const char* required = std::getenv("TCPSCOPE_REQUIRE_ROOT_TESTS");
  return required != nullptr && std::string(required) == "1";
}

absl::StatusOr<std::unique_ptr<TestNetns>> TestNetns::Create(const std::string& tag) {
  const std::string name = absl::StrCat("tcpscope-", tag, "-", getpid());
  RunCommand(absl::StrCat("ip netns del ", name, " 2>/dev/null"));
  const CommandResult add =
      RunCommand(absl::StrCat("ip netns add ", name, " && ip -n ", name, " link set lo up 2>&1"));
  if (add.exit_code != 0) {
    return absl::InternalError(absl::StrCat("ip netns add ", name, ": ", add.output));
  }
  return std::unique_ptr<TestNetns>(new TestNetns(name));
}

TestNetns::~TestNetns() { RunCommand(absl::StrCat("ip netns del ", name_, " 2>/dev/null")); }

absl::Status TestNetns::RunInside(const std::function<void()>& fn) const {
  absl::Status status;
  std::thread thread([&] {
    const int fd = open(path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      status = absl::ErrnoToStatus(errno, absl::StrCat("open ", path()));
      return;
    }
    if (setns(fd, CLONE_NEWNET) != 0) {
      status = absl::ErrnoToStatus(errno, absl::StrCat("setns ", path()));
      close(fd);
      return;
    }
    close(fd);
    fn();
  });
  thread.join();
  return status;
}

}  // namespace tcpscope::testing
