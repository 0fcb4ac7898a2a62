// One row per event. Only fields that carry information are shown (no "retransmits=0"); JSON
// output has all of them. The owner (process, pod or container) comes last.
#include "cli/event_format.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "cli/humanize.h"
#include "cli/workload_format.h"
#include "common/tcp_names.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace tcpscope::cli {
namespace {

std::string Micros(uint64_t us) { return ShortDuration(absl::Microseconds(us)); }

// process=command[pid] and pod=... or container=..., each only when known.
void AppendOwner(const v1::Origin& origin, const std::string& prefix,
                 std::vector<std::string>* parts) {
  if (origin.pid() != 0 || !origin.command().empty()) {
    parts->push_back(absl::StrCat(prefix, "process=", ProcessCell(origin)));
  }
  if (std::string workload = WorkloadDetail(origin, prefix); !workload.empty()) {
    parts->push_back(std::move(workload));
  }
}

// An enum value as the CLI prints enums: without the prefix its values share, in lower case
// (CLOSE_REASON_FIN -> "fin", HANDSHAKE_FAILURE_REFUSED -> "refused").
std::string EnumLabel(const google::protobuf::EnumDescriptor* type, int number) {
  const google::protobuf::EnumValueDescriptor* value = type->FindValueByNumber(number);
  if (value == nullptr || number == 0) return "unknown";
  absl::string_view prefix = type->value(0)->name();
  for (int i = 1; i < type->value_count(); ++i) {
    absl::string_view name = type->value(i)->name();
    size_t common = 0;
    while (common < prefix.size() && common < name.size() && prefix[common] == name[common]) {
      ++common;
    }
    prefix = prefix.substr(0, common);
  }
  prefix = prefix.substr(0, prefix.rfind('_') + 1);  // whole words only
  absl::string_view name = value->name();
  absl::ConsumePrefix(&name, prefix);
  return absl::AsciiStrToLower(name);
}

// The details of a kind without a format of its own (a new kind prints without a change here):
// each set field as name=value; *_us and *_ms as durations, error as an errno name, enums by
// their lower-case names, an Origin as its owner (prefixed by the field's name: peer_origin ->
// peer_process=...).
void AppendFields(const google::protobuf::Message& kind, std::vector<std::string>* parts) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection* reflection = kind.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(kind, &fields);
  for (const FieldDescriptor* field : fields) {
    if (field->is_repeated()) continue;
    absl::string_view name = field->name();
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_MESSAGE:
        if (field->message_type() == v1::Origin::descriptor()) {
          absl::ConsumeSuffix(&name, "origin");
          AppendOwner(static_cast<const v1::Origin&>(reflection->GetMessage(kind, field)),
                      std::string(name), parts);
        }
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        parts->push_back(absl::StrCat(
            name, "=", EnumLabel(field->enum_type(), reflection->GetEnumValue(kind, field))));
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        parts->push_back(absl::StrCat(name, "=", reflection->GetString(kind, field)));
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        parts->push_back(absl::StrCat(name, "=", reflection->GetBool(kind, field)));
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT:
        parts->push_back(absl::StrCat(name, "=",
                                      field->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE
                                          ? reflection->GetDouble(kind, field)
                                          : reflection->GetFloat(kind, field)));
        break;
      default: {  // integers
        const bool is_signed = field->cpp_type() == FieldDescriptor::CPPTYPE_INT32 ||
                               field->cpp_type() == FieldDescriptor::CPPTYPE_INT64;
        int64_t signed_value = 0;
        uint64_t value = 0;
        switch (field->cpp_type()) {
          case FieldDescriptor::CPPTYPE_INT32:
            signed_value = reflection->GetInt32(kind, field);
            break;
          case FieldDescriptor::CPPTYPE_INT64:
            signed_value = reflection->GetInt64(kind, field);
            break;
          case FieldDescriptor::CPPTYPE_UINT32:
            value = reflection->GetUInt32(kind, field);
            break;
          default:
            value = reflection->GetUInt64(kind, field);
            break;
        }
        if (name == "error" && is_signed) {
          parts->push_back(absl::StrCat("error=", ErrnoName(static_cast<int>(signed_value))));
        } else if (is_signed) {
          parts->push_back(absl::StrCat(name, "=", signed_value));
        } else if (absl::ConsumeSuffix(&name, "_us")) {
          parts->push_back(absl::StrCat(name, "=", Micros(value)));
        } else if (absl::ConsumeSuffix(&name, "_ms")) {
          parts->push_back(absl::StrCat(name, "=", ShortDuration(absl::Milliseconds(value))));
        } else {
          parts->push_back(absl::StrCat(name, "=", value));
        }
        break;
      }
    }
  }
}

}  // namespace

std::vector<std::string> EventHeader() {
  return {"TIME", "HOST", "ROLE", "LOCAL", "", "REMOTE", "EVENT", "DETAILS"};
}

std::vector<size_t> EventMinWidths() { return {23, 12, 6, 21, 2, 21, 18, 0}; }

std::string EventKindName(const v1::Event& event) {
  const google::protobuf::OneofDescriptor* kind = v1::Event::descriptor()->FindOneofByName("kind");
  const google::protobuf::FieldDescriptor* field =
      event.GetReflection()->GetOneofFieldDescriptor(event, kind);
  return field != nullptr ? field->name() : "unknown";
}

std::string FieldDetails(const google::protobuf::Message& kind) {
  std::vector<std::string> parts;
  AppendFields(kind, &parts);
  return absl::StrJoin(parts, " ");
}

std::string EventDetails(const v1::Event& event) {
  std::vector<std::string> parts;
  switch (event.kind_case()) {
    case v1::Event::kHandshake:
      if (event.handshake().has_duration_us()) {
        parts.push_back(absl::StrCat("duration=", Micros(event.handshake().duration_us())));
      }
      break;
    case v1::Event::kHandshakeFailed: {
      const v1::HandshakeFailed& failed = event.handshake_failed();
      parts.push_back(absl::StrCat("reason=", HandshakeFailureReasonName(failed.reason())));
      if (failed.syn_retransmits() > 0) {
        parts.push_back(absl::StrCat("syn_retransmits=", failed.syn_retransmits()));
      }
      if (failed.has_duration_us()) {
        parts.push_back(absl::StrCat("after=", Micros(failed.duration_us())));
      }
      if (failed.error() != 0) parts.push_back(absl::StrCat("error=", ErrnoName(failed.error())));
      break;
    }
    case v1::Event::kClose: {
      const v1::Close& close = event.close();
      parts.push_back(absl::StrCat("initiator=", CloseInitiatorName(close.initiator())));
      parts.push_back(absl::StrCat("reason=", CloseReasonName(close.reason())));
      if (close.has_lifetime_us()) {
        parts.push_back(absl::StrCat("lifetime=", Micros(close.lifetime_us())));
      }
      parts.push_back(absl::StrCat("sent=", close.bytes_sent()));
      parts.push_back(absl::StrCat("received=", close.bytes_received()));
      if (close.retransmits() > 0) {
        parts.push_back(absl::StrCat("retransmits=", close.retransmits()));
      }
      if (close.srtt_us() > 0) parts.push_back(absl::StrCat("rtt=", Rtt(close.srtt_us())));
      if (close.last_state() != v1::TCP_STATE_UNSPECIFIED) {
        parts.push_back(absl::StrCat("last_state=", TcpStateName(close.last_state())));
      }
      if (close.error() != 0) parts.push_back(absl::StrCat("error=", ErrnoName(close.error())));
      break;
    }
    case v1::Event::kKeepaliveProbe:
      parts.push_back(absl::StrCat("probe=", event.keepalive_probe().probe_number()));
      parts.push_back(absl::StrCat(
          "idle=", ShortDuration(absl::Milliseconds(event.keepalive_probe().idle_ms()))));
      break;
    case v1::Event::kKeepaliveTimeout: {
      const v1::KeepaliveTimeout& timeout = event.keepalive_timeout();
      parts.push_back(absl::StrCat("probes=", timeout.probes_sent()));
      parts.push_back(absl::StrCat("idle=", timeout.idle_s(), "s"));
      parts.push_back(absl::StrCat("interval=", timeout.interval_s(), "s"));
      parts.push_back(absl::StrCat("count=", timeout.count()));
      if (timeout.error() != 0) parts.push_back(absl::StrCat("error=", ErrnoName(timeout.error())));
      break;
    }
    case v1::Event::kKeepaliveAnswered:
      parts.push_back(
          absl::StrCat("outstanding=", event.keepalive_answered().probes_outstanding()));
      break;
    case v1::Event::kHalfOpen: {
      const v1::HalfOpen& half_open = event.half_open();
      parts.push_back(absl::StrCat("reason=", HalfOpenReasonName(half_open.reason())));
      if (!half_open.peer_host().empty()) {
        parts.push_back(absl::StrCat("peer=", half_open.peer_host()));
      }
      if (half_open.peer_last_state() != v1::TCP_STATE_UNSPECIFIED) {
        parts.push_back(absl::StrCat("peer_state=", TcpStateName(half_open.peer_last_state())));
      }
      if (half_open.peer_lost_unix_ns() != 0) {
        // How long detection took: from the loss of the peer's end to this finding.
        parts.push_back(absl::StrCat(
            "lost=", Age(half_open.peer_lost_unix_ns(),
                         absl::FromUnixNanos(static_cast<int64_t>(event.time_unix_ns())))));
      }
      AppendOwner(half_open.peer_origin(), "peer_", &parts);
      break;
    }
    case v1::Event::KIND_NOT_SET:
      break;
    default:
      AppendFields(event.GetReflection()->GetMessage(
                       event, event.GetReflection()->GetOneofFieldDescriptor(
                                  event, v1::Event::descriptor()->FindOneofByName("kind"))),
                   &parts);
      break;
  }
  AppendOwner(event.origin(), "", &parts);
  return absl::StrJoin(parts, " ");
}

std::vector<std::string> EventRow(const v1::HostEvent& entry, absl::TimeZone zone) {
  const v1::Event& event = entry.event();
  const v1::Endpoints& endpoints = event.endpoints();
  return {EventTime(event.time_unix_ns(), zone),
          entry.host(),
          std::string(RoleName(event.role())),
          FormatAddress(endpoints.local_address(), endpoints.local_port()),
          "->",
          FormatAddress(endpoints.remote_address(), endpoints.remote_port()),
          EventKindName(event),
          EventDetails(event)};
}

}  // namespace tcpscope::cli
