// Token file reading and the per-call check.
#include "service/query_token.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tcpscope::service {
namespace {

constexpr size_t kMinTokenLength = 16;
constexpr size_t kMaxTokenLength = 4096;

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char difference = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return difference == 0;
}

}  // namespace

absl::StatusOr<std::string> ReadQueryToken(const std::string& path) {
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

grpc::Status CheckQueryToken(const grpc::CallbackServerContext& context, const std::string& token) {
  if (token.empty()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return {grpc::StatusCode::UNAUTHENTICATED,
            "this service requires a bearer token (authorization metadata; tcpscope "
            "--token_file)"};
  }
  const absl::string_view given(it->second.data(), it->second.size());
  if (!ConstantTimeEquals(given, absl::StrCat("Bearer ", token))) {
    return {grpc::StatusCode::UNAUTHENTICATED, "wrong bearer token"};
  }
  return grpc::Status::OK;
}

}  // namespace tcpscope::service
