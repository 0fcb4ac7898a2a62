#include "common/replica_addresses.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tcpscope {
namespace {

// HOST:PORT or [V6]:PORT, with a port from 1 to 65535; sets the parts.
absl::Status SplitHostPort(absl::string_view flag, absl::string_view address, std::string* host,
                           std::string* port) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": \"", address, "\" is not HOST:PORT"));
  }
  absl::string_view host_part = address.substr(0, colon);
  const absl::string_view port_part = address.substr(colon + 1);
  if (absl::StartsWith(host_part, "[")) {
    if (!absl::EndsWith(host_part, "]") || host_part.size() < 3) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": \"", address, "\" has an unclosed [IPv6] address"));
    }
  } else if (absl::StrContains(host_part, ':')) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": \"", address, "\": write an IPv6 address in brackets, [ADDRESS]:PORT"));
  }
  int port_number = 0;
  if (!absl::SimpleAtoi(port_part, &port_number) || port_number < 1 || port_number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": \"", address, "\" needs a port from 1 to 65535"));
  }
  for (char c : host_part) {
    if (c <= ' ' || c == ',' || c == '/') {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": \"", address, "\" has a character not allowed in a host"));
    }
  }
  *host = std::string(host_part);
  *port = std::string(port_part);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ReplicaAddresses> ReplicaAddresses::Parse(absl::string_view flag,
                                                         absl::string_view value) {
  ReplicaAddresses addresses;
  addresses.spec_ = std::string(value);
  if (value.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " is empty: give HOST:PORT[,HOST:PORT...] or dns:///NAME:PORT"));
  }
  if (absl::string_view rest = value; absl::ConsumePrefix(&rest, "dns:///")) {
    std::string host, port;
    if (absl::Status status = SplitHostPort(flag, rest, &host, &port); !status.ok()) {
      return status;
    }
    addresses.dns_name_ = std::move(host);
    addresses.dns_port_ = std::move(port);
    return addresses;
  }
  if (absl::StrContains(value, "://")) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": \"", value, "\": the only scheme understood is dns:///NAME:PORT"));
  }
  for (absl::string_view address : absl::StrSplit(value, ',')) {
    std::string host, port;
    if (absl::Status status = SplitHostPort(flag, address, &host, &port); !status.ok()) {
      return status;
    }
    addresses.listed_.emplace_back(address);
  }
  std::sort(addresses.listed_.begin(), addresses.listed_.end());
  if (std::adjacent_find(addresses.listed_.begin(), addresses.listed_.end()) !=
      addresses.listed_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": \"", value, "\" lists an address twice"));
  }
  return addresses;
}

absl::StatusOr<std::vector<std::string>> ReplicaAddresses::Resolve() const {
  if (!is_dns()) return listed_;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int error = getaddrinfo(dns_name_.c_str(), dns_port_.c_str(), &hints, &found);
  if (error != 0) {
    return absl::UnavailableError(absl::StrCat("resolving ", spec_, ": ", gai_strerror(error)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(found, &freeaddrinfo);
  std::vector<std::string> resolved;
  for (const addrinfo* info = found; info != nullptr; info = info->ai_next) {
    char host[NI_MAXHOST];
    if (getnameinfo(info->ai_addr, info->ai_addrlen, host, sizeof(host), nullptr, 0,
                    NI_NUMERICHOST) != 0) {
      continue;
    }
    resolved.push_back(info->ai_family == AF_INET6 ? absl::StrCat("[", host, "]:", dns_port_)
                                                   : absl::StrCat(host, ":", dns_port_));
  }
  std::sort(resolved.begin(), resolved.end());
  resolved.erase(std::unique(resolved.begin(), resolved.end()), resolved.end());
  if (resolved.empty()) {
    return absl::UnavailableError(absl::StrCat("resolving ", spec_, ": no addresses"));
  }
  return resolved;
}

}  // namespace tcpscope
