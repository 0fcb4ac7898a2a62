// Names of tcpscope's enums as they appear in metric labels, tables and JSON, and address
// formatting. One place, so the exposition, the CLI and the tests agree.
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "tcpscope/v1/events.pb.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope {

// Lower case, as in the `state` label: "established", "time_wait", "close_wait", ...
absl::string_view TcpStateName(v1::TcpState state);
absl::string_view RoleName(v1::Role role);  // "client", "server", "unknown"
absl::string_view CloseInitiatorName(v1::CloseInitiator initiator);
absl::string_view CloseReasonName(v1::CloseReason reason);
absl::string_view HandshakeFailureReasonName(v1::HandshakeFailureReason reason);
absl::string_view SourceKindName(v1::SourceKind kind);  // "ebpf", "sock_diag", "replay"
// "idle_no_keepalive", "keepalive_probing", "close_wait_stale"; "none" when not at risk.
absl::string_view AtRiskReasonName(v1::AtRiskReason reason);
// "peer_closed", "peer_rebooted", "peer_host_down"; "none" when not half-open.
absl::string_view HalfOpenReasonName(v1::HalfOpenReason reason);
// "paired", "unpaired", "local", "ambiguous"; "none" when not examined.
absl::string_view PairingName(v1::Pairing pairing);
// "handshake", "handshake_failed", "close", "keepalive_probe", ...
absl::string_view EventKindName(v1::EventKind kind);

// "10.0.0.1:443" or "[fe80::1]:443"; "?" for an address of neither 4 nor 16 bytes.
std::string FormatAddress(absl::string_view address_bytes, uint32_t port);
std::string FormatAddress(absl::string_view address_bytes);

}  // namespace tcpscope
