// The agent's handling of ring records, as the eBPF and replay sources share it: events into the
// batch, facts to where they belong, the TCPAbortOnData hold, roles, undecodable records counted,
// and every raw record captured when asked.
#include "agent/ring_records.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "agent/bpf/tcpscope_event.h"
#include "gtest/gtest.h"

namespace tcpscope::agent {
namespace {

constexpr int64_t kOffset = 1700000000LL * 1000000000LL;
constexpr uint64_t kMs = 1000000;

tcpscope_event Record(uint8_t kind, uint64_t cookie, uint64_t time_ns) {
  tcpscope_event raw;
  std::memset(&raw, 0, sizeof(raw));
  raw.kind = kind;
  raw.time_ns = time_ns;
  raw.cookie = cookie;
  raw.family = AF_INET;
  raw.role = TCPSCOPE_ROLE_SERVER;
  return raw;
}

tcpscope_event FlaggedClose(uint64_t cookie, uint64_t time_ns) {
  tcpscope_event raw = Record(TCPSCOPE_EVENT_CLOSE, cookie, time_ns);
  raw.reason = TCPSCOPE_REASON_RESET_RECEIVED;
  raw.initiator = TCPSCOPE_INITIATOR_LOCAL;
  raw.flags = TCPSCOPE_FLAG_RESET_MAYBE_SENT;
  return raw;
}

class RingRecordsTest : public ::testing::Test {
 protected:
  void Add(const tcpscope_event& raw) { records_.Add(&raw, sizeof(raw), kOffset); }

  AgentMetrics metrics_{"test-host"};
  FinTimes fin_times_;
  RingRecords records_{&metrics_, &fin_times_, [](uint64_t id) {
                         return id == 99 ? v1::ROLE_CLIENT : v1::ROLE_UNSPECIFIED;
                       }};
};

TEST_F(RingRecordsTest, EventsGoToTheBatchAndFactsElsewhere) {
  Add(Record(TCPSCOPE_EVENT_HANDSHAKE, 1, 10 * kMs));
  Add(Record(TCPSCOPE_EVENT_FIN_SENT, 1, 11 * kMs));
  ASSERT_EQ(records_.pending().events_size(), 1);
  EXPECT_EQ(records_.pending().events(0).time_unix_ns(), kOffset + 10 * kMs);
  EXPECT_EQ(fin_times_.size(), 1u);
}

TEST_F(RingRecordsTest, RoleTheProgramDidNotSeeComesFromTheSourceOrStaysUnknown) {
  tcpscope_event raw = Record(TCPSCOPE_EVENT_CLOSE, 99, kMs);
  raw.role = TCPSCOPE_ROLE_UNKNOWN;
  Add(raw);
  raw.cookie = 100;
  Add(raw);
  ASSERT_EQ(records_.pending().events_size(), 2);
  EXPECT_EQ(records_.pending().events(0).role(), v1::ROLE_CLIENT);
  EXPECT_EQ(records_.pending().events(1).role(), v1::ROLE_UNSPECIFIED);
}

TEST_F(RingRecordsTest, AnsweredCloseIsResetSentUnansweredIsReceivedAfterTheWindow) {
  Add(FlaggedClose(1, 100 * kMs));
  Add(FlaggedClose(2, 100 * kMs));
  EXPECT_EQ(records_.pending().events_size(), 0);  // held
  Add(Record(TCPSCOPE_EVENT_RESET_ANSWERED, 1, 100 * kMs + 3000));
  ASSERT_EQ(records_.pending().events_size(), 1);
  EXPECT_EQ(records_.pending().events(0).close().reason(), v1::CLOSE_REASON_RESET_SENT);
  records_.Drained(101 * kMs);  // the answer could still be on its way
  EXPECT_EQ(records_.pending().events_size(), 1);
  records_.Drained(100 * kMs + absl::ToInt64Nanoseconds(AbortOnDataCloses::kAnswerWithin));
  ASSERT_EQ(records_.pending().events_size(), 2);
  EXPECT_EQ(records_.pending().events(1).connection_id(), 2u);
  EXPECT_EQ(records_.pending().events(1).close().reason(), v1::CLOSE_REASON_RESET_RECEIVED);
}

TEST_F(RingRecordsTest, UndecodableRecordIsCountedAsAnAgentLoss) {
  tcpscope_event raw = Record(TCPSCOPE_EVENT_HANDSHAKE, 1, kMs);
  records_.Add(&raw, sizeof(raw) - 1, kOffset);
  raw.kind = 99;
  Add(raw);
  EXPECT_EQ(records_.pending().events_size(), 0);
  EXPECT_EQ(metrics_.events_dropped_agent.Value(), 2);
}

TEST(RingRecordsCaptureTest, EveryRawRecordIsCaptured) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/ring_records_", getpid());
  AgentMetrics metrics("test-host");
  FinTimes fin_times;
  {
    auto writer = RingCaptureWriter::Create(path, kOffset);
    ASSERT_TRUE(writer.ok()) << writer.status();
    RingRecords records(&metrics, &fin_times, {}, nullptr, std::move(*writer));
    const tcpscope_event handshake = Record(TCPSCOPE_EVENT_HANDSHAKE, 1, kMs);
    const tcpscope_event fin = Record(TCPSCOPE_EVENT_FIN_SENT, 1, 2 * kMs);
    records.Add(&handshake, sizeof(handshake), kOffset);
    records.Add(&fin, sizeof(fin), kOffset);
    records.Add("junk", 4, kOffset);  // captured as read, even when it does not decode
    records.Drained(3 * kMs);
  }
  auto reader = RingCaptureReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->monotonic_to_unix_ns(), kOffset);
  std::vector<size_t> sizes;
  for (auto record = (*reader)->Next(); record.ok() && record->has_value();
       record = (*reader)->Next()) {
    sizes.push_back((*record)->size());
  }
  EXPECT_EQ(sizes, (std::vector<size_t>{sizeof(tcpscope_event), sizeof(tcpscope_event), 4}));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace tcpscope::agent
