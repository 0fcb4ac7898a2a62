// The replay source end to end without root: a ring capture written here, record by record as
// the kernel side writes them, played by tcpscope-agent --source=replay:FILE into
// tcpscope-service; the service's counts must be exactly what the records say, through the same
// record handling as the live eBPF source (the TCPAbortOnData hold included).
#include <sys/socket.h>

#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "agent/bpf/tcpscope_event.h"
#include "agent/ring_capture.h"
#include "gtest/gtest.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/tcpscope_stack.h"

namespace tcpscope::testing {
namespace {

constexpr uint64_t kMillisecond = 1000000;
constexpr int64_t kMonotonicToUnixNs = 1700000000LL * 1000000000LL;

tcpscope_event Record(uint8_t kind, uint64_t cookie, uint64_t time_ns, uint8_t role) {
  tcpscope_event raw;
  std::memset(&raw, 0, sizeof(raw));
  raw.kind = kind;
  raw.time_ns = time_ns;
  raw.cookie = cookie;
  raw.netns_ino = 4026531840u;
  raw.family = AF_INET;
  raw.role = role;
  const bool server = role == TCPSCOPE_ROLE_SERVER;
  raw.sport = server ? 8080 : 40000;
  raw.dport = server ? 40000 : 8080;
  const uint8_t address[4] = {127, 0, 0, 1};
  std::memcpy(raw.saddr, address, 4);
  std::memcpy(raw.daddr, address, 4);
  return raw;
}

tcpscope_event Close(uint64_t cookie, uint64_t time_ns, uint8_t role, uint8_t initiator) {
  tcpscope_event raw = Record(TCPSCOPE_EVENT_CLOSE, cookie, time_ns, role);
  raw.initiator = initiator;
  raw.reason = TCPSCOPE_REASON_RESET_RECEIVED;
  raw.flags = TCPSCOPE_FLAG_RESET_MAYBE_SENT;  // both RSTs came while reading was shut down
  raw.last_state = role == TCPSCOPE_ROLE_SERVER ? 5 : 8;  // FIN_WAIT2, CLOSE_WAIT
  raw.error = 104;
  return raw;
}

TEST(ReplayIntegrationTest, ReplayedCaptureGivesExactlyItsEvents) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/replay_", getpid(), ".ring");
  {
    auto writer = agent::RingCaptureWriter::Create(path, kMonotonicToUnixNs);
    ASSERT_TRUE(writer.ok()) << writer.status();
    const uint64_t t = 1000 * kMillisecond;
    const tcpscope_event records[] = {
        Record(TCPSCOPE_EVENT_HANDSHAKE, 1, t, TCPSCOPE_ROLE_SERVER),
        Record(TCPSCOPE_EVENT_HANDSHAKE, 2, t, TCPSCOPE_ROLE_CLIENT),
        Record(TCPSCOPE_EVENT_FIN_SENT, 1, t + kMillisecond, 0),  // not an event
        // Data reached the server end after its shutdown: the kernel reset it (the flagged
        // close), answered with an RST (the answer record), and the client received it.
        Close(1, t + 100 * kMillisecond, TCPSCOPE_ROLE_SERVER, TCPSCOPE_INITIATOR_LOCAL),
        Record(TCPSCOPE_EVENT_RESET_ANSWERED, 1, t + 100 * kMillisecond + 5000, 0),
        Close(2, t + 100 * kMillisecond + 20000, TCPSCOPE_ROLE_CLIENT, TCPSCOPE_INITIATOR_REMOTE),
        // A second later (the client's close is long released as received by then).
        Record(TCPSCOPE_EVENT_HANDSHAKE, 3, t + 1100 * kMillisecond, TCPSCOPE_ROLE_CLIENT),
    };
    for (const tcpscope_event& record : records) {
      ASSERT_TRUE((*writer)->Append(&record, sizeof(record)).ok());
    }
    ASSERT_TRUE((*writer)->Flush().ok());
  }

  auto stack = TcpscopeStack::Start("ReplayIntegrationTest");
  ASSERT_TRUE(stack.ok()) << stack.status();
  ASSERT_TRUE((*stack)->AddAgent("replayed", "", {"--source=replay:" + path}).ok());
  EXPECT_EQ((*stack)->WaitForValue("tcpscope_closes_total",
                                   {{"host", "replayed"},
                                    {"role", "server"},
                                    {"initiator", "local"},
                                    {"reason", "reset_sent"}},
                                   1),
            1);
  EXPECT_EQ((*stack)->WaitForValue("tcpscope_closes_total",
                                   {{"host", "replayed"},
                                    {"role", "client"},
                                    {"initiator", "remote"},
                                    {"reason", "reset_received"}},
                                   1),
            1);
  const std::string m = (*stack)->Scrape();
  EXPECT_EQ(MetricSum(m, "tcpscope_closes_total", {}), 2);
  EXPECT_EQ(MetricSum(m, "tcpscope_handshakes_total", {}), 3);
  if (HasFailure()) std::cerr << m << (*stack)->Logs();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace tcpscope::testing
