// gRPC credentials from the --tls_cert, --tls_key and --tls_ca flags that all three binaries
// share. No file given: plaintext. A server with a CA demands and verifies client
// certificates (mutual TLS); a client with a certificate and key presents them.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace tcpscope {

struct TlsFiles {
  std::string cert;  // PEM certificate chain
  std::string key;   // PEM private key of `cert`
  std::string ca;    // PEM CA bundle to verify the peer with

  bool enabled() const { return !cert.empty() || !key.empty() || !ca.empty(); }
};

// Server: plaintext without files; TLS with cert and key; with a CA also, every client must
// present a certificate that CA signed. Errors name the flag and the file.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files);

// Client: plaintext without files; TLS verifying the server with the CA (the system roots when
// no CA is given), presenting cert and key when both are given.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsFiles& files);

// A one-line description for logs: "plaintext", "TLS", "mutual TLS".
std::string DescribeTls(const TlsFiles& files, bool server);

}  // namespace tcpscope
