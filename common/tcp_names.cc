// Label names for tcpscope's enums and textual addresses.
#include "common/tcp_names.h"

#include <arpa/inet.h>

#include "absl/strings/str_cat.h"

namespace tcpscope {

absl::string_view TcpStateName(v1::TcpState state) {
  switch (state) {
    case v1::TCP_STATE_ESTABLISHED:
      return "established";
    case v1::TCP_STATE_SYN_SENT:
      return "syn_sent";
    case v1::TCP_STATE_SYN_RECV:
      return "syn_recv";
    case v1::TCP_STATE_FIN_WAIT1:
      return "fin_wait1";
    case v1::TCP_STATE_FIN_WAIT2:
      return "fin_wait2";
    case v1::TCP_STATE_TIME_WAIT:
      return "time_wait";
    case v1::TCP_STATE_CLOSE:
      return "close";
    case v1::TCP_STATE_CLOSE_WAIT:
      return "close_wait";
    case v1::TCP_STATE_LAST_ACK:
      return "last_ack";
    case v1::TCP_STATE_LISTEN:
      return "listen";
    case v1::TCP_STATE_CLOSING:
      return "closing";
    case v1::TCP_STATE_NEW_SYN_RECV:
      return "new_syn_recv";
    default:
      return "unknown";
  }
}

absl::string_view RoleName(v1::Role role) {
  switch (role) {
    case v1::ROLE_CLIENT:
      return "client";
    case v1::ROLE_SERVER:
      return "server";
    default:
      return "unknown";
  }
}

absl::string_view CloseInitiatorName(v1::CloseInitiator initiator) {
  switch (initiator) {
    case v1::CLOSE_INITIATOR_LOCAL:
      return "local";
    case v1::CLOSE_INITIATOR_REMOTE:
      return "remote";
    case v1::CLOSE_INITIATOR_SIMULTANEOUS:
      return "simultaneous";
    default:
      return "unknown";
  }
}

absl::string_view CloseReasonName(v1::CloseReason reason) {
  switch (reason) {
    case v1::CLOSE_REASON_FIN:
      return "fin";
    case v1::CLOSE_REASON_RESET_SENT:
      return "reset_sent";
    case v1::CLOSE_REASON_RESET_RECEIVED:
      return "reset_received";
    case v1::CLOSE_REASON_KEEPALIVE_TIMEOUT:
      return "keepalive_timeout";
    case v1::CLOSE_REASON_KEEPALIVE_RESET:
      return "keepalive_reset";
    case v1::CLOSE_REASON_RETRANSMIT_TIMEOUT:
      return "retransmit_timeout";
    default:
      return "other";
  }
}

absl::string_view HandshakeFailureReasonName(v1::HandshakeFailureReason reason) {
  switch (reason) {
    case v1::HANDSHAKE_FAILURE_REFUSED:
      return "refused";
    case v1::HANDSHAKE_FAILURE_TIMEOUT:
      return "timeout";
    case v1::HANDSHAKE_FAILURE_RESET:
      return "reset";
    case v1::HANDSHAKE_FAILURE_UNREACHABLE:
      return "unreachable";
    default:
      return "other";
  }
}

std::string FormatAddress(absl::string_view address_bytes) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (address_bytes.size() == 4) {
    inet_ntop(AF_INET, address_bytes.data(), text, sizeof(text));
  } else if (address_bytes.size() == 16) {
    inet_ntop(AF_INET6, address_bytes.data(), text, sizeof(text));
  }
  return text;
}

std::string FormatAddress(absl::string_view address_bytes, uint32_t port) {
  if (address_bytes.size() == 16)
    return absl::StrCat("[", FormatAddress(address_bytes), "]:", port);
  return absl::StrCat(FormatAddress(address_bytes), ":", port);
}

}  // namespace tcpscope
