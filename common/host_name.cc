// Host name validation shared by agent and service.
#include "common/host_name.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tcpscope {

absl::Status ValidateHostName(absl::string_view host_name) {
  if (host_name.empty()) return absl::InvalidArgumentError("host name is empty");
  if (host_name.size() > kMaxHostNameLength) {
    return absl::InvalidArgumentError(absl::StrCat("host name is ", host_name.size(),
                                                   " characters long; at most ", kMaxHostNameLength,
                                                   " are allowed"));
  }
  for (size_t i = 0; i < host_name.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(host_name[i]);
    const bool ok = absl::ascii_isalnum(c) || (i > 0 && (c == '.' || c == '_' || c == '-'));
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrFormat("host name has character 0x%02x at position %d; allowed are "
                          "[A-Za-z0-9._-], starting with a letter or digit",
                          c, i));
    }
  }
  return absl::OkStatus();
}

}  // namespace tcpscope
