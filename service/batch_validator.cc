// Field-by-field validation of agent messages.
#include "service/batch_validator.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/names.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "service/packed_ends.h"

namespace tcpscope::service {
namespace {

// 2000-01-01: anything earlier is a broken clock or garbage.
constexpr int64_t kEarliestUnixNs = 946684800LL * 1000000000LL;
constexpr uint64_t kMaxLifetimeUs = 10ULL * 366 * 86400 * 1000000;  // ten years
constexpr size_t kMaxCommandLength = 64;
constexpr size_t kMaxBootIdLength = 64;
constexpr size_t kMaxVersionLength = 64;
constexpr int kMaxCapabilities = 32;
constexpr size_t kMaxProblemLength = 256;

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

bool PrintableAscii(absl::string_view text) {
  for (char c : text) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

absl::Status CheckTime(absl::string_view where, uint64_t unix_ns, absl::Time now,
                       const ValidationLimits& limits) {
  const int64_t latest = absl::ToUnixNanos(now + limits.max_clock_skew);
  if (unix_ns < static_cast<uint64_t>(kEarliestUnixNs) || unix_ns > static_cast<uint64_t>(latest)) {
    return Invalid(where, absl::StrCat("time ", unix_ns, " ns is not between 2000-01-01 and ",
                                       absl::FormatDuration(limits.max_clock_skew), " from now"));
  }
  return absl::OkStatus();
}

absl::Status CheckEndpoints(absl::string_view where, const v1::Endpoints& endpoints) {
  const size_t local = endpoints.local_address().size();
  const size_t remote = endpoints.remote_address().size();
  if ((local != 4 && local != 16) || remote != local) {
    return Invalid(where, absl::StrCat("addresses must both be 4 (IPv4) or 16 (IPv6) bytes, got ",
                                       local, " and ", remote));
  }
  if (endpoints.local_port() > 65535 || endpoints.remote_port() > 65535) {
    return Invalid(where, absl::StrCat("port out of range: ", endpoints.local_port(), ", ",
                                       endpoints.remote_port()));
  }
  return absl::OkStatus();
}

// Workload names become label values, table cells and filter targets: each is empty (not
// known) or passes the one name rule (common/names.h).
absl::Status CheckOrigin(absl::string_view where, const v1::Origin& origin) {
  if (origin.command().size() > kMaxCommandLength || !PrintableAscii(origin.command())) {
    return Invalid(where, "origin.command must be at most 64 printable ASCII characters");
  }
  const std::pair<absl::string_view, const std::string*> names[] = {
      {"origin.container_id", &origin.container_id()},
      {"origin.container_name", &origin.container_name()},
      {"origin.pod_namespace", &origin.pod_namespace()},
      {"origin.pod", &origin.pod()},
      {"origin.pod_uid", &origin.pod_uid()},
  };
  for (const auto& [field, name] : names) {
    if (name->empty()) continue;
    if (absl::Status s = ValidateName(field, *name); !s.ok()) return Invalid(where, s.message());
  }
  if (!v1::ContainerRuntime_IsValid(origin.runtime())) {
    return Invalid(where, absl::StrCat("origin.runtime: unknown container runtime ",
                                       static_cast<int>(origin.runtime())));
  }
  return absl::OkStatus();
}

// Checks of items in a list report "<where>: <what>" with an empty `where`; Located() prefixes
// the item's position only on failure, so the valid path formats nothing.
absl::Status Located(absl::Status status, absl::string_view list, int index) {
  if (status.ok()) return status;
  return absl::InvalidArgumentError(absl::StrCat(list, index, status.message()));
}

// An end's or event's origin: inline (checked here), or a reference to one of the `origins`
// entries of its `table` ("snapshot" or "batch"), which were checked once each.
template <typename Item>
absl::Status CheckOriginOf(absl::string_view where, const Item& item, int origins,
                           absl::string_view table) {
  if (item.origin_ref() == 0) return CheckOrigin(where, item.origin());
  if (item.has_origin()) {
    return Invalid(where, "an inline origin and an origin_ref: one or the other");
  }
  if (item.origin_ref() > static_cast<uint32_t>(origins)) {
    return Invalid(where, absl::StrCat("origin_ref ", item.origin_ref(), " beyond the ", table,
                                       "'s ", origins, " origins"));
  }
  return absl::OkStatus();
}

// A table of distinct origins: at most one per item referring to it, each checked.
absl::Status CheckOriginTable(absl::string_view table,
                              const google::protobuf::RepeatedPtrField<v1::Origin>& origins,
                              int items, absl::string_view item_kind) {
  if (origins.size() > std::max(items, 1)) {
    return Invalid(table, absl::StrCat(origins.size(), " origins for ", items, " ", item_kind));
  }
  for (int i = 0; i < origins.size(); ++i) {
    if (absl::Status s =
            Located(CheckOrigin("", origins.Get(i)), absl::StrCat(table, " origin "), i);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// Enum fields become labels, table cells and filter targets: each must hold a value this build
// knows. Reflection, so a new kind is validated without a case of its own; the kinds above have
// their own cases (faster, and stricter where UNSPECIFIED makes no sense).
absl::Status CheckEnums(absl::string_view where, const google::protobuf::Message& message) {
  const google::protobuf::Reflection* reflection = message.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const google::protobuf::FieldDescriptor* field : fields) {
    if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
          if (absl::Status s = CheckEnums(where, reflection->GetRepeatedMessage(message, field, i));
              !s.ok()) {
            return s;
          }
        }
      } else if (absl::Status s = CheckEnums(where, reflection->GetMessage(message, field));
                 !s.ok()) {
        return s;
      }
      continue;
    }
    if (field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_ENUM) continue;
    const int count = field->is_repeated() ? reflection->FieldSize(message, field) : 1;
    for (int i = 0; i < count; ++i) {
      const int value = field->is_repeated() ? reflection->GetRepeatedEnumValue(message, field, i)
                                             : reflection->GetEnumValue(message, field);
      if (field->enum_type()->FindValueByNumber(value) == nullptr) {
        return Invalid(where, absl::StrCat(field->full_name(), ": unknown value ", value));
      }
    }
  }
  return absl::OkStatus();
}

// What every kind must satisfy: known enum values in its message.
absl::Status CheckAnyKind(absl::string_view where, const v1::Event& event) {
  const google::protobuf::FieldDescriptor* kind = event.GetReflection()->GetOneofFieldDescriptor(
      event, v1::Event::descriptor()->FindOneofByName("kind"));
  if (kind == nullptr) return Invalid(where, "event has no kind");
  return CheckEnums(where, event.GetReflection()->GetMessage(event, kind));
}

// `origins`: the size of the batch's origin table, which was checked entry by entry.
absl::Status CheckEvent(absl::string_view where, const v1::Event& event, int origins,
                        absl::Time now, const ValidationLimits& limits) {
  if (absl::Status s = CheckTime(where, event.time_unix_ns(), now, limits); !s.ok()) return s;
  if (absl::Status s = CheckEndpoints(where, event.endpoints()); !s.ok()) return s;
  if (absl::Status s = CheckOriginOf(where, event, origins, "batch"); !s.ok()) return s;
  // A known role (a label); unspecified is "not known", which agents report rather than guess.
  if (!v1::Role_IsValid(event.role())) {
    return Invalid(where, absl::StrCat("unknown role ", event.role()));
  }
  switch (event.kind_case()) {
    case v1::Event::kHandshake:
      return absl::OkStatus();
    case v1::Event::kHandshakeFailed: {
      const auto reason = event.handshake_failed().reason();
      if (!v1::HandshakeFailureReason_IsValid(reason) ||
          reason == v1::HANDSHAKE_FAILURE_REASON_UNSPECIFIED) {
        return Invalid(where, absl::StrCat("unknown handshake failure reason ", reason));
      }
      return absl::OkStatus();
    }
    case v1::Event::kClose: {
      const v1::Close& close = event.close();
      if (!v1::CloseInitiator_IsValid(close.initiator()) ||
          close.initiator() == v1::CLOSE_INITIATOR_UNSPECIFIED) {
        return Invalid(where, absl::StrCat("unknown close initiator ", close.initiator()));
      }
      if (!v1::CloseReason_IsValid(close.reason()) ||
          close.reason() == v1::CLOSE_REASON_UNSPECIFIED) {
        return Invalid(where, absl::StrCat("unknown close reason ", close.reason()));
      }
      if (!v1::TcpState_IsValid(close.last_state())) {
        return Invalid(where, absl::StrCat("unknown TCP state ", close.last_state()));
      }
      if (close.has_lifetime_us() && close.lifetime_us() > kMaxLifetimeUs) {
        return Invalid(where, absl::StrCat("lifetime ", close.lifetime_us(), " us is impossible"));
      }
      return absl::OkStatus();
    }
    case v1::Event::kKeepaliveProbe:
      if (event.keepalive_probe().probe_number() == 0) {
        return Invalid(where, "keepalive probe number must start at 1");
      }
      return absl::OkStatus();
    case v1::Event::kKeepaliveTimeout:
      return absl::OkStatus();
    case v1::Event::kHalfOpen:
      return Invalid(where,
                     "half_open events are the service's findings; an agent cannot send them");
    case v1::Event::KIND_NOT_SET:
      return Invalid(where, "event has no kind (or a kind this service does not know)");
    default:
      // A kind without rules of its own (keepalive_answered, and a new kind until it needs some):
      // the rules every kind follows.
      return CheckAnyKind(where, event);
  }
}

// `origins`: the size of the snapshot's origin table, which was checked entry by entry.
absl::Status CheckConnection(const v1::Connection& connection, int origins, absl::Time now,
                             const ValidationLimits& limits) {
  constexpr absl::string_view where = "";
  if (!v1::TcpState_IsValid(connection.state()) ||
      connection.state() == v1::TCP_STATE_UNSPECIFIED ||
      connection.state() == v1::TCP_STATE_LISTEN) {
    return Invalid(where, absl::StrCat("state ", connection.state(), " is not a connection state"));
  }
  if (!v1::Role_IsValid(connection.role())) {
    return Invalid(where, absl::StrCat("unknown role ", connection.role()));
  }
  if (absl::Status s = CheckEndpoints(where, connection.endpoints()); !s.ok()) return s;
  if (absl::Status s = CheckOriginOf(where, connection, origins, "snapshot"); !s.ok()) return s;
  if (connection.idle_ms() > kMaxLifetimeUs / 1000) {
    return Invalid(where, absl::StrCat("idle time ", connection.idle_ms(), " ms is impossible"));
  }
  if (connection.state_since_unix_ns() != 0) {
    if (absl::Status s = CheckTime(where, connection.state_since_unix_ns(), now, limits); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSnapshot(const v1::Snapshot& snapshot, absl::Time now,
                           const ValidationLimits& limits) {
  if (snapshot.connections_size() > limits.max_snapshot_connections) {
    return Invalid("snapshot", absl::StrCat(snapshot.connections_size(), " connections; at most ",
                                            limits.max_snapshot_connections));
  }
  if (absl::Status s = CheckTime("snapshot", snapshot.time_unix_ns(), now, limits); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckOriginTable("snapshot", snapshot.origins(), snapshot.connections_size(),
                                        "connections");
      !s.ok()) {
    return s;
  }
  for (int i = 0; i < snapshot.connections_size(); ++i) {
    if (absl::Status s =
            Located(CheckConnection(snapshot.connections(i), snapshot.origins_size(), now, limits),
                    "snapshot connection ", i);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// A peer replica's packed ends (service/packed_ends.h): what CheckSnapshot checks of a snapshot's
// connections, on the records, and every position within its table.
absl::Status CheckPackedEnds(const v1::PackedEnds& packed, absl::Time now,
                             const ValidationLimits& limits) {
  constexpr absl::string_view where = "fragment ends";
  if (packed.version() != kPackedEndVersion) {
    return Invalid(where, absl::StrCat("record layout ", packed.version(), "; this replica reads ",
                                       kPackedEndVersion));
  }
  if (packed.records().size() % kPackedEndSize != 0 || packed.ipv6_addresses().size() % 16 != 0) {
    return Invalid(where, absl::StrCat(packed.records().size(), " bytes of records and ",
                                       packed.ipv6_addresses().size(),
                                       " of IPv6 addresses: not whole records and addresses"));
  }
  const size_t count = packed.records().size() / kPackedEndSize;
  if (count > static_cast<size_t>(limits.max_snapshot_connections)) {
    return Invalid(where, absl::StrCat(count, " ends; at most ", limits.max_snapshot_connections));
  }
  if (absl::Status s = CheckTime(where, packed.time_unix_ns(), now, limits); !s.ok()) return s;
  if (absl::Status s = CheckOriginTable(where, packed.origins(), static_cast<int>(count), "ends");
      !s.ok()) {
    return s;
  }
  const uint32_t origins = static_cast<uint32_t>(packed.origins_size());
  const uint32_t ipv6 = static_cast<uint32_t>(packed.ipv6_addresses().size() / 16);
  for (size_t i = 0; i < count; ++i) {
    const EndRecord end = ReadPackedEnd(packed.records().data() + i * kPackedEndSize);
    const std::string at = absl::StrCat("fragment end ", i);
    if (!v1::TcpState_IsValid(end.state) || end.tcp_state() == v1::TCP_STATE_UNSPECIFIED ||
        end.tcp_state() == v1::TCP_STATE_LISTEN) {
      return Invalid(at, absl::StrCat("state ", end.state, " is not a connection state"));
    }
    if (!v1::Role_IsValid(end.role)) return Invalid(at, absl::StrCat("unknown role ", end.role));
    if (!v1::AtRiskReason_IsValid(end.at_risk)) {
      return Invalid(at, absl::StrCat("unknown at-risk reason ", end.at_risk));
    }
    if (end.origin >= origins) {
      return Invalid(at, absl::StrCat("origin ", end.origin, " beyond the ", origins, " origins"));
    }
    if (end.ipv6 && (end.local_address >= ipv6 || end.remote_address >= ipv6)) {
      return Invalid(at, absl::StrCat("IPv6 addresses ", end.local_address, " and ",
                                      end.remote_address, " beyond the ", ipv6, " in the table"));
    }
    if (end.idle_ms > kMaxLifetimeUs / 1000) {
      return Invalid(at, absl::StrCat("idle time ", end.idle_ms, " ms is impossible"));
    }
    if (end.state_since_unix_ns != 0) {
      if (absl::Status s = CheckTime(at, end.state_since_unix_ns, now, limits); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateHello(const v1::Hello& hello) {
  if (absl::Status s = ValidateHostName(hello.host_name()); !s.ok()) {
    return Invalid("hello", s.message());
  }
  if (hello.agent_version().size() > kMaxVersionLength || !PrintableAscii(hello.agent_version())) {
    return Invalid("hello", "agent_version must be at most 64 printable ASCII characters");
  }
  if (hello.boot_id().empty() || hello.boot_id().size() > kMaxBootIdLength ||
      !PrintableAscii(hello.boot_id())) {
    return Invalid("hello", "boot_id must be 1 to 64 printable ASCII characters");
  }
  if (hello.instance_id() == 0) return Invalid("hello", "instance_id must not be 0");
  if (!v1::SourceKind_IsValid(hello.source()) || hello.source() == v1::SOURCE_KIND_UNSPECIFIED) {
    return Invalid("hello", absl::StrCat("unknown source kind ", hello.source()));
  }
  if (hello.capabilities_size() > kMaxCapabilities) {
    return Invalid("hello", "too many capabilities");
  }
  for (const std::string& capability : hello.capabilities()) {
    if (capability.empty() || capability.size() > 32 || !PrintableAscii(capability)) {
      return Invalid("hello", "capabilities must be 1 to 32 printable ASCII characters");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateBatch(const v1::Batch& batch, absl::Time now, const ValidationLimits& limits) {
  if (batch.seq() == 0) return Invalid("batch", "seq must start at 1");
  if (batch.events_size() > limits.max_events_per_batch) {
    return Invalid("batch", absl::StrCat(batch.events_size(), " events; at most ",
                                         limits.max_events_per_batch));
  }
  if (batch.has_source_health()) {
    const v1::SourceHealth& health = batch.source_health();
    if (!v1::SourceState_IsValid(health.state())) {
      return Invalid("source_health", absl::StrCat("unknown state ", health.state()));
    }
    // Logged and shown by the service as is.
    if (health.problem().size() > kMaxProblemLength || !PrintableAscii(health.problem())) {
      return Invalid("source_health", "problem must be at most 256 printable ASCII characters");
    }
  }
  if (absl::Status s = CheckOriginTable("batch", batch.origins(), batch.events_size(), "events");
      !s.ok()) {
    return s;
  }
  for (int i = 0; i < batch.events_size(); ++i) {
    if (absl::Status s = Located(CheckEvent("", batch.events(i), batch.origins_size(), now, limits),
                                 " event ", i);
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("batch ", batch.seq(), s.message()));
    }
  }
  if (batch.has_snapshot()) return CheckSnapshot(batch.snapshot(), now, limits);
  return absl::OkStatus();
}

absl::Status ValidateFragment(const v1::HostFragment& fragment, absl::Time now,
                              const ValidationLimits& limits) {
  if (absl::Status s = ValidateHostName(fragment.host()); !s.ok()) {
    return Invalid("fragment", s.message());
  }
  if (fragment.boot_id().empty() || fragment.boot_id().size() > kMaxBootIdLength ||
      !PrintableAscii(fragment.boot_id())) {
    return Invalid("fragment", "boot_id must be 1 to 64 printable ASCII characters");
  }
  if (fragment.closes_size() > limits.max_events_per_batch) {
    return Invalid("fragment", absl::StrCat(fragment.closes_size(), " closes; at most ",
                                            limits.max_events_per_batch));
  }
  for (int i = 0; i < fragment.closes_size(); ++i) {
    const v1::FragmentClose& close = fragment.closes(i);
    const std::string where = absl::StrCat("fragment close ", i);
    if (absl::Status s = CheckEndpoints(where, close.endpoints()); !s.ok()) return s;
    if (absl::Status s = CheckTime(where, close.time_unix_ns(), now, limits); !s.ok()) return s;
  }
  if (fragment.has_ends()) return CheckPackedEnds(fragment.ends(), now, limits);
  return absl::OkStatus();
}

absl::Status ValidateHostStatus(const v1::HostStatus& status) {
  if (absl::Status s = ValidateHostName(status.host()); !s.ok()) {
    return Invalid("host status", s.message());
  }
  if (!v1::HostStatus::Change_IsValid(status.change()) ||
      status.change() == v1::HostStatus::CHANGE_UNSPECIFIED) {
    return Invalid("host status", absl::StrCat("unknown change ", status.change()));
  }
  return absl::OkStatus();
}

absl::Status ValidateFindings(const v1::HostFindings& findings, absl::Time now,
                              const ValidationLimits& limits) {
  if (absl::Status s = ValidateHostName(findings.host()); !s.ok()) {
    return Invalid("findings", s.message());
  }
  if (findings.half_open_size() > limits.max_events_per_batch ||
      findings.half_open_now().ends_size() > limits.max_snapshot_connections) {
    return Invalid("findings", "too many findings");
  }
  for (int i = 0; i < findings.half_open_size(); ++i) {
    const v1::Event& event = findings.half_open(i);
    const std::string where = absl::StrCat("findings event ", i);
    if (!event.has_half_open()) return Invalid(where, "is not a half_open event");
    if (event.origin_ref() != 0) return Invalid(where, "must carry its origin inline");
    if (absl::Status s = CheckTime(where, event.time_unix_ns(), now, limits); !s.ok()) return s;
    if (absl::Status s = CheckEndpoints(where, event.endpoints()); !s.ok()) return s;
    if (absl::Status s = CheckOrigin(where, event.origin()); !s.ok()) return s;
    if (!v1::Role_IsValid(event.role())) {
      return Invalid(where, absl::StrCat("unknown role ", event.role()));
    }
    const v1::HalfOpen& half_open = event.half_open();
    if (!v1::HalfOpenReason_IsValid(half_open.reason()) ||
        half_open.reason() == v1::HALF_OPEN_REASON_UNSPECIFIED) {
      return Invalid(where, absl::StrCat("unknown reason ", half_open.reason()));
    }
    if (absl::Status s = CheckEnums(where, half_open); !s.ok()) return s;
    if (absl::Status s = ValidateHostName(half_open.peer_host()); !s.ok()) {
      return Invalid(where, s.message());
    }
    if (absl::Status s = CheckOrigin(where, half_open.peer_origin()); !s.ok()) return s;
  }
  for (int i = 0; i < findings.half_open_now().ends_size(); ++i) {
    const v1::HalfOpenEnd& end = findings.half_open_now().ends(i);
    const std::string where = absl::StrCat("findings half-open end ", i);
    if (!v1::HalfOpenReason_IsValid(end.reason()) ||
        end.reason() == v1::HALF_OPEN_REASON_UNSPECIFIED) {
      return Invalid(where, absl::StrCat("unknown reason ", end.reason()));
    }
    if (absl::Status s = CheckOrigin(where, end.origin()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace tcpscope::service
