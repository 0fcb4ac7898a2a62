// Flag values -> requests. Names on the command line are the metric label values (lower case,
// see enum_names.h); an empty or zero filter field means "any", as observer.proto defines.
#include "cli/request_builder.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/address_filter.h"
#include "cli/enum_names.h"
#include "cli/flags.h"
#include "common/bearer_token.h"
#include "common/names.h"
#include "common/tls_flags.h"

namespace tcpscope::cli {
namespace {

// Shown when neither --last, --since nor --follow asks for something else.
constexpr uint32_t kDefaultLast = 20;

absl::Status BadFlag(absl::string_view flag, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", value, ": ", why));
}

absl::Status ValidateService(const std::string& target) {
  if (target.empty()) return BadFlag("service", target, "empty; expected HOST:PORT");
  // gRPC target URIs (dns:///host:port, unix:/path, ipv4:..., ipv6:...) are passed through.
  for (absl::string_view scheme : {"dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(target, scheme)) return absl::OkStatus();
  }
  const size_t colon = target.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return BadFlag("service", target, "expected HOST:PORT (e.g. 127.0.0.1:7700)");
  }
  const std::string host = target.substr(0, colon);
  const std::string port = target.substr(colon + 1);
  if (host.find(':') != std::string::npos && !(host.front() == '[' && host.back() == ']')) {
    return BadFlag("service", target, "an IPv6 address needs brackets: [::1]:7700");
  }
  int number = 0;
  if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos ||
      !absl::SimpleAtoi(port, &number) || number < 1 || number > 65535) {
    return BadFlag("service", target, absl::StrCat("'", port, "' is not a port (1..65535)"));
  }
  return absl::OkStatus();
}

absl::Status CheckHost(const Invocation& invocation, std::string* host) {
  if (!invocation.Given("host")) return absl::OkStatus();
  const std::string value = absl::GetFlag(FLAGS_host);
  if (absl::Status status = ValidateHostName(value); !status.ok()) {
    return BadFlag("host", value, status.message());
  }
  *host = value;
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> PortFilter() {
  const int64_t port = absl::GetFlag(FLAGS_port);
  if (port < 0 || port > 65535) {
    return BadFlag("port", absl::StrCat(port), "outside 0..65535 (0: any port)");
  }
  return static_cast<uint32_t>(port);
}

absl::StatusOr<std::string> AddressFilter(const Invocation& invocation) {
  if (!invocation.Given("address")) return std::string();
  const std::string value = absl::GetFlag(FLAGS_address);
  absl::StatusOr<std::string> canonical = CanonicalAddressFilter(value);
  if (!canonical.ok()) return BadFlag("address", value, canonical.status().message());
  return *canonical;
}

// A lower-case enum name given on the command line, or an error listing the valid ones.
absl::StatusOr<int> EnumFlag(absl::string_view flag, const std::string& value,
                             const EnumNames& names, absl::string_view what) {
  if (std::optional<int> number = names.Value(value)) return *number;
  return BadFlag(flag, value, absl::StrCat("not ", what, " (", names.List(), ")"));
}

absl::StatusOr<std::vector<v1::EventKind>> KindsFilter(const Invocation& invocation) {
  std::vector<v1::EventKind> kinds;
  if (!invocation.Given("type")) return kinds;
  const std::string value = absl::GetFlag(FLAGS_type);
  for (absl::string_view item : absl::StrSplit(value, ',')) {
    const std::string name(absl::StripAsciiWhitespace(item));
    if (name.empty()) {
      return BadFlag("type", value, "an empty kind; expected a comma list of kinds");
    }
    std::optional<int> kind = EventKindNames().Value(name);
    if (!kind.has_value()) {
      return BadFlag(
          "type", value,
          absl::StrCat("'", name, "' is not an event kind (", EventKindNames().List(), ")"));
    }
    if (std::find(kinds.begin(), kinds.end(), *kind) == kinds.end()) {
      kinds.push_back(static_cast<v1::EventKind>(*kind));
    }
  }
  return kinds;
}

bool Contains(const std::vector<v1::EventKind>& kinds, v1::EventKind kind) {
  return std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
}

// --reason names a close reason or a handshake failure reason ("other" is both); it must not
// contradict --type, which would leave nothing to show.
absl::Status ApplyReason(const Invocation& invocation, const std::vector<v1::EventKind>& kinds,
                         v1::EventFilter* filter) {
  if (!invocation.Given("reason")) return absl::OkStatus();
  const std::string value = absl::GetFlag(FLAGS_reason);
  std::optional<int> close = CloseReasonNames().Value(value);
  std::optional<int> failure = HandshakeFailureReasonNames().Value(value);
  if (!close.has_value() && !failure.has_value()) {
    return BadFlag("reason", value,
                   absl::StrCat("neither a close reason (", CloseReasonNames().List(),
                                ") nor a handshake failure reason (",
                                HandshakeFailureReasonNames().List(), ")"));
  }
  if (!kinds.empty()) {
    const bool closes = close.has_value();
    const bool failures = failure.has_value();
    if (!Contains(kinds, v1::EVENT_KIND_CLOSE)) close.reset();
    if (!Contains(kinds, v1::EVENT_KIND_HANDSHAKE_FAILED)) failure.reset();
    if (!close.has_value() && !failure.has_value()) {
      std::vector<absl::string_view> needed;
      if (closes) needed.push_back("close");
      if (failures) needed.push_back("handshake_failed");
      return BadFlag(
          "reason", value,
          absl::StrCat("applies to ", absl::StrJoin(needed, " and "),
                       " events, which --type=", absl::GetFlag(FLAGS_type), " leaves out"));
    }
  }
  if (close.has_value()) filter->set_close_reason(static_cast<v1::CloseReason>(*close));
  if (failure.has_value()) {
    filter->set_failure_reason(static_cast<v1::HandshakeFailureReason>(*failure));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::HalfOpenReason> HalfOpenReasonFlag() {
  absl::StatusOr<int> reason = EnumFlag("half_open_reason", absl::GetFlag(FLAGS_half_open_reason),
                                        HalfOpenReasonNames(), "a half-open reason");
  if (!reason.ok()) return reason.status();
  return static_cast<v1::HalfOpenReason>(*reason);
}

// --half_open_reason keeps half_open events only, so --type must allow them, and --reason (which
// keeps closes or handshake failures only) would leave nothing.
absl::Status ApplyHalfOpenReason(const Invocation& invocation,
                                 const std::vector<v1::EventKind>& kinds, v1::EventFilter* filter) {
  if (!invocation.Given("half_open_reason")) return absl::OkStatus();
  absl::StatusOr<v1::HalfOpenReason> reason = HalfOpenReasonFlag();
  if (!reason.ok()) return reason.status();
  const std::string value = absl::GetFlag(FLAGS_half_open_reason);
  if (!kinds.empty() && !Contains(kinds, v1::EVENT_KIND_HALF_OPEN)) {
    return BadFlag("half_open_reason", value,
                   absl::StrCat("applies to half_open events, which --type=",
                                absl::GetFlag(FLAGS_type), " leaves out"));
  }
  if (invocation.Given("reason")) {
    return BadFlag(
        "half_open_reason", value,
        absl::StrCat("keeps half_open events only and --reason=", absl::GetFlag(FLAGS_reason),
                     " closes or handshake failures only, so nothing would match; give one"));
  }
  filter->set_half_open_reason(*reason);
  return absl::OkStatus();
}

// The longest --process command accepted: Linux keeps 15 characters of a command (TASK_COMM_LEN),
// so this only bounds what a user could paste by mistake.
constexpr size_t kMaxCommandLength = 64;

// --process: a pid (digits, canonical: no leading zeros) or a command of printable characters.
absl::StatusOr<std::string> ProcessFilter(const std::string& value) {
  if (value.empty()) return BadFlag("process", value, "empty; expected a pid or a command");
  if (value.find_first_not_of("0123456789") == std::string::npos) {
    uint32_t pid = 0;
    if (!absl::SimpleAtoi(value, &pid) || pid == 0) {
      return BadFlag("process", value, "not a pid (1..4294967295)");
    }
    return absl::StrCat(pid);
  }
  if (value.size() > kMaxCommandLength) {
    return BadFlag("process", value,
                   absl::StrCat("a command is at most ", kMaxCommandLength, " characters"));
  }
  for (size_t i = 0; i < value.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    if (c < 0x20 || c > 0x7e) {
      return BadFlag("process", absl::CHexEscape(value),
                     absl::StrCat("a command has printable characters only (0x",
                                  absl::Hex(c, absl::kZeroPad2), " at position ", i, ")"));
    }
  }
  return value;
}

// --namespace, --pod, --container (names by the rule of every workload name, common/names.h) and
// --process, set on a ListConnectionsRequest or an EventFilter (the same four fields).
template <typename Request>
absl::Status ApplyWorkloadFilters(const Invocation& invocation, Request* request) {
  struct NameFlag {
    absl::string_view flag;
    absl::string_view kind;  // as ValidateName's message names it
    const absl::Flag<std::string>* value;
    std::string* (Request::*field)();
  };
  const NameFlag names[] = {
      {"namespace", "namespace", &FLAGS_namespace, &Request::mutable_pod_namespace},
      {"pod", "pod name", &FLAGS_pod, &Request::mutable_pod},
      {"container", "container name or id", &FLAGS_container, &Request::mutable_container}};
  for (const NameFlag& name : names) {
    if (!invocation.Given(name.flag)) continue;
    const std::string value = absl::GetFlag(*name.value);
    if (absl::Status status = ValidateName(name.kind, value); !status.ok()) {
      return BadFlag(name.flag, absl::CHexEscape(value), status.message());
    }
    *(request->*name.field)() = value;
  }
  if (invocation.Given("process")) {
    absl::StatusOr<std::string> process = ProcessFilter(absl::GetFlag(FLAGS_process));
    if (!process.ok()) return process.status();
    request->set_process(*process);
  }
  return absl::OkStatus();
}

// --since=DURATION is that long before `now`; otherwise an RFC 3339 time.
absl::StatusOr<absl::Time> SinceFlag(const std::string& value, absl::Time now) {
  absl::Time since;
  absl::Duration ago;
  std::string error;
  if (absl::ParseDuration(value, &ago)) {
    if (ago <= absl::ZeroDuration()) {
      return BadFlag("since", value, "a duration must be positive (how long ago)");
    }
    since = now - ago;
  } else if (absl::ParseTime(absl::RFC3339_full, value, &since, &error)) {
    if (since > now) return BadFlag("since", value, "in the future");
  } else {
    return BadFlag("since", value,
                   "neither a duration (30s, 5m, 1h30m) nor an RFC 3339 time "
                   "(2024-05-01T10:00:00Z, 2024-05-01T12:00:00.5+02:00)");
  }
  if (since <= absl::UnixEpoch()) return BadFlag("since", value, "before 1970");
  return since;
}

}  // namespace

absl::StatusOr<CommonOptions> BuildCommonOptions() {
  CommonOptions options;
  options.service = absl::GetFlag(FLAGS_service);
  if (absl::Status status = ValidateService(options.service); !status.ok()) return status;
  const std::string format = absl::GetFlag(FLAGS_o);
  if (format == "table") {
    options.format = OutputFormat::kTable;
  } else if (format == "json") {
    options.format = OutputFormat::kJson;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("-o ", format, ": expected table or json"));
  }
  options.timeout = absl::GetFlag(FLAGS_timeout);
  if (options.timeout <= absl::ZeroDuration() || options.timeout == absl::InfiniteDuration()) {
    return BadFlag("timeout", absl::FormatDuration(options.timeout), "must be positive and finite");
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeChannelCredentials(TlsFilesFromFlags());
  if (!credentials.ok()) return credentials.status();
  options.credentials = *std::move(credentials);
  if (const std::string path = absl::GetFlag(FLAGS_token_file); !path.empty()) {
    absl::StatusOr<std::string> token = ReadBearerToken(path);
    if (!token.ok()) return BadFlag("token_file", path, token.status().message());
    options.token = *std::move(token);
  }
  return options;
}

void AddToken(const CommonOptions& options, grpc::ClientContext& context) {
  if (!options.token.empty()) context.AddMetadata("authorization", "Bearer " + options.token);
}

absl::StatusOr<v1::ListConnectionsRequest> BuildListConnectionsRequest(
    const Invocation& invocation) {
  v1::ListConnectionsRequest request;
  if (absl::Status status = CheckHost(invocation, request.mutable_host()); !status.ok()) {
    return status;
  }
  if (invocation.Given("state")) {
    absl::StatusOr<int> state =
        EnumFlag("state", absl::GetFlag(FLAGS_state), TcpStateNames(), "a TCP state");
    if (!state.ok()) return state.status();
    request.set_state(static_cast<v1::TcpState>(*state));
  }
  absl::StatusOr<uint32_t> port = PortFilter();
  if (!port.ok()) return port.status();
  request.set_port(*port);
  if (invocation.Given("keepalive")) {
    const std::string keepalive = absl::GetFlag(FLAGS_keepalive);
    if (keepalive == "on") {
      request.set_keepalive(v1::KEEPALIVE_FILTER_ON);
    } else if (keepalive == "off") {
      request.set_keepalive(v1::KEEPALIVE_FILTER_OFF);
    } else {
      return BadFlag("keepalive", keepalive, "expected on or off");
    }
  }
  if (invocation.Given("at_risk")) {
    if (!absl::GetFlag(FLAGS_at_risk)) {
      // The API filters for at-risk connections only; "not at risk" cannot be asked for.
      return BadFlag("at_risk", "false",
                     "only connections at risk can be selected; leave the flag out for all");
    }
    request.set_at_risk(true);
  }
  if (invocation.Given("at_risk_reason")) {
    absl::StatusOr<int> reason = EnumFlag("at_risk_reason", absl::GetFlag(FLAGS_at_risk_reason),
                                          AtRiskReasonNames(), "an at-risk reason");
    if (!reason.ok()) return reason.status();
    request.set_at_risk(true);
    request.set_at_risk_reason(static_cast<v1::AtRiskReason>(*reason));
  }
  if (invocation.Given("half_open")) {
    if (!absl::GetFlag(FLAGS_half_open)) {
      // As with --at_risk: "not half-open" cannot be asked for.
      return BadFlag("half_open", "false",
                     "only half-open ends can be selected; leave the flag out for all");
    }
    request.set_half_open(true);
  }
  if (invocation.Given("half_open_reason")) {
    absl::StatusOr<v1::HalfOpenReason> reason = HalfOpenReasonFlag();
    if (!reason.ok()) return reason.status();
    request.set_half_open(true);
    request.set_half_open_reason(*reason);
  }
  request.set_paired(absl::GetFlag(FLAGS_paired));
  absl::StatusOr<std::string> address = AddressFilter(invocation);
  if (!address.ok()) return address.status();
  request.set_address(*address);
  if (absl::Status status = ApplyWorkloadFilters(invocation, &request); !status.ok()) {
    return status;
  }
  return request;
}

absl::StatusOr<v1::GetEventsRequest> BuildGetEventsRequest(const Invocation& invocation,
                                                           absl::Time now) {
  v1::GetEventsRequest request;
  v1::EventFilter& filter = *request.mutable_filter();
  if (absl::Status status = CheckHost(invocation, filter.mutable_host()); !status.ok()) {
    return status;
  }
  absl::StatusOr<std::vector<v1::EventKind>> kinds = KindsFilter(invocation);
  if (!kinds.ok()) return kinds.status();
  for (v1::EventKind kind : *kinds) filter.add_kinds(kind);
  if (absl::Status status = ApplyReason(invocation, *kinds, &filter); !status.ok()) {
    return status;
  }
  if (absl::Status status = ApplyHalfOpenReason(invocation, *kinds, &filter); !status.ok()) {
    return status;
  }
  absl::StatusOr<uint32_t> port = PortFilter();
  if (!port.ok()) return port.status();
  filter.set_port(*port);
  absl::StatusOr<std::string> address = AddressFilter(invocation);
  if (!address.ok()) return address.status();
  filter.set_address(*address);
  if (invocation.Given("role")) {
    absl::StatusOr<int> role = EnumFlag("role", absl::GetFlag(FLAGS_role), RoleNames(), "a role");
    if (!role.ok()) return role.status();
    filter.set_role(static_cast<v1::Role>(*role));
  }
  if (absl::Status status = ApplyWorkloadFilters(invocation, &filter); !status.ok()) {
    return status;
  }

  const bool follow = absl::GetFlag(FLAGS_follow);
  request.set_follow(follow);
  if (invocation.Given("since")) {
    absl::StatusOr<absl::Time> since = SinceFlag(absl::GetFlag(FLAGS_since), now);
    if (!since.ok()) return since.status();
    request.set_since_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(*since)));
  }
  if (invocation.Given("last")) {
    const int64_t last = absl::GetFlag(FLAGS_last);
    if (last < 0 || last > std::numeric_limits<uint32_t>::max()) {
      return BadFlag("last", absl::StrCat(last), "outside 0..4294967295");
    }
    if (last == 0 && !follow && !invocation.Given("since")) {
      return BadFlag("last", "0", "asks for no events; add --follow for live events only");
    }
    request.set_last(static_cast<uint32_t>(last));
  } else if (!invocation.Given("since") && !follow) {
    request.set_last(kDefaultLast);
  }
  return request;
}

absl::StatusOr<v1::SummaryRequest> BuildSummaryRequest(const Invocation& invocation) {
  v1::SummaryRequest request;
  if (absl::Status status = CheckHost(invocation, request.mutable_host()); !status.ok()) {
    return status;
  }
  return request;
}

}  // namespace tcpscope::cli
