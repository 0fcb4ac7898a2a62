// --address: an IPv4 or IPv6 address or CIDR prefix, checked and put in the canonical form the
// service parses ("10.0.0.0/8", "2001:db8::/32"). An IPv4-mapped IPv6 address (::ffff:a.b.c.d)
// becomes IPv4, because agents report such connections as IPv4.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tcpscope::cli {

// Errors (InvalidArgument) say what is wrong: not an address, a prefix length out of range, or
// host bits set after the prefix (10.1.2.3/8), which is more likely a typo than a wish.
absl::StatusOr<std::string> CanonicalAddressFilter(absl::string_view text);

}  // namespace tcpscope::cli
