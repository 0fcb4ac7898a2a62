// Decoding of the eBPF program's ring-buffer records into events.
#include "agent/bpf_event_decoder.h"

#include <sys/socket.h>

#include <cstring>
#include <variant>

#include "gtest/gtest.h"
#include "tcpscope/v1/event_kinds.h"

namespace tcpscope::agent {
namespace {

constexpr int64_t kOffset = 1700000000LL * 1000000000LL;

tcpscope_event Record(uint8_t kind) {
  tcpscope_event raw;
  std::memset(&raw, 0, sizeof(raw));
  raw.kind = kind;
  raw.time_ns = 5000;
  raw.cookie = 77;
  raw.netns_ino = 4026531840u;
  raw.family = AF_INET;
  raw.sport = 40000;
  raw.dport = 80;
  const uint8_t local[4] = {198, 18, 0, 1}, remote[4] = {198, 18, 0, 2};
  std::memcpy(raw.saddr, local, 4);
  std::memcpy(raw.daddr, remote, 4);
  raw.role = 1;
  return raw;
}

struct Decoded {
  v1::Event event;
  KernelEvent kernel;
};

Decoded DecodeKernelEvent(const tcpscope_event& raw) {
  Decoded decoded;
  absl::StatusOr<BpfRecord> record = DecodeBpfRecord(&raw, sizeof(raw), kOffset, &decoded.event);
  EXPECT_TRUE(record.ok()) << record.status();
  if (!record.ok() || !std::holds_alternative<KernelEvent>(*record)) {
    ADD_FAILURE() << "not an event";
    return {};
  }
  decoded.kernel = std::get<KernelEvent>(*record);
  return decoded;
}

v1::Event Decode(const tcpscope_event& raw) { return DecodeKernelEvent(raw).event; }

bool Decodes(const tcpscope_event& raw, size_t size) {
  v1::Event event;
  return DecodeBpfRecord(&raw, size, 0, &event).ok();
}

TEST(BpfEventDecoderTest, Handshake) {
  tcpscope_event raw = Record(TCPSCOPE_EVENT_HANDSHAKE);
  raw.duration_ns = 250000;
  raw.flags = TCPSCOPE_FLAG_DURATION_KNOWN;
  raw.pid = 42;
  std::strcpy(raw.comm, "curl");
  const v1::Event event = Decode(raw);
  EXPECT_EQ(event.time_unix_ns(), static_cast<uint64_t>(kOffset + 5000));
  EXPECT_EQ(event.connection_id(), 77u);
  EXPECT_EQ(event.role(), v1::ROLE_CLIENT);
  EXPECT_EQ(event.origin().netns_inode(), 4026531840u);
  EXPECT_EQ(event.origin().pid(), 42u);
  EXPECT_EQ(event.origin().command(), "curl");
  EXPECT_EQ(event.endpoints().local_address(), std::string("\xc6\x12\x00\x01", 4));
  EXPECT_EQ(event.endpoints().remote_port(), 80u);
  EXPECT_EQ(event.handshake().duration_us(), 250u);
}

TEST(BpfEventDecoderTest, CloseCarriesClassificationAndStats) {
  tcpscope_event raw = Record(TCPSCOPE_EVENT_CLOSE);
  raw.initiator = v1::CLOSE_INITIATOR_REMOTE;
  raw.reason = v1::CLOSE_REASON_KEEPALIVE_RESET;
  raw.last_state = 1;
  raw.error = 104;
  raw.bytes_acked = 1000;
  raw.bytes_received = 2000;
  raw.total_retrans = 3;
  raw.srtt_us = 120;
  const v1::Event event = Decode(raw);
  const v1::Close& close = event.close();
  EXPECT_EQ(close.initiator(), v1::CLOSE_INITIATOR_REMOTE);
  EXPECT_EQ(close.reason(), v1::CLOSE_REASON_KEEPALIVE_RESET);
  EXPECT_FALSE(close.has_lifetime_us());  // duration flag not set: started before attach
  EXPECT_EQ(close.bytes_sent(), 1000u);
  EXPECT_EQ(close.bytes_received(), 2000u);
  EXPECT_EQ(close.retransmits(), 3u);
  EXPECT_EQ(close.srtt_us(), 120u);
  EXPECT_EQ(close.last_state(), v1::TCP_STATE_ESTABLISHED);
  EXPECT_EQ(close.error(), 104);
}

TEST(BpfEventDecoderTest, UnknownEnumValuesBecomeOther) {
  tcpscope_event raw = Record(TCPSCOPE_EVENT_CLOSE);
  raw.initiator = 200;
  raw.reason = 0;
  const v1::Event event = Decode(raw);
  EXPECT_EQ(event.close().initiator(), v1::CLOSE_INITIATOR_UNKNOWN);
  EXPECT_EQ(event.close().reason(), v1::CLOSE_REASON_OTHER);
  raw = Record(TCPSCOPE_EVENT_HANDSHAKE_FAILED);
  raw.reason = 99;
  EXPECT_EQ(Decode(raw).handshake_failed().reason(), v1::HANDSHAKE_FAILURE_OTHER);
}

TEST(BpfEventDecoderTest, KeepaliveKinds) {
  tcpscope_event raw = Record(TCPSCOPE_EVENT_KEEPALIVE_PROBE);
  raw.probes = 2;
  raw.idle_ms = 3000;
  v1::Event event = Decode(raw);
  EXPECT_EQ(event.keepalive_probe().probe_number(), 2u);
  EXPECT_EQ(event.keepalive_probe().idle_ms(), 3000u);

  raw = Record(TCPSCOPE_EVENT_KEEPALIVE_TIMEOUT);
  raw.probes = 3;
  raw.keepalive_idle_s = 2;
  raw.keepalive_intvl_s = 1;
  raw.keepalive_count = 3;
  raw.error = 113;
  event = Decode(raw);
  EXPECT_EQ(event.keepalive_timeout().probes_sent(), 3u);
  EXPECT_EQ(event.keepalive_timeout().idle_s(), 2u);
  EXPECT_EQ(event.keepalive_timeout().interval_s(), 1u);
  EXPECT_EQ(event.keepalive_timeout().count(), 3u);
  EXPECT_EQ(event.keepalive_timeout().error(), 113);

  raw = Record(TCPSCOPE_EVENT_KEEPALIVE_ANSWERED);
  raw.probes = 1;
  EXPECT_EQ(Decode(raw).keepalive_answered().probes_outstanding(), 1u);
}

TEST(BpfEventDecoderTest, Ipv6AndHandshakeFailure) {
  tcpscope_event raw = Record(TCPSCOPE_EVENT_HANDSHAKE_FAILED);
  raw.family = AF_INET6;
  raw.saddr[15] = 1;
  raw.reason = v1::HANDSHAKE_FAILURE_TIMEOUT;
  raw.probes = 1;
  raw.error = 110;
  const v1::Event event = Decode(raw);
  EXPECT_EQ(event.endpoints().local_address().size(), 16u);
  EXPECT_EQ(event.handshake_failed().reason(), v1::HANDSHAKE_FAILURE_TIMEOUT);
  EXPECT_EQ(event.handshake_failed().syn_retransmits(), 1u);
  EXPECT_EQ(event.handshake_failed().error(), 110);
}

TEST(BpfEventDecoderTest, V4MappedAddressesBecomeIpv4) {
  tcpscope_event raw = Record(TCPSCOPE_EVENT_HANDSHAKE);
  raw.family = AF_INET6;
  const uint8_t local[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
  const uint8_t remote[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2};
  std::memcpy(raw.saddr, local, 16);
  std::memcpy(raw.daddr, remote, 16);
  const v1::Event event = Decode(raw);
  EXPECT_EQ(event.endpoints().local_address(), std::string("\x7f\0\0\x01", 4));
  EXPECT_EQ(event.endpoints().remote_address(), std::string("\x7f\0\0\x02", 4));
}

// Each kind the program emits decodes to the oneof member of the EventKind with its number.
TEST(BpfEventDecoderTest, EveryKernelKindIsItsProtoKind) {
#define TCPSCOPE_EXPECT_KIND(name, number) \
  EXPECT_EQ(v1::KindOf(Decode(Record(TCPSCOPE_EVENT_##name))), v1::EVENT_KIND_##name) << #name;
  TCPSCOPE_EVENT_KINDS(TCPSCOPE_EXPECT_KIND)
#undef TCPSCOPE_EXPECT_KIND
}

TEST(BpfEventDecoderTest, RefusesMalformedRecords) {
  tcpscope_event raw = Record(TCPSCOPE_EVENT_CLOSE);
  EXPECT_FALSE(Decodes(raw, sizeof(raw) - 1));
  raw.family = 17;
  EXPECT_FALSE(Decodes(raw, sizeof(raw)));
  raw = Record(99);
  EXPECT_FALSE(Decodes(raw, sizeof(raw)));
  raw = Record(TCPSCOPE_EVENT_HANDSHAKE);
  std::memset(raw.comm, 0x01, sizeof(raw.comm));  // no terminator, unprintable
  raw.pid = 1;
  EXPECT_EQ(Decode(raw).origin().command(), std::string(16, '?'));
}

// The records that are not events decode to their facts, whatever their address family.
TEST(BpfEventDecoderTest, FactsThatAreNotEvents) {
  tcpscope_event raw = Record(TCPSCOPE_EVENT_FIN_SENT);
  raw.family = 0;
  raw.pid = 42;
  raw.cgroup_id = 9;
  std::memcpy(raw.comm, "nginx", 6);
  v1::Event unused;
  absl::StatusOr<BpfRecord> record = DecodeBpfRecord(&raw, sizeof(raw), kOffset, &unused);
  ASSERT_TRUE(record.ok()) << record.status();
  const FinSent* fin = std::get_if<FinSent>(&*record);
  ASSERT_NE(fin, nullptr);
  EXPECT_EQ(fin->connection_id, 77u);
  EXPECT_EQ(fin->time, absl::FromUnixNanos(kOffset + 5000));
  EXPECT_EQ(fin->pid, 42u);
  EXPECT_EQ(fin->cgroup_id, 9u);
  EXPECT_EQ(fin->command, "nginx");

  raw = Record(TCPSCOPE_EVENT_RESET_ANSWERED);
  raw.family = 0;
  record = DecodeBpfRecord(&raw, sizeof(raw), kOffset, &unused);
  ASSERT_TRUE(record.ok()) << record.status();
  ASSERT_TRUE(std::holds_alternative<ResetAnswered>(*record));
  EXPECT_EQ(std::get<ResetAnswered>(*record).connection_id, 77u);
  EXPECT_FALSE(Decodes(raw, sizeof(raw) - 1));
}

// A close whose RST came while reading was shut down says so, for the source to hold it.
TEST(BpfEventDecoderTest, CloseThatMayBeTheKernelsOwnReset) {
  tcpscope_event raw = Record(TCPSCOPE_EVENT_CLOSE);
  raw.reason = TCPSCOPE_REASON_RESET_RECEIVED;
  EXPECT_FALSE(DecodeKernelEvent(raw).kernel.reset_maybe_sent);
  raw.flags = TCPSCOPE_FLAG_RESET_MAYBE_SENT;
  const Decoded decoded = DecodeKernelEvent(raw);
  EXPECT_TRUE(decoded.kernel.reset_maybe_sent);
  EXPECT_EQ(decoded.kernel.monotonic_ns, 5000u);
  EXPECT_EQ(decoded.event.close().reason(), v1::CLOSE_REASON_RESET_RECEIVED);
}

// Found by bpf_event_decoder_fuzzer: a garbage time plus the clock offset overflowed int64
// (undefined behaviour). It wraps now, to a time the service refuses.
TEST(BpfEventDecoderTest, GarbageTimeDoesNotOverflow) {
  tcpscope_event raw = Record(TCPSCOPE_EVENT_HANDSHAKE);
  raw.time_ns = 0x7400'4e94'914f'0000ULL;
  EXPECT_EQ(Decode(raw).time_unix_ns(), raw.time_ns + static_cast<uint64_t>(kOffset));
  raw.time_ns = ~0ULL;
  EXPECT_EQ(Decode(raw).time_unix_ns(), static_cast<uint64_t>(kOffset) - 1);
}

}  // namespace
}  // namespace tcpscope::agent
