// The --tls_cert, --tls_key and --tls_ca flags, defined once for the agent, the service and the
// CLI.
#pragma once

#include "common/tls_credentials.h"

namespace tcpscope {

TlsFiles TlsFilesFromFlags();

}  // namespace tcpscope
