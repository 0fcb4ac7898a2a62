// 1000 concurrent agent streams for a minute against the real service (issue 5), with a slow
// `events --follow` subscriber (stopped with SIGSTOP, let run for 100 ms every 5 s): no stream
// fails, every acknowledged event is counted exactly once, the service's memory stays bounded,
// and the slow subscriber stays connected and is told what it missed. Streams come from bench's
// tcpscope-ingest-load. (A subscriber that reads nothing for over 20 s is disconnected by gRPC's
// TCP_USER_TIMEOUT once its window is full: the service protects itself from it too.)
#include <signal.h>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/process.h"
#include "tests/harness/tcpscope_stack.h"

namespace tcpscope::testing {
namespace {

constexpr int kAgents = 1000;
constexpr int kSeconds = 60;
constexpr double kMemoryBoundMiB = 1024;

// Resident memory of a process in MiB, 0 when it cannot be read.
double ResidentMiB(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(status, line);) {
    if (!absl::StartsWith(line, "VmRSS:")) continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, ' ', absl::SkipEmpty());  // "VmRSS:", "123", "kB"
    double kib = 0;
    if (fields.size() >= 2 && absl::SimpleAtod(fields[1], &kib)) return kib / 1024;
  }
  return 0;
}

// The number after `"key":` in a JSON line.
double JsonNumber(const std::string& json, const std::string& key) {
  const std::string marker = absl::StrCat("\"", key, "\":");
  const size_t at = json.find(marker);
  if (at == std::string::npos) return -1;
  double value = -1;
  const size_t start = at + marker.size();
  const size_t end = json.find_first_of(",}", start);
  (void)absl::SimpleAtod(json.substr(start, end - start), &value);
  return value;
}

TEST(ScaleTest, ThousandAgentStreamsForAMinuteWithASlowFollower) {
  auto stack = TcpscopeStack::Start("scale", {"--max_events_per_second=0"});
  ASSERT_TRUE(stack.ok()) << stack.status();
  TcpscopeStack& service = **stack;
  ASSERT_TRUE(service.WatchEvents().ok());
  // The follower subscribes...
  ASSERT_EQ(service.WaitForValue("tcpscope_service_event_watchers", {}, 1), 1);
  const pid_t follower = service.watcher_pid();
  ASSERT_EQ(kill(follower, SIGSTOP), 0);  // ...and then reads nothing

  const std::string load_log = ::testing::TempDir() + "/scale-load.json";
  auto load =
      Subprocess::Start({BinaryPath("bench/tcpscope-ingest-load"),
                         absl::StrCat("--target=127.0.0.1:", service.grpc_port()),
                         absl::StrCat("--agents=", kAgents), "--batch_size=16", "--window=4",
                         absl::StrCat("--duration=", kSeconds, "s"), "--connect_timeout=60s"},
                        load_log);
  ASSERT_TRUE(load.ok()) << load.status();

  double max_rss = 0;
  int max_streams = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(kSeconds + 90);
  for (int second = 1; (*load)->Running() && absl::Now() < deadline; ++second) {
    max_rss = std::max(max_rss, ResidentMiB(service.service().pid()));
    const std::optional<double> streams =
        MetricValue(service.Scrape(), "tcpscope_service_ingest_streams", {});
    max_streams = std::max(max_streams, static_cast<int>(streams.value_or(0)));
    if (second % 5 == 0) {  // the slow follower reads for a moment
      kill(follower, SIGCONT);
      absl::SleepFor(absl::Milliseconds(100));
      kill(follower, SIGSTOP);
    }
    absl::SleepFor(absl::Seconds(1));
  }
  ASSERT_FALSE((*load)->Running()) << "the load did not finish";
  const int load_status = (*load)->Stop();
  const std::string result = (*load)->Log();
  EXPECT_TRUE(WIFEXITED(load_status) && WEXITSTATUS(load_status) == 0) << result;
  EXPECT_EQ(JsonNumber(result, "failed_streams"), 0) << result;
  EXPECT_TRUE(absl::StrContains(result, "\"error\":null")) << result;
  const double sent = JsonNumber(result, "events_sent");
  const double acked = JsonNumber(result, "events_acked");
  EXPECT_GT(acked, 0);
  EXPECT_EQ(acked, sent);
  EXPECT_EQ(max_streams, kAgents);

  // Every acknowledged event was applied once; the stalled follower cost ingestion nothing
  // but its bounded queue, and what it missed is counted.
  const std::string m = service.Scrape();
  EXPECT_EQ(MetricSum(m, "tcpscope_agent_events_total", {}), acked);
  EXPECT_EQ(MetricSum(m, "tcpscope_agent_up", {}), 0);  // all disconnected again
  EXPECT_EQ(MetricValue(m, "tcpscope_service_hosts", {}), kAgents);
  const double missed =
      MetricValue(m, "tcpscope_service_watch_events_missed_total", {}).value_or(0);
  EXPECT_GT(missed, 0);
  EXPECT_LT(max_rss, kMemoryBoundMiB);
  std::cerr << "scale: " << kAgents << " streams for " << kSeconds << " s: " << acked
            << " events acknowledged and counted (" << JsonNumber(result, "events_per_s")
            << "/s), service RSS at most " << max_rss << " MiB, slow follower missed " << missed
            << "\n";

  // Resumed, the follower is still connected and is told how much it missed.
  ASSERT_EQ(kill(follower, SIGCONT), 0);
  const absl::Time resumed = absl::Now();
  while (!absl::StrContains(service.WatcherLog(), "missed") &&
         absl::Now() - resumed < absl::Seconds(30)) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(absl::StrContains(service.WatcherLog(), "tcpscope: missed "));
  EXPECT_FALSE(absl::StrContains(service.WatcherLog(), "lost the stream"));
  EXPECT_EQ(MetricValue(service.Scrape(), "tcpscope_service_event_watchers", {}), 1);
}

}  // namespace
}  // namespace tcpscope::testing
