// The name rule shared by agent, service and CLI.
#include "common/names.h"

#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tcpscope {

absl::Status ValidateName(absl::string_view kind, absl::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(kind, " is empty"));
  if (name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        kind, " is ", name.size(), " characters long; at most ", kMaxNameLength, " are allowed"));
  }
  // Every origin of every snapshot end passes here: one table lookup per character.
  static constexpr auto kAllowed = [] {
    std::array<bool, 256> allowed{};
    for (int c = 0; c < 256; ++c) {
      allowed[c] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   c == '.' || c == '_' || c == '-';
    }
    return allowed;
  }();
  size_t bad = 0;
  while (bad < name.size() && kAllowed[static_cast<unsigned char>(name[bad])]) ++bad;
  if (bad == name.size() && absl::ascii_isalnum(static_cast<unsigned char>(name[0]))) {
    return absl::OkStatus();
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    const bool ok = absl::ascii_isalnum(c) || (i > 0 && (c == '.' || c == '_' || c == '-'));
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s has character 0x%02x at position %d; allowed are "
                          "[A-Za-z0-9._-], starting with a letter or digit",
                          kind, c, i));
    }
  }
  return absl::OkStatus();
}

}  // namespace tcpscope
