// The Observer API's filters on events and connections, validated once, then matched against
// each item.
#pragma once

#include <bitset>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/address_filter.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::service {

// The workload filters (Kubernetes namespace, pod, container, process) against an Origin.
class WorkloadFilter {
 public:
  // `prefix` goes before each field's name in errors ("filter." for events). Names must pass
  // ValidateName; process is a pid (digits, 1 to 4294967295) or a command (at most 64
  // printable characters).
  static absl::StatusOr<WorkloadFilter> Create(absl::string_view prefix,
                                               const std::string& pod_namespace,
                                               const std::string& pod, const std::string& container,
                                               const std::string& process);

  // Exact matches; container: its name, its id, or an id prefix of at least 12 characters.
  bool Matches(const v1::Origin& origin) const;

 private:
  WorkloadFilter() = default;
  bool any_ = false;
  std::string pod_namespace_;
  std::string pod_;
  std::string container_;
  uint32_t pid_ = 0;
  std::string command_;
};

class EventMatcher {
 public:
  // INVALID_ARGUMENT naming the field for a filter that can match nothing sensible: a bad host
  // or workload name, unknown enum values, a port above 65535, an unparsable address.
  static absl::StatusOr<EventMatcher> Create(const v1::EventFilter& filter);

  bool MatchesHost(const std::string& host) const { return host_.empty() || host == host_; }
  // `origin`: the event's, resolved from its batch's table (common/shared_origins.h).
  bool Matches(const v1::Event& event, const v1::Origin& origin) const;
  bool Matches(const v1::Event& event) const { return Matches(event, event.origin()); }

 private:
  EventMatcher() = default;
  std::string host_;
  std::bitset<v1::EventKind_ARRAYSIZE> kinds_;  // by EventKind; none set: every kind
  v1::CloseReason close_reason_ = v1::CLOSE_REASON_UNSPECIFIED;
  v1::HandshakeFailureReason failure_reason_ = v1::HANDSHAKE_FAILURE_REASON_UNSPECIFIED;
  v1::HalfOpenReason half_open_reason_ = v1::HALF_OPEN_REASON_UNSPECIFIED;
  uint32_t port_ = 0;
  std::optional<AddressFilter> address_;
  v1::Role role_ = v1::ROLE_UNSPECIFIED;
  std::optional<WorkloadFilter> workload_;  // the event's origin (a half-open survivor's)
};

class ConnectionMatcher {
 public:
  static absl::StatusOr<ConnectionMatcher> Create(const v1::ListConnectionsRequest& request);

  bool MatchesHost(const std::string& host) const { return host_.empty() || host == host_; }
  bool Matches(const v1::Connection& connection, v1::AtRiskReason at_risk,
               v1::HalfOpenReason half_open) const;
  bool paired() const { return paired_; }

 private:
  ConnectionMatcher() = default;
  std::string host_;
  v1::TcpState state_ = v1::TCP_STATE_UNSPECIFIED;
  uint32_t port_ = 0;
  v1::KeepaliveFilter keepalive_ = v1::KEEPALIVE_FILTER_ANY;
  bool at_risk_ = false;
  v1::AtRiskReason at_risk_reason_ = v1::AT_RISK_REASON_UNSPECIFIED;
  bool half_open_ = false;
  v1::HalfOpenReason half_open_reason_ = v1::HALF_OPEN_REASON_UNSPECIFIED;
  bool paired_ = false;
  std::optional<AddressFilter> address_;
  std::optional<WorkloadFilter> workload_;
};

}  // namespace tcpscope::service
