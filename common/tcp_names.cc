// Label names derived from the proto enums themselves (TCP_STATE_TIME_WAIT -> "time_wait"), so
// the protos stay the one source of every name.
#include "common/tcp_names.h"

#include <arpa/inet.h>

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"

namespace tcpscope {
namespace {

// Lower-case names of an enum's values without `prefix`, indexed by value (values are small
// and dense). Unknown and UNSPECIFIED values map to `fallback`.
class EnumLabels {
 public:
  EnumLabels(const google::protobuf::EnumDescriptor* descriptor, absl::string_view prefix,
             absl::string_view fallback)
      : fallback_(fallback) {
    for (int i = 0; i < descriptor->value_count(); ++i) {
      const auto* value = descriptor->value(i);
      if (value->number() < 0 || value->number() > 64) continue;
      if (static_cast<size_t>(value->number()) >= names_.size()) {
        names_.resize(value->number() + 1, fallback_);
      }
      std::string name = value->name();
      if (absl::EndsWith(name, "UNSPECIFIED")) continue;
      if (absl::StartsWith(name, prefix)) name = name.substr(prefix.size());
      names_[value->number()] = absl::AsciiStrToLower(name);
    }
  }

  absl::string_view Name(int value) const {
    if (value < 0 || static_cast<size_t>(value) >= names_.size()) return fallback_;
    return names_[value];
  }

 private:
  std::string fallback_;
  std::vector<std::string> names_;
};

}  // namespace

absl::string_view TcpStateName(v1::TcpState state) {
  static const auto* labels = new EnumLabels(v1::TcpState_descriptor(), "TCP_STATE_", "unknown");
  return labels->Name(state);
}

absl::string_view RoleName(v1::Role role) {
  static const auto* labels = new EnumLabels(v1::Role_descriptor(), "ROLE_", "unknown");
  return labels->Name(role);
}

absl::string_view CloseInitiatorName(v1::CloseInitiator initiator) {
  static const auto* labels =
      new EnumLabels(v1::CloseInitiator_descriptor(), "CLOSE_INITIATOR_", "unknown");
  return labels->Name(initiator);
}

absl::string_view AtRiskReasonName(v1::AtRiskReason reason) {
  static const auto* labels = new EnumLabels(v1::AtRiskReason_descriptor(), "AT_RISK_", "none");
  return labels->Name(reason);
}

absl::string_view HalfOpenReasonName(v1::HalfOpenReason reason) {
  static const auto* labels = new EnumLabels(v1::HalfOpenReason_descriptor(), "HALF_OPEN_", "none");
  return labels->Name(reason);
}

absl::string_view PairingName(v1::Pairing pairing) {
  static const auto* labels = new EnumLabels(v1::Pairing_descriptor(), "PAIRING_", "none");
  return labels->Name(pairing);
}

absl::string_view EventKindName(v1::EventKind kind) {
  static const auto* labels = new EnumLabels(v1::EventKind_descriptor(), "EVENT_KIND_", "unknown");
  return labels->Name(kind);
}

absl::string_view CloseReasonName(v1::CloseReason reason) {
  static const auto* labels =
      new EnumLabels(v1::CloseReason_descriptor(), "CLOSE_REASON_", "other");
  return labels->Name(reason);
}

absl::string_view HandshakeFailureReasonName(v1::HandshakeFailureReason reason) {
  static const auto* labels =
      new EnumLabels(v1::HandshakeFailureReason_descriptor(), "HANDSHAKE_FAILURE_", "other");
  return labels->Name(reason);
}

absl::string_view SourceKindName(v1::SourceKind kind) {
  static const auto* labels =
      new EnumLabels(v1::SourceKind_descriptor(), "SOURCE_KIND_", "unknown");
  return labels->Name(kind);
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
