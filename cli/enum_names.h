// Command-line names of proto enum values, made by the rule of the metric labels (see
// common/tcp_names.h): the value's name without its prefix, in lower case
// (EVENT_KIND_HANDSHAKE_FAILED -> "handshake_failed"). Parsing flags needs the way back too.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"

namespace tcpscope::cli {

class EnumNames {
 public:
  EnumNames(const google::protobuf::EnumDescriptor* descriptor, absl::string_view prefix);

  // The value of a name; nullopt for an unknown name and for the UNSPECIFIED value.
  std::optional<int> Value(absl::string_view name) const;
  // The name of a value; "unknown" for UNSPECIFIED and for values this build does not know.
  std::string Name(int value) const;
  // Every name but UNSPECIFIED's, in the order of the values.
  const std::vector<std::string>& Names() const { return names_; }
  // "a, b, c": for error messages.
  std::string List() const;

 private:
  const google::protobuf::EnumDescriptor* descriptor_;
  std::string prefix_;
  std::vector<std::string> names_;
};

const EnumNames& TcpStateNames();
const EnumNames& RoleNames();
const EnumNames& CloseReasonNames();
const EnumNames& HandshakeFailureReasonNames();
const EnumNames& EventKindNames();
const EnumNames& AtRiskReasonNames();
const EnumNames& HalfOpenReasonNames();

}  // namespace tcpscope::cli
