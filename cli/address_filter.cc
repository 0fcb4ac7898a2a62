// Address and CIDR parsing with inet_pton; formatting with inet_ntop so the service receives one
// spelling per prefix.
#include "cli/address_filter.h"

#include <arpa/inet.h>

#include <array>
#include <cstring>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tcpscope::cli {
namespace {

constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

std::string Format(int family, const uint8_t* bytes) {
  char text[INET6_ADDRSTRLEN] = "";
  inet_ntop(family, bytes, text, sizeof(text));
  return text;
}

}  // namespace

absl::StatusOr<std::string> CanonicalAddressFilter(absl::string_view text) {
  const std::string input(absl::StripAsciiWhitespace(text));
  if (input.empty()) return absl::InvalidArgumentError("empty address");
  std::string address = input;
  std::optional<int> prefix;
  if (const size_t slash = input.find('/'); slash != std::string::npos) {
    address = input.substr(0, slash);
    const std::string digits = input.substr(slash + 1);
    int length = 0;
    if (digits.empty() || digits.size() > 3 ||
        digits.find_first_not_of("0123456789") != std::string::npos ||
        !absl::SimpleAtoi(digits, &length)) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", digits, "' after '/' is not a prefix length"));
    }
    prefix = length;
  }
  uint8_t bytes[16] = {};
  int family = AF_INET;
  int bits = 32;
  if (inet_pton(AF_INET, address.c_str(), bytes) != 1) {
    if (inet_pton(AF_INET6, address.c_str(), bytes) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", address, "' is not an IPv4 or IPv6 address"));
    }
    family = AF_INET6;
    bits = 128;
  }
  if (prefix.has_value() && *prefix > bits) {
    return absl::InvalidArgumentError(absl::StrCat("prefix length /", *prefix, " is longer than ",
                                                   family == AF_INET ? "IPv4's" : "IPv6's", " ",
                                                   bits, " bits"));
  }
  // Host bits must be zero.
  if (prefix.has_value()) {
    uint8_t network[16];
    std::memcpy(network, bytes, sizeof(network));
    for (int bit = *prefix; bit < bits; ++bit) network[bit / 8] &= ~(0x80 >> (bit % 8));
    if (std::memcmp(network, bytes, bits / 8) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(input, " has bits set after the prefix; did you mean ",
                       Format(family, network), "/", *prefix, "?"));
    }
  }
  if (family == AF_INET6 && std::memcmp(bytes, kV4MappedPrefix.data(), 12) == 0 &&
      (!prefix.has_value() || *prefix >= 96)) {
    family = AF_INET;
    std::memmove(bytes, bytes + 12, 4);
    if (prefix.has_value()) *prefix -= 96;
  }
  std::string canonical = Format(family, bytes);
  if (prefix.has_value()) absl::StrAppend(&canonical, "/", *prefix);
  return canonical;
}

}  // namespace tcpscope::cli
