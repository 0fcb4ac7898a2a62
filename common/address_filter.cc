// Parsing with inet_pton; matching compares whole bytes, then the leftover bits.
#include "common/address_filter.h"

#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tcpscope {

absl::StatusOr<AddressFilter> AddressFilter::Parse(absl::string_view text) {
  absl::string_view address = text;
  absl::string_view length;
  if (const size_t slash = text.find('/'); slash != absl::string_view::npos) {
    address = text.substr(0, slash);
    length = text.substr(slash + 1);
  }
  AddressFilter filter;
  const std::string address_string(address);
  if (inet_pton(AF_INET, address_string.c_str(), filter.bytes_.data()) == 1) {
    filter.size_ = 4;
  } else if (inet_pton(AF_INET6, address_string.c_str(), filter.bytes_.data()) == 1) {
    filter.size_ = 16;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("address filter '", text, "' is not an IPv4 or IPv6 address or prefix"));
  }
  const int max_length = static_cast<int>(filter.size_ * 8);
  filter.prefix_length_ = max_length;
  if (text.find('/') != absl::string_view::npos) {
    int parsed = -1;
    if (!absl::SimpleAtoi(length, &parsed) || parsed < 0 || parsed > max_length) {
      return absl::InvalidArgumentError(
          absl::StrCat("address filter '", text, "': prefix length must be 0..", max_length));
    }
    filter.prefix_length_ = parsed;
  }
  return filter;
}

bool AddressFilter::Matches(absl::string_view address) const {
  if (address.size() != size_) return false;
  const auto* bytes = reinterpret_cast<const uint8_t*>(address.data());
  const size_t whole = static_cast<size_t>(prefix_length_ / 8);
  if (std::memcmp(bytes, bytes_.data(), whole) != 0) return false;
  const int bits = prefix_length_ % 8;
  if (bits == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - bits));
  return (bytes[whole] & mask) == (bytes_[whole] & mask);
}

}  // namespace tcpscope
