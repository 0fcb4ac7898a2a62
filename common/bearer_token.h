// Bearer tokens from files: the service's --query_token_file and the CLI's --token_file.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace tcpscope {

// The file's content without surrounding whitespace: 16 to 4096 printable ASCII characters
// without spaces. Errors say what is wrong, never the token.
absl::StatusOr<std::string> ReadBearerToken(const std::string& path);

}  // namespace tcpscope
