// An address or CIDR prefix given as a filter ("10.0.0.7", "fd00::/8"), matched against the
// 4- or 16-byte addresses of events and connections.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tcpscope {

class AddressFilter {
 public:
  // "ADDRESS" or "ADDRESS/LENGTH"; IPv4 lengths 0..32, IPv6 0..128.
  static absl::StatusOr<AddressFilter> Parse(absl::string_view text);

  // `address` holds 4 or 16 bytes; an IPv4 filter never matches an IPv6 address and the
  // reverse (agents report v4-mapped addresses as IPv4).
  bool Matches(absl::string_view address) const;

 private:
  AddressFilter() = default;
  std::array<uint8_t, 16> bytes_{};
  size_t size_ = 0;
  int prefix_length_ = 0;
};

}  // namespace tcpscope
