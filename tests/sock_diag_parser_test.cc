// Unit tests for ParseDumpBuffer: replies recorded from a 6.18 kernel (`ss -tieo` equivalents)
// plus hand-broken variants, so every bounds check is exercised without a kernel.
#include "agent/sock_diag_parser.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <sys/socket.h>

#include <array>
#include <climits>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tcpscope::agent {
namespace {

using ::testing::HasSubstr;

// Recorded with idiag_states ~0 and INET_DIAG_INFO requested; one SOCK_DIAG_BY_FAMILY message
// each. The kernel's tcp_info attribute is 280 bytes, longer than the 232-byte struct in the
// 6.1 uapi headers, so these also cover "newer kernel than headers".

// 127.0.0.1:44390 -> 127.0.0.1:57769, established, after 6 bytes sent and 3 received.
constexpr char kIpv4Client[] =
    "98010000140002004d0000000c14000002010000ad66e1a97f000001000000000000000000000000"
    "7f000001000000000000000000000000000000001c10000000000000000000000000000000000000"
    "00000000b22a0000050008000000000008000f00000000000c001500010000000000000006001600"
    "520000001c010200010000000007aa01e01c0300409c000000800000180200000000000000000000"
    "00000000000000000000000014000000000000001400000014000000ffff0000d7ff000020000000"
    "12000000ffffff7f0b000000cbff00000300000000000000d7ff000000000000efb4340d06000000"
    "ffffffffffffffff060000000000000003000000000000000400000003000000000000000b000000"
    "0100000001000000a28b8eb100000000000000000000000000000000000000000000000000000000"
    "02000000000000000500000000000000000000000000000000000000000000000000000000000100"
    "00000100000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000";

// 127.0.0.1:44406 -> 127.0.0.1:57769 with SO_KEEPALIVE and TCP_KEEPIDLE=600.
constexpr char kKeepaliveClient[] =
    "98010000140002004d0000000c14000002010200ad76e1a97f000001000000000000000000000000"
    "7f000001000000000000000000000000000000001d10000000000000ac2709000000000000000000"
    "00000000b42a0000050008000000000008000f00000000000c001500010000000000000006001600"
    "520000001c010200010000000007aa01e01c03000000000000800000180200000000000000000000"
    "00000000000000000000000014000000000000001400000014000000ffff0000d7ff000007000000"
    "03000000ffffff7f0b000000cbff00000300000000000000d7ff000000000000757a6d3b1b000000"
    "ffffffffffffffff0300000000000000000000000000000003000000020000000000000005000000"
    "00000000010000000000a08601000000000000000000000000000000000000000000000000000000"
    "02000000000000000200000000000000000000000000000000000000000000000000000000000100"
    "00000100000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000";

// Listener on 127.0.0.1:57769, backlog 8.
constexpr char kIpv4Listener[] =
    "98010000140002004d0000000c140000020a0000e1a900007f000001000000000000000000000000"
    "00000000000000000000000000000000000000001910000000000000000000000000000008000000"
    "00000000b02a0000050008000000000008000f00000000000c001500010000000000000006001600"
    "520000001c0102000a00000000000000000000000000000000000000000000000000000008000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000a0000000000000003000000000000000000000000000000ffffffffffffffff"
    "ffffffffffffffff0000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000";

// 127.0.0.1:44418 -> 127.0.0.1:57769 in TIME_WAIT: a timewait sock, so no tcp_info and no inode.
constexpr char kTimeWait[] =
    "60000000140002004d0000000c14000002060300ad82e1a97f000001000000000000000000000000"
    "7f000001000000000000000000000000000000001e100000000000004cea00000000000000000000"
    "000000000000000008000f0000000000";

// [::1]:51070 -> [::1]:55629, established, after 8 bytes sent.
constexpr char kIpv6Client[] =
    "98010000140002004d0000000c1400000a010000c77ed94d00000000000000000000000000000001"
    "00000000000000000000000000000001000000002110000000000000000000000000000000000000"
    "00000000b32a0000050008000000000008000f00000000000c001500010000000000000006001600"
    "120000001c010200010000000007aa01e01c03000000000000800000180200000000000000000000"
    "0000000000000000000000001400000000000000140000001400000000000100c4ff000013000000"
    "0a000000ffffff7f0b000000b8ff00000300000000000000c4ff000000000000c8400d5f0a000000"
    "ffffffffffffffff0800000000000000000000000000000003000000020000000000000005000000"
    "00000000010000000000a08601000000000000000000000000000000000000000000000000000000"
    "02000000000000000700000000000000000000000000000000000000000000000000000000000100"
    "00000100000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000";

// NLMSG_DONE closing the dump, with the kernel's trailing int 0.
constexpr char kDone[] = "14000000030002004d0000000c14000000000000";

std::vector<uint8_t> FromHex(std::string_view hex) {
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return bytes;
}

std::vector<uint8_t> Concat(std::initializer_list<std::string_view> hex_parts) {
  std::vector<uint8_t> bytes;
  for (std::string_view part : hex_parts) {
    const std::vector<uint8_t> decoded = FromHex(part);
    bytes.insert(bytes.end(), decoded.begin(), decoded.end());
  }
  return bytes;
}

template <typename T>
void Store(std::vector<uint8_t>& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(value));
}

// Offsets inside a recorded SOCK_DIAG_BY_FAMILY message.
constexpr size_t kNlmsgLenOffset = offsetof(nlmsghdr, nlmsg_len);
constexpr size_t kFirstAttributeOffset = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(inet_diag_msg));

// Offset of the INET_DIAG_INFO attribute header in a recorded message (always the last one).
size_t FindInfoAttribute(const std::vector<uint8_t>& message) {
  size_t offset = kFirstAttributeOffset;
  while (offset + sizeof(nlattr) <= message.size()) {
    nlattr attr;
    std::memcpy(&attr, message.data() + offset, sizeof(attr));
    if (attr.nla_type == INET_DIAG_INFO) return offset;
    offset += NLA_ALIGN(attr.nla_len);
  }
  ADD_FAILURE() << "fixture has no INET_DIAG_INFO";
  return 0;
}

std::vector<uint8_t> NetlinkMessage(uint16_t type, const std::vector<uint8_t>& payload) {
  nlmsghdr header{};
  header.nlmsg_len = NLMSG_LENGTH(payload.size());
  header.nlmsg_type = type;
  header.nlmsg_seq = 77;
  std::vector<uint8_t> bytes(NLMSG_ALIGN(header.nlmsg_len));
  std::memcpy(bytes.data(), &header, sizeof(header));
  std::copy(payload.begin(), payload.end(), bytes.begin() + NLMSG_HDRLEN);
  return bytes;
}

std::vector<uint8_t> ErrorMessage(int error) {
  nlmsgerr err{};
  err.error = error;
  err.msg.nlmsg_len = NLMSG_LENGTH(sizeof(inet_diag_req_v2));
  err.msg.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  std::vector<uint8_t> payload(sizeof(err));
  std::memcpy(payload.data(), &err, sizeof(err));
  return NetlinkMessage(NLMSG_ERROR, payload);
}

std::array<uint8_t, 16> Ipv4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) { return {a, b, c, d}; }

std::array<uint8_t, 16> Ipv6Loopback() {
  std::array<uint8_t, 16> address{};
  address[15] = 1;
  return address;
}

absl::StatusOr<ParseProgress> Parse(const std::vector<uint8_t>& bytes,
                                    std::vector<SocketRecord>* out) {
  return ParseDumpBuffer(absl::MakeConstSpan(bytes), out);
}

TEST(SockDiagParserTest, Ipv4EstablishedClient) {
  std::vector<SocketRecord> records;
  auto progress = Parse(Concat({kIpv4Client, kDone}), &records);
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_TRUE(progress->done);
  ASSERT_EQ(records.size(), 1u);
  const SocketRecord& r = records[0];
  EXPECT_EQ(r.family, AF_INET);
  EXPECT_EQ(r.state, 1);
  EXPECT_EQ(r.timer, DiagTimer::kNone);
  EXPECT_EQ(r.timer_retrans, 0);
  EXPECT_EQ(r.timer_expires_ms, 0u);
  EXPECT_EQ(r.address_length(), 4u);
  EXPECT_EQ(r.local_address, Ipv4(127, 0, 0, 1));
  EXPECT_EQ(r.remote_address, Ipv4(127, 0, 0, 1));
  EXPECT_EQ(r.local_port, 44390);
  EXPECT_EQ(r.remote_port, 57769);
  EXPECT_EQ(r.cookie, 0x101cu);
  EXPECT_EQ(r.recv_queue, 0u);
  EXPECT_EQ(r.send_queue, 0u);
  EXPECT_EQ(r.uid, 0u);
  EXPECT_EQ(r.inode, 10930u);
  ASSERT_TRUE(r.tcp_info.has_value());
  EXPECT_EQ(r.tcp_info->state, 1);
  EXPECT_EQ(r.tcp_info->probes, 0);
  EXPECT_EQ(r.tcp_info->backoff, 0);
  EXPECT_EQ(r.tcp_info->rtt_us, 32u);
  EXPECT_EQ(r.tcp_info->rttvar_us, 18u);
  EXPECT_EQ(r.tcp_info->last_data_sent_ms, 20u);
  EXPECT_EQ(r.tcp_info->last_data_recv_ms, 20u);
  EXPECT_EQ(r.tcp_info->last_ack_recv_ms, 20u);
  EXPECT_EQ(r.tcp_info->total_retrans, 0u);
  EXPECT_EQ(r.tcp_info->segs_out, 4u);
  EXPECT_EQ(r.tcp_info->segs_in, 3u);
  EXPECT_EQ(r.tcp_info->bytes_acked, 6u);
  EXPECT_EQ(r.tcp_info->bytes_received, 3u);
}

TEST(SockDiagParserTest, Ipv6EstablishedClient) {
  std::vector<SocketRecord> records;
  auto progress = Parse(Concat({kIpv6Client, kDone}), &records);
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_TRUE(progress->done);
  ASSERT_EQ(records.size(), 1u);
  const SocketRecord& r = records[0];
  EXPECT_EQ(r.family, AF_INET6);
  EXPECT_EQ(r.state, 1);
  EXPECT_EQ(r.timer, DiagTimer::kNone);
  EXPECT_EQ(r.address_length(), 16u);
  EXPECT_EQ(r.local_address, Ipv6Loopback());
  EXPECT_EQ(r.remote_address, Ipv6Loopback());
  EXPECT_EQ(r.local_port, 51070);
  EXPECT_EQ(r.remote_port, 55629);
  EXPECT_EQ(r.cookie, 0x1021u);
  EXPECT_EQ(r.inode, 10931u);
  ASSERT_TRUE(r.tcp_info.has_value());
  EXPECT_EQ(r.tcp_info->state, 1);
  EXPECT_EQ(r.tcp_info->rtt_us, 19u);
  EXPECT_EQ(r.tcp_info->rttvar_us, 10u);
  EXPECT_EQ(r.tcp_info->segs_out, 3u);
  EXPECT_EQ(r.tcp_info->segs_in, 2u);
  EXPECT_EQ(r.tcp_info->bytes_acked, 8u);
  EXPECT_EQ(r.tcp_info->bytes_received, 0u);
  EXPECT_EQ(r.tcp_info->last_data_sent_ms, 20u);
}

TEST(SockDiagParserTest, KeepaliveTimer) {
  std::vector<SocketRecord> records;
  auto progress = Parse(Concat({kKeepaliveClient, kDone}), &records);
  ASSERT_TRUE(progress.ok()) << progress.status();
  ASSERT_EQ(records.size(), 1u);
  const SocketRecord& r = records[0];
  EXPECT_EQ(r.state, 1);
  EXPECT_EQ(r.timer, DiagTimer::kKeepalive);
  EXPECT_EQ(r.timer_retrans, 0);           // no keepalive probes outstanding
  EXPECT_EQ(r.timer_expires_ms, 599980u);  // TCP_KEEPIDLE=600 s, counting down
  EXPECT_EQ(r.local_port, 44406);
  EXPECT_EQ(r.remote_port, 57769);
  EXPECT_EQ(r.cookie, 0x101du);
  EXPECT_EQ(r.inode, 10932u);
  ASSERT_TRUE(r.tcp_info.has_value());
  EXPECT_EQ(r.tcp_info->probes, 0);
  EXPECT_EQ(r.tcp_info->rtt_us, 7u);
  EXPECT_EQ(r.tcp_info->rttvar_us, 3u);
  EXPECT_EQ(r.tcp_info->segs_out, 3u);
  EXPECT_EQ(r.tcp_info->bytes_acked, 3u);
}

TEST(SockDiagParserTest, ListenerAndTimeWaitInOneBuffer) {
  std::vector<SocketRecord> records;
  auto progress = Parse(Concat({kIpv4Listener, kTimeWait, kDone}), &records);
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_TRUE(progress->done);
  ASSERT_EQ(records.size(), 2u);

  const SocketRecord& listener = records[0];
  EXPECT_EQ(listener.family, AF_INET);
  EXPECT_EQ(listener.state, 10);
  EXPECT_EQ(listener.timer, DiagTimer::kNone);
  EXPECT_EQ(listener.local_address, Ipv4(127, 0, 0, 1));
  EXPECT_EQ(listener.remote_address, Ipv4(0, 0, 0, 0));
  EXPECT_EQ(listener.local_port, 57769);
  EXPECT_EQ(listener.remote_port, 0);
  EXPECT_EQ(listener.cookie, 0x1019u);
  EXPECT_EQ(listener.send_queue, 8u);  // listen() backlog for listeners
  EXPECT_EQ(listener.inode, 10928u);
  ASSERT_TRUE(listener.tcp_info.has_value());
  EXPECT_EQ(listener.tcp_info->state, 10);
  EXPECT_EQ(listener.tcp_info->rtt_us, 0u);

  const SocketRecord& time_wait = records[1];
  EXPECT_EQ(time_wait.state, 6);
  EXPECT_EQ(time_wait.timer, DiagTimer::kTimeWait);
  EXPECT_EQ(time_wait.timer_expires_ms, 59980u);
  EXPECT_EQ(time_wait.local_port, 44418);
  EXPECT_EQ(time_wait.remote_port, 57769);
  EXPECT_EQ(time_wait.cookie, 0x101eu);
  EXPECT_EQ(time_wait.inode, 0u);
  EXPECT_FALSE(time_wait.tcp_info.has_value());
}

TEST(SockDiagParserTest, BufferWithoutDoneIsNotDone) {
  std::vector<SocketRecord> records;
  auto progress = Parse(Concat({kIpv4Client, kIpv6Client}), &records);
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_FALSE(progress->done);
  EXPECT_EQ(records.size(), 2u);
}

TEST(SockDiagParserTest, EmptyBufferIsNoProgress) {
  std::vector<SocketRecord> records;
  auto progress = Parse({}, &records);
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_FALSE(progress->done);
  EXPECT_TRUE(records.empty());
}

TEST(SockDiagParserTest, DoneWithoutErrorCode) {
  std::vector<SocketRecord> records;
  auto progress = Parse(NetlinkMessage(NLMSG_DONE, {}), &records);
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_TRUE(progress->done);
}

TEST(SockDiagParserTest, DoneWithNegativeErrorCodeFails) {
  std::vector<uint8_t> done = FromHex(kDone);
  Store<int>(done, NLMSG_HDRLEN, -EINTR);
  std::vector<SocketRecord> records;
  auto progress = Parse(done, &records);
  ASSERT_FALSE(progress.ok());
  EXPECT_THAT(progress.status().message(), HasSubstr("dump ended with error"));
  EXPECT_THAT(progress.status().message(), HasSubstr("Interrupted system call"));
}

TEST(SockDiagParserTest, TruncatedHeader) {
  const std::vector<uint8_t> bytes = Concat({kIpv4Client, std::string_view(kDone).substr(0, 20)});
  std::vector<SocketRecord> records;
  auto progress = Parse(bytes, &records);
  ASSERT_FALSE(progress.ok());
  EXPECT_EQ(progress.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(progress.status().message(), HasSubstr("netlink header truncated: 10 bytes left"));
  // What was parsed before the damage stays usable.
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].cookie, 0x101cu);
}

TEST(SockDiagParserTest, NlmsgLenLargerThanBuffer) {
  std::vector<uint8_t> bytes = FromHex(kIpv4Client);
  bytes.resize(64);
  std::vector<SocketRecord> records;
  auto progress = Parse(bytes, &records);
  ASSERT_FALSE(progress.ok());
  EXPECT_EQ(progress.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(progress.status().message(),
              HasSubstr("inet_diag message truncated: nlmsg_len 408 exceeds remaining 64 bytes"));
  EXPECT_TRUE(records.empty());
}

TEST(SockDiagParserTest, NlmsgLenSmallerThanHeader) {
  std::vector<uint8_t> bytes = FromHex(kIpv4Client);
  Store<uint32_t>(bytes, kNlmsgLenOffset, 8);
  std::vector<SocketRecord> records;
  auto progress = Parse(bytes, &records);
  ASSERT_FALSE(progress.ok());
  EXPECT_THAT(progress.status().message(), HasSubstr("nlmsg_len 8, smaller than its header"));
}

TEST(SockDiagParserTest, ZeroNlmsgLenDoesNotLoop) {
  std::vector<uint8_t> bytes(64, 0);
  std::vector<SocketRecord> records;
  EXPECT_FALSE(Parse(bytes, &records).ok());
}

TEST(SockDiagParserTest, MisalignedMessageFollowedByStrayBytes) {
  // nlmsg_len 93 in a 94-byte buffer: one byte follows that is neither padding nor a message.
  std::vector<uint8_t> bytes = FromHex(kTimeWait);
  bytes.resize(94);
  Store<uint32_t>(bytes, kNlmsgLenOffset, 93);
  std::vector<SocketRecord> records;
  auto progress = Parse(bytes, &records);
  ASSERT_FALSE(progress.ok());
  EXPECT_THAT(progress.status().message(),
              HasSubstr("misaligned netlink message at offset 0: nlmsg_len 93 leaves 1 stray"));
}

TEST(SockDiagParserTest, InetDiagMsgTruncated) {
  std::vector<uint8_t> bytes = FromHex(kIpv4Client);
  bytes.resize(NLMSG_HDRLEN + 40);
  Store<uint32_t>(bytes, kNlmsgLenOffset, bytes.size());
  std::vector<SocketRecord> records;
  auto progress = Parse(bytes, &records);
  ASSERT_FALSE(progress.ok());
  EXPECT_THAT(progress.status().message(),
              HasSubstr("inet_diag message truncated: payload is 40 bytes"));
  EXPECT_TRUE(records.empty());
}

TEST(SockDiagParserTest, AttributeLengthPastEnd) {
  std::vector<uint8_t> bytes = FromHex(kIpv4Client);
  Store<uint16_t>(bytes, kFirstAttributeOffset + offsetof(nlattr, nla_len), 0x1000);
  std::vector<SocketRecord> records;
  auto progress = Parse(bytes, &records);
  ASSERT_FALSE(progress.ok());
  EXPECT_THAT(progress.status().message(), HasSubstr("has bad length 4096"));
  EXPECT_TRUE(records.empty());
}

TEST(SockDiagParserTest, InfoAttributeLengthPastEnd) {
  std::vector<uint8_t> bytes = FromHex(kIpv4Client);
  const size_t info = FindInfoAttribute(bytes);
  Store<uint16_t>(bytes, info + offsetof(nlattr, nla_len), bytes.size() - info + 4);
  std::vector<SocketRecord> records;
  EXPECT_FALSE(Parse(bytes, &records).ok());
}

TEST(SockDiagParserTest, AttributeLengthShorterThanHeader) {
  std::vector<uint8_t> bytes = FromHex(kIpv4Client);
  Store<uint16_t>(bytes, kFirstAttributeOffset + offsetof(nlattr, nla_len), 2);
  std::vector<SocketRecord> records;
  auto progress = Parse(bytes, &records);
  ASSERT_FALSE(progress.ok());
  EXPECT_THAT(progress.status().message(), HasSubstr("bad length 2"));
}

TEST(SockDiagParserTest, ShortTcpInfoFromOlderKernelIsZeroFilled) {
  // Cut tcp_info just before tcpi_bytes_acked, as a kernel older than 4.1 would send it.
  std::vector<uint8_t> bytes = FromHex(kIpv4Client);
  const size_t info = FindInfoAttribute(bytes);
  const size_t short_length = offsetof(struct tcp_info, tcpi_bytes_acked);
  bytes.resize(info + NLA_HDRLEN + short_length);
  Store<uint16_t>(bytes, info + offsetof(nlattr, nla_len), NLA_HDRLEN + short_length);
  Store<uint32_t>(bytes, kNlmsgLenOffset, bytes.size());
  std::vector<SocketRecord> records;
  auto progress = Parse(bytes, &records);
  ASSERT_TRUE(progress.ok()) << progress.status();
  ASSERT_EQ(records.size(), 1u);
  ASSERT_TRUE(records[0].tcp_info.has_value());
  EXPECT_EQ(records[0].tcp_info->state, 1);
  EXPECT_EQ(records[0].tcp_info->rtt_us, 32u);
  EXPECT_EQ(records[0].tcp_info->last_ack_recv_ms, 20u);
  EXPECT_EQ(records[0].tcp_info->bytes_acked, 0u);
  EXPECT_EQ(records[0].tcp_info->bytes_received, 0u);
  EXPECT_EQ(records[0].tcp_info->segs_out, 0u);
  EXPECT_EQ(records[0].tcp_info->segs_in, 0u);
}

TEST(SockDiagParserTest, UnalignedFinalAttributeWithoutPadding) {
  // A 1-byte tcp_info: the attribute and the message end unaligned at the end of the buffer.
  std::vector<uint8_t> bytes = FromHex(kIpv4Client);
  const size_t info = FindInfoAttribute(bytes);
  bytes.resize(info + NLA_HDRLEN + 1);
  Store<uint16_t>(bytes, info + offsetof(nlattr, nla_len), NLA_HDRLEN + 1);
  Store<uint32_t>(bytes, kNlmsgLenOffset, bytes.size());
  std::vector<SocketRecord> records;
  auto progress = Parse(bytes, &records);
  ASSERT_TRUE(progress.ok()) << progress.status();
  ASSERT_EQ(records.size(), 1u);
  ASSERT_TRUE(records[0].tcp_info.has_value());
  EXPECT_EQ(records[0].tcp_info->state, 1);
  EXPECT_EQ(records[0].tcp_info->rtt_us, 0u);
}

TEST(SockDiagParserTest, ErrorReplyEperm) {
  std::vector<SocketRecord> records;
  auto progress = Parse(ErrorMessage(-EPERM), &records);
  ASSERT_FALSE(progress.ok());
  EXPECT_EQ(progress.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(progress.status().message(), HasSubstr("Operation not permitted"));
  EXPECT_THAT(progress.status().message(), HasSubstr("errno 1"));
}

// Found by sock_diag_parser_fuzzer: INT_MIN in an error field was negated (undefined behaviour).
TEST(SockDiagParserTest, ErrorCodesThatAreNoErrnoAreRefused) {
  for (const int error : {INT_MIN, -4096, 5}) {
    std::vector<SocketRecord> records;
    auto progress = Parse(ErrorMessage(error), &records);
    ASSERT_FALSE(progress.ok());
    EXPECT_EQ(progress.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(progress.status().message(), HasSubstr("not a negative errno"));

    std::vector<uint8_t> done = FromHex(kDone);
    Store<int>(done, NLMSG_HDRLEN, error);
    progress = Parse(done, &records);
    if (error > 0) continue;  // a positive dump return value is not an error
    ASSERT_FALSE(progress.ok());
    EXPECT_EQ(progress.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(progress.status().message(), HasSubstr("not a negative errno"));
  }
}

TEST(SockDiagParserTest, AckIsNotAnError) {
  std::vector<uint8_t> bytes = ErrorMessage(0);
  const std::vector<uint8_t> client = FromHex(kIpv4Client);
  bytes.insert(bytes.end(), client.begin(), client.end());
  std::vector<SocketRecord> records;
  auto progress = Parse(bytes, &records);
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_FALSE(progress->done);
  EXPECT_EQ(records.size(), 1u);
}

TEST(SockDiagParserTest, TruncatedErrorReply) {
  std::vector<SocketRecord> records;
  auto progress = Parse(NetlinkMessage(NLMSG_ERROR, {0xff, 0xff}), &records);
  ASSERT_FALSE(progress.ok());
  EXPECT_THAT(progress.status().message(), HasSubstr("NLMSG_ERROR message truncated"));
}

TEST(SockDiagParserTest, UnknownMessageType) {
  std::vector<uint8_t> bytes = FromHex(kIpv4Client);
  Store<uint16_t>(bytes, offsetof(nlmsghdr, nlmsg_type), 16);  // RTM_NEWLINK: wrong family
  std::vector<SocketRecord> records;
  auto progress = Parse(bytes, &records);
  ASSERT_FALSE(progress.ok());
  EXPECT_EQ(progress.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(progress.status().message(), HasSubstr("unexpected netlink message type 16"));
}

TEST(SockDiagParserTest, UnexpectedFamily) {
  std::vector<uint8_t> bytes = FromHex(kIpv4Client);
  bytes[NLMSG_HDRLEN + offsetof(inet_diag_msg, idiag_family)] = AF_UNIX;
  std::vector<SocketRecord> records;
  auto progress = Parse(bytes, &records);
  ASSERT_FALSE(progress.ok());
  EXPECT_THAT(progress.status().message(), HasSubstr("unexpected family 1"));
}

TEST(SockDiagParserTest, NothingAfterDoneIsParsed) {
  std::vector<SocketRecord> records;
  auto progress = Parse(Concat({kDone, kIpv4Client}), &records);
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_TRUE(progress->done);
  EXPECT_TRUE(records.empty());
}

// Every prefix and many random corruptions of real replies: the parser may reject them but
// must never read out of bounds (run under ASan to make that check strict) or loop.
TEST(SockDiagParserTest, PrefixesAndByteFlipsNeverCrash) {
  const std::vector<uint8_t> fixture =
      Concat({kIpv4Listener, kIpv6Client, kTimeWait, kKeepaliveClient, kDone});
  for (size_t length = 0; length <= fixture.size(); ++length) {
    // A fresh copy of exactly `length` bytes, so out-of-bounds reads land outside the heap block.
    const std::vector<uint8_t> prefix(fixture.begin(), fixture.begin() + length);
    std::vector<SocketRecord> records;
    (void)Parse(prefix, &records);
    EXPECT_LE(records.size(), 4u);
  }

  std::mt19937 rng(20240611);
  std::uniform_int_distribution<size_t> position(0, fixture.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> flips(1, 8);
  for (int round = 0; round < 20000; ++round) {
    std::vector<uint8_t> mutated = fixture;
    for (int i = flips(rng); i > 0; --i) mutated[position(rng)] = static_cast<uint8_t>(byte(rng));
    mutated.resize(std::uniform_int_distribution<size_t>(0, mutated.size())(rng));
    std::vector<SocketRecord> records;
    auto progress = Parse(mutated, &records);
    EXPECT_LE(records.size(), fixture.size() / (NLMSG_HDRLEN + sizeof(inet_diag_msg)));
    if (progress.ok() && progress->done) {
      EXPECT_GE(mutated.size(), sizeof(nlmsghdr));
    }
  }
}

}  // namespace
}  // namespace tcpscope::agent
