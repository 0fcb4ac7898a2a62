// The addresses of a tier of tcpscope-service replicas, as flags give them: a comma-separated
// list of HOST:PORT (each a replica; names are resolved by gRPC when connecting) or one
// dns:///NAME:PORT whose A/AAAA records are the replicas (a Kubernetes headless Service),
// resolved again on every Resolve(). Used by the agent (--service) and the service (--peers).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tcpscope {

class ReplicaAddresses {
 public:
  // Validates the flag's value: `flag` names it in errors ("--service", "--peers").
  static absl::StatusOr<ReplicaAddresses> Parse(absl::string_view flag, absl::string_view value);

  // The replicas now, sorted and distinct, each "HOST:PORT" ("[V6]:PORT" for IPv6 records).
  // For dns:///, a lookup failure or no records is an error (the caller keeps its last list).
  absl::StatusOr<std::vector<std::string>> Resolve() const;

  bool is_dns() const { return !dns_name_.empty(); }
  // As given, for logs.
  const std::string& spec() const { return spec_; }

 private:
  std::string spec_;
  std::vector<std::string> listed_;  // a list's addresses, sorted and distinct
  std::string dns_name_;             // dns:///NAME:PORT's NAME
  std::string dns_port_;
};

}  // namespace tcpscope
