// Network namespaces that a test creates (ip netns add) and deletes, so its sockets and the
// agent watching them are isolated from the rest of the machine.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tcpscope::testing {

// Why root tests cannot run here, or empty when they can (root and `ip netns` work).
std::string RootTestsUnavailableReason();
// TCPSCOPE_REQUIRE_ROOT_TESTS=1 (CI): a root test that cannot run fails instead of skipping.
bool RootTestsRequired();

// First statement of a test that needs root: skips loudly with the reason, or fails in CI.
#define TCPSCOPE_REQUIRE_ROOT()                                                            \
  if (const std::string reason = ::tcpscope::testing::RootTestsUnavailableReason();        \
      !reason.empty()) {                                                                   \
    if (::tcpscope::testing::RootTestsRequired()) {                                        \
      FAIL() << "TCPSCOPE_REQUIRE_ROOT_TESTS is set but this test cannot run: " << reason; \
    }                                                                                      \
    GTEST_SKIP() << "needs root: " << reason;                                              \
  }

class TestNetns {
 public:
  // Creates "tcpscope-<tag>-<pid>" with its loopback up.
  static absl::StatusOr<std::unique_ptr<TestNetns>> Create(const std::string& tag);
  ~TestNetns();  // ip netns del

  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }

  // Runs `fn` on a thread that has entered the namespace: sockets it creates live there.
  absl::Status RunInside(const std::function<void()>& fn) const;

 private:
  explicit TestNetns(std::string name) : name_(std::move(name)) {}
  std::string name_;
};

}  // namespace tcpscope::testing
