// Token file reading and checking.
#include "common/bearer_token.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tcpscope {
namespace {

constexpr size_t kMinTokenLength = 16;
constexpr size_t kMaxTokenLength = 4096;

}  // namespace

absl::StatusOr<std::string> ReadBearerToken(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read (", std::strerror(errno), ")"));
  }
  std::stringstream content;
  content << in.rdbuf();
  const std::string token(absl::StripAsciiWhitespace(content.str()));
  if (token.size() < kMinTokenLength || token.size() > kMaxTokenLength) {
    return absl::InvalidArgumentError(absl::StrCat("the token must be ", kMinTokenLength, " to ",
                                                   kMaxTokenLength, " characters, not ",
                                                   token.size()));
  }
  for (char c : token) {
    if (c <= 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError("the token must be printable ASCII without spaces");
    }
  }
  return token;
}

}  // namespace tcpscope
