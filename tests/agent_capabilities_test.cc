// The agent keeps exactly the capabilities it needs (every thread, every set), refuses
// --source=ebpf without the eBPF ones, and says what a missing one costs.
#include <signal.h>

#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "agent/capabilities.h"
#include "gtest/gtest.h"
#include "tests/harness/netns.h"
#include "tests/harness/process.h"

namespace tcpscope::agent {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;
using testing::Subprocess;

uint64_t NeededMask() {
  uint64_t mask = 0;
  for (const Capability& capability : NeededCapabilities()) mask |= 1ULL << capability.number;
  return mask;
}

// The value of `field` ("CapEff") in a /proc status file.
uint64_t CapabilityField(const std::string& status_path, absl::string_view field) {
  std::ifstream status(status_path);
  for (std::string line; std::getline(status, line);) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, field) || !absl::ConsumePrefix(&rest, ":")) continue;
    uint64_t mask = 0;
    if (absl::SimpleHexAtoi(absl::StripAsciiWhitespace(rest), &mask)) return mask;
  }
  return ~0ULL;
}

TEST(CapabilitiesTest, MissingOnesAreNamedWithTheirReason) {
  EXPECT_TRUE(MissingCapabilities(NeededMask()).empty());
  const std::vector<std::string> missing = MissingCapabilities(NeededMask() & ~(1ULL << 34));
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_TRUE(absl::StartsWith(missing[0], "CAP_SYSLOG (read tcp_keepalive_timer")) << missing[0];
  // CAP_SYS_ADMIN covers CAP_BPF and CAP_PERFMON (Docker before 23 cannot add them by name).
  EXPECT_TRUE(MissingCapabilities(NeededMask() & ~(1ULL << 38) & ~(1ULL << 39)).empty());
  const std::vector<std::string> without_admin =
      MissingCapabilities(NeededMask() & ~(1ULL << 21) & ~(1ULL << 39));
  ASSERT_EQ(without_admin.size(), 2u);
  EXPECT_TRUE(absl::StartsWith(without_admin[0], "CAP_BPF (")) << without_admin[0];
  EXPECT_TRUE(absl::StartsWith(without_admin[1], "CAP_SYS_ADMIN (")) << without_admin[1];
  EXPECT_TRUE(CanLoadBpf(1ULL << 21));                   // CAP_SYS_ADMIN
  EXPECT_TRUE(CanLoadBpf((1ULL << 38) | (1ULL << 39)));  // CAP_PERFMON + CAP_BPF
  EXPECT_FALSE(CanLoadBpf(1ULL << 39));
}

TEST(CapabilitiesTest, EveryAgentThreadKeepsExactlyTheNeededCapabilities) {
  TCPSCOPE_REQUIRE_ROOT();
  auto agent = Subprocess::Start(
      {BinaryPath("tcpscope-agent"), "--service=127.0.0.1:1",
       "--metrics_listen=", "--source=sockdiag", "--host_name=caps", "--drain_timeout=0s"},
      ::testing::TempDir() + "/caps-agent.log");
  ASSERT_TRUE(agent.ok()) << agent.status();
  absl::SleepFor(absl::Milliseconds(500));  // its threads are up
  const std::string task_dir = absl::StrCat("/proc/", (*agent)->pid(), "/task");
  const CommandResult tasks = RunCommand("ls " + task_dir);
  int threads = 0;
  for (absl::string_view tid : absl::StrSplit(tasks.output, '\n', absl::SkipEmpty())) {
    const std::string status = absl::StrCat(task_dir, "/", tid, "/status");
    for (const char* set : {"CapEff", "CapPrm", "CapBnd"}) {
      EXPECT_EQ(CapabilityField(status, set), NeededMask()) << set << " of thread " << tid;
    }
    EXPECT_EQ(CapabilityField(status, "CapInh"), 0u);
    ++threads;
  }
  EXPECT_GT(threads, 1);  // the checks covered the threads started after the drop
  EXPECT_EQ((*agent)->Stop(), 0);
}

TEST(CapabilitiesTest, WithoutEbpfCapabilitiesTheEbpfSourceIsRefused) {
  TCPSCOPE_REQUIRE_ROOT();
  const CommandResult result =
      RunCommand("setpriv --bounding-set=-bpf,-perfmon,-sys_admin --inh-caps=-all -- " +
                 BinaryPath("tcpscope-agent") +
                 " --service=127.0.0.1:1 --metrics_listen= --source=ebpf --host_name=caps 2>&1");
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_TRUE(absl::StrContains(result.output, "--source=ebpf needs CAP_BPF and CAP_PERFMON"))
      << result.output;
}

TEST(CapabilitiesTest, AMissingCapabilityIsReportedWithWhatItCosts) {
  TCPSCOPE_REQUIRE_ROOT();
  auto agent = Subprocess::Start(
      {"/usr/bin/setpriv", "--bounding-set=-syslog", "--inh-caps=-all", "--",
       BinaryPath("tcpscope-agent"), "--service=127.0.0.1:1",
       "--metrics_listen=", "--source=sockdiag", "--host_name=caps", "--drain_timeout=0s"},
      ::testing::TempDir() + "/caps-nosyslog.log");
  ASSERT_TRUE(agent.ok()) << agent.status();
  EXPECT_TRUE((*agent)->WaitForLog("without CAP_SYSLOG (read tcp_keepalive_timer's address",
                                   absl::Seconds(5)))
      << (*agent)->Log();
  (*agent)->Stop();
}

}  // namespace
}  // namespace tcpscope::agent
