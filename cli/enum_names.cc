// Name <-> value tables built once from the enum descriptors, so a new enum value in the protos
// is a valid flag value and prints by its name without a change here.
#include "cli/enum_names.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "tcpscope/v1/events.pb.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::cli {
namespace {

bool Unspecified(const google::protobuf::EnumValueDescriptor* value) {
  return value->number() == 0 || absl::EndsWith(value->name(), "UNSPECIFIED");
}

}  // namespace

EnumNames::EnumNames(const google::protobuf::EnumDescriptor* descriptor, absl::string_view prefix)
    : descriptor_(descriptor), prefix_(prefix) {
  std::vector<std::pair<int, std::string>> values;
  for (int i = 0; i < descriptor->value_count(); ++i) {
    const google::protobuf::EnumValueDescriptor* value = descriptor->value(i);
    if (Unspecified(value)) continue;
    values.emplace_back(value->number(), Name(value->number()));
  }
  std::sort(values.begin(), values.end());
  for (auto& [number, name] : values) names_.push_back(std::move(name));
}

std::optional<int> EnumNames::Value(absl::string_view name) const {
  const google::protobuf::EnumValueDescriptor* value =
      descriptor_->FindValueByName(absl::StrCat(prefix_, absl::AsciiStrToUpper(name)));
  // Names are lower case on the command line, as in the metrics.
  if (value == nullptr || Unspecified(value) || absl::AsciiStrToLower(name) != name) {
    return std::nullopt;
  }
  return value->number();
}

std::string EnumNames::Name(int number) const {
  const google::protobuf::EnumValueDescriptor* value = descriptor_->FindValueByNumber(number);
  if (value == nullptr || Unspecified(value)) return "unknown";
  absl::string_view name = value->name();
  absl::ConsumePrefix(&name, prefix_);
  return absl::AsciiStrToLower(name);
}

std::string EnumNames::List() const { return absl::StrJoin(names_, ", "); }

const EnumNames& TcpStateNames() {
  static const auto* names = new EnumNames(v1::TcpState_descriptor(), "TCP_STATE_");
  return *names;
}

const EnumNames& RoleNames() {
  static const auto* names = new EnumNames(v1::Role_descriptor(), "ROLE_");
  return *names;
}

const EnumNames& CloseReasonNames() {
  static const auto* names = new EnumNames(v1::CloseReason_descriptor(), "CLOSE_REASON_");
  return *names;
}

const EnumNames& HandshakeFailureReasonNames() {
  static const auto* names =
      new EnumNames(v1::HandshakeFailureReason_descriptor(), "HANDSHAKE_FAILURE_");
  return *names;
}

const EnumNames& EventKindNames() {
  static const auto* names = new EnumNames(v1::EventKind_descriptor(), "EVENT_KIND_");
  return *names;
}

const EnumNames& AtRiskReasonNames() {
  static const auto* names = new EnumNames(v1::AtRiskReason_descriptor(), "AT_RISK_");
  return *names;
}

const EnumNames& HalfOpenReasonNames() {
  static const auto* names = new EnumNames(v1::HalfOpenReason_descriptor(), "HALF_OPEN_");
  return *names;
}

}  // namespace tcpscope::cli
