// Label names come from the proto enums; these are the names dashboards and alerts rely on.
#include "common/tcp_names.h"

#include "gtest/gtest.h"

namespace tcpscope {
namespace {

TEST(TcpNamesTest, LabelsMatchTheSpec) {
  EXPECT_EQ(TcpStateName(v1::TCP_STATE_ESTABLISHED), "established");
  EXPECT_EQ(TcpStateName(v1::TCP_STATE_TIME_WAIT), "time_wait");
  EXPECT_EQ(TcpStateName(v1::TCP_STATE_CLOSE_WAIT), "close_wait");
  EXPECT_EQ(TcpStateName(v1::TCP_STATE_FIN_WAIT1), "fin_wait1");
  EXPECT_EQ(TcpStateName(v1::TCP_STATE_UNSPECIFIED), "unknown");
  EXPECT_EQ(TcpStateName(static_cast<v1::TcpState>(99)), "unknown");
  EXPECT_EQ(RoleName(v1::ROLE_CLIENT), "client");
  EXPECT_EQ(RoleName(v1::ROLE_SERVER), "server");
  EXPECT_EQ(CloseInitiatorName(v1::CLOSE_INITIATOR_SIMULTANEOUS), "simultaneous");
  EXPECT_EQ(CloseReasonName(v1::CLOSE_REASON_KEEPALIVE_TIMEOUT), "keepalive_timeout");
  EXPECT_EQ(CloseReasonName(v1::CLOSE_REASON_RESET_RECEIVED), "reset_received");
  EXPECT_EQ(CloseReasonName(v1::CLOSE_REASON_UNSPECIFIED), "other");
  EXPECT_EQ(HandshakeFailureReasonName(v1::HANDSHAKE_FAILURE_REFUSED), "refused");
  EXPECT_EQ(HandshakeFailureReasonName(v1::HANDSHAKE_FAILURE_UNREACHABLE), "unreachable");
  EXPECT_EQ(SourceKindName(v1::SOURCE_KIND_SOCK_DIAG), "sock_diag");
}

TEST(TcpNamesTest, FormatsAddresses) {
  EXPECT_EQ(FormatAddress(std::string("\x0a\0\0\x01", 4), 443), "10.0.0.1:443");
  std::string v6(16, '\0');
  v6[15] = 1;
  EXPECT_EQ(FormatAddress(v6, 80), "[::1]:80");
  EXPECT_EQ(FormatAddress("abc", 1), "?:1");
}

}  // namespace
}  // namespace tcpscope
