// Filter validation and matching.
#include "service/query_filters.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/names.h"
#include "tcpscope/v1/event_kinds.h"

namespace tcpscope::service {

namespace {

absl::Status CheckHost(absl::string_view field, const std::string& host) {
  if (host.empty()) return absl::OkStatus();
  if (absl::Status s = ValidateHostName(host); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status CheckPort(absl::string_view field, uint32_t port) {
  if (port <= 65535) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", port, " is outside 0..65535"));
}

absl::StatusOr<std::optional<AddressFilter>> ParseAddress(absl::string_view field,
                                                          const std::string& text) {
  if (text.empty()) return std::nullopt;
  absl::StatusOr<AddressFilter> address = AddressFilter::Parse(text);
  if (!address.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", address.status().message()));
  }
  return *address;
}

bool MatchesEndpoints(const v1::Endpoints& endpoints, uint32_t port,
                      const std::optional<AddressFilter>& address) {
  if (port != 0 && endpoints.local_port() != port && endpoints.remote_port() != port) {
    return false;
  }
  return !address.has_value() || address->Matches(endpoints.local_address()) ||
         address->Matches(endpoints.remote_address());
}

constexpr size_t kMaxCommandLength = 64;  // as the batch validator allows
constexpr size_t kMinContainerIdPrefix = 12;

absl::Status CheckName(absl::string_view prefix, absl::string_view field, const std::string& name) {
  if (name.empty()) return absl::OkStatus();
  if (absl::Status s = ValidateName(absl::StrCat(prefix, field), name); !s.ok()) {
    return absl::InvalidArgumentError(s.message());
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<WorkloadFilter> WorkloadFilter::Create(absl::string_view prefix,
                                                      const std::string& pod_namespace,
                                                      const std::string& pod,
                                                      const std::string& container,
                                                      const std::string& process) {
  WorkloadFilter filter;
  if (absl::Status s = CheckName(prefix, "pod_namespace", pod_namespace); !s.ok()) return s;
  if (absl::Status s = CheckName(prefix, "pod", pod); !s.ok()) return s;
  if (absl::Status s = CheckName(prefix, "container", container); !s.ok()) return s;
  if (!process.empty()) {
    const bool digits =
        std::all_of(process.begin(), process.end(), [](char c) { return absl::ascii_isdigit(c); });
    if (digits) {
      if (!absl::SimpleAtoi(process, &filter.pid_) || filter.pid_ == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            prefix, "process: pid ", process.substr(0, 32), " is outside 1..4294967295"));
      }
    } else {
      const bool printable = std::all_of(process.begin(), process.end(),
                                         [](char c) { return c >= 0x20 && c <= 0x7e; });
      if (process.size() > kMaxCommandLength || !printable) {
        return absl::InvalidArgumentError(
            absl::StrCat(prefix, "process: a pid (digits) or a command of at most ",
                         kMaxCommandLength, " printable ASCII characters"));
      }
      filter.command_ = process;
    }
  }
  filter.pod_namespace_ = pod_namespace;
  filter.pod_ = pod;
  filter.container_ = container;
  filter.any_ = !pod_namespace.empty() || !pod.empty() || !container.empty() || !process.empty();
  return filter;
}

bool WorkloadFilter::Matches(const v1::Origin& origin) const {
  if (!any_) return true;
  if (!pod_namespace_.empty() && origin.pod_namespace() != pod_namespace_) return false;
  if (!pod_.empty() && origin.pod() != pod_) return false;
  if (!container_.empty() && origin.container_name() != container_ &&
      origin.container_id() != container_ &&
      !(container_.size() >= kMinContainerIdPrefix &&
        absl::StartsWith(origin.container_id(), container_))) {
    return false;
  }
  if (pid_ != 0 && origin.pid() != pid_) return false;
  if (!command_.empty() && origin.command() != command_) return false;
  return true;
}

absl::StatusOr<ConnectionMatcher> ConnectionMatcher::Create(
    const v1::ListConnectionsRequest& request) {
  ConnectionMatcher matcher;
  if (absl::Status s = CheckHost("host", request.host()); !s.ok()) return s;
  matcher.host_ = request.host();
  if (!v1::TcpState_IsValid(request.state()) || request.state() == v1::TCP_STATE_LISTEN) {
    return absl::InvalidArgumentError(
        absl::StrCat("state: ", request.state(), " is not a connection state"));
  }
  matcher.state_ = request.state();
  if (absl::Status s = CheckPort("port", request.port()); !s.ok()) return s;
  matcher.port_ = request.port();
  if (!v1::KeepaliveFilter_IsValid(request.keepalive())) {
    return absl::InvalidArgumentError(
        absl::StrCat("keepalive: unknown keepalive filter ", request.keepalive()));
  }
  matcher.keepalive_ = request.keepalive();
  if (!v1::AtRiskReason_IsValid(request.at_risk_reason())) {
    return absl::InvalidArgumentError(
        absl::StrCat("at_risk_reason: unknown reason ", request.at_risk_reason()));
  }
  matcher.at_risk_ = request.at_risk();
  matcher.at_risk_reason_ = request.at_risk_reason();
  if (!v1::HalfOpenReason_IsValid(request.half_open_reason())) {
    return absl::InvalidArgumentError(
        absl::StrCat("half_open_reason: unknown reason ", request.half_open_reason()));
  }
  matcher.half_open_ = request.half_open();
  matcher.half_open_reason_ = request.half_open_reason();
  matcher.paired_ = request.paired();
  absl::StatusOr<std::optional<AddressFilter>> address = ParseAddress("address", request.address());
  if (!address.ok()) return address.status();
  matcher.address_ = *address;
  absl::StatusOr<WorkloadFilter> workload = WorkloadFilter::Create(
      "", request.pod_namespace(), request.pod(), request.container(), request.process());
  if (!workload.ok()) return workload.status();
  matcher.workload_ = *std::move(workload);
  return matcher;
}

bool ConnectionMatcher::Matches(const v1::Connection& connection, v1::AtRiskReason at_risk,
                                v1::HalfOpenReason half_open) const {
  if (state_ != v1::TCP_STATE_UNSPECIFIED && connection.state() != state_) return false;
  if (keepalive_ != v1::KEEPALIVE_FILTER_ANY &&
      connection.keepalive().enabled() != (keepalive_ == v1::KEEPALIVE_FILTER_ON)) {
    return false;
  }
  if (at_risk_ && at_risk == v1::AT_RISK_REASON_UNSPECIFIED) return false;
  if (at_risk_reason_ != v1::AT_RISK_REASON_UNSPECIFIED && at_risk != at_risk_reason_) {
    return false;
  }
  if (half_open_ && half_open == v1::HALF_OPEN_REASON_UNSPECIFIED) return false;
  if (half_open_reason_ != v1::HALF_OPEN_REASON_UNSPECIFIED && half_open != half_open_reason_) {
    return false;
  }
  if (workload_.has_value() && !workload_->Matches(connection.origin())) return false;
  return MatchesEndpoints(connection.endpoints(), port_, address_);
}

absl::StatusOr<EventMatcher> EventMatcher::Create(const v1::EventFilter& filter) {
  EventMatcher matcher;
  if (absl::Status s = CheckHost("filter.host", filter.host()); !s.ok()) return s;
  matcher.host_ = filter.host();
  for (int kind : filter.kinds()) {
    if (!v1::EventKind_IsValid(kind) || kind == v1::EVENT_KIND_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat("filter.kinds: unknown event kind ", kind));
    }
    matcher.kinds_.set(static_cast<size_t>(kind));
  }
  if (!v1::CloseReason_IsValid(filter.close_reason())) {
    return absl::InvalidArgumentError(
        absl::StrCat("filter.close_reason: unknown close reason ", filter.close_reason()));
  }
  if (!v1::HandshakeFailureReason_IsValid(filter.failure_reason())) {
    return absl::InvalidArgumentError(
        absl::StrCat("filter.failure_reason: unknown failure reason ", filter.failure_reason()));
  }
  if (!v1::HalfOpenReason_IsValid(filter.half_open_reason())) {
    return absl::InvalidArgumentError(
        absl::StrCat("filter.half_open_reason: unknown reason ", filter.half_open_reason()));
  }
  matcher.close_reason_ = filter.close_reason();
  matcher.failure_reason_ = filter.failure_reason();
  matcher.half_open_reason_ = filter.half_open_reason();
  if (absl::Status s = CheckPort("filter.port", filter.port()); !s.ok()) return s;
  matcher.port_ = filter.port();
  absl::StatusOr<std::optional<AddressFilter>> address =
      ParseAddress("filter.address", filter.address());
  if (!address.ok()) return address.status();
  matcher.address_ = *address;
  if (!v1::Role_IsValid(filter.role())) {
    return absl::InvalidArgumentError(absl::StrCat("filter.role: unknown role ", filter.role()));
  }
  matcher.role_ = filter.role();
  absl::StatusOr<WorkloadFilter> workload = WorkloadFilter::Create(
      "filter.", filter.pod_namespace(), filter.pod(), filter.container(), filter.process());
  if (!workload.ok()) return workload.status();
  matcher.workload_ = *std::move(workload);
  return matcher;
}

bool EventMatcher::Matches(const v1::Event& event, const v1::Origin& origin) const {
  if (kinds_.any() && !kinds_.test(static_cast<size_t>(v1::KindOf(event)))) return false;
  const bool by_reason = close_reason_ != v1::CLOSE_REASON_UNSPECIFIED ||
                         failure_reason_ != v1::HANDSHAKE_FAILURE_REASON_UNSPECIFIED ||
                         half_open_reason_ != v1::HALF_OPEN_REASON_UNSPECIFIED;
  if (by_reason) {
    const bool close_match = close_reason_ != v1::CLOSE_REASON_UNSPECIFIED && event.has_close() &&
                             event.close().reason() == close_reason_;
    const bool failure_match = failure_reason_ != v1::HANDSHAKE_FAILURE_REASON_UNSPECIFIED &&
                               event.has_handshake_failed() &&
                               event.handshake_failed().reason() == failure_reason_;
    const bool half_open_match = half_open_reason_ != v1::HALF_OPEN_REASON_UNSPECIFIED &&
                                 event.has_half_open() &&
                                 event.half_open().reason() == half_open_reason_;
    if (!close_match && !failure_match && !half_open_match) return false;
  }
  if (role_ != v1::ROLE_UNSPECIFIED && event.role() != role_) return false;
  if (workload_.has_value() && !workload_->Matches(origin)) return false;
  return MatchesEndpoints(event.endpoints(), port_, address_);
}

}  // namespace tcpscope::service
