// Reading PEM files into gRPC's SSL credential options.
#include "common/tls_credentials.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace tcpscope {
namespace {

// Reads a PEM file given by `flag`; empty path gives an empty string.
absl::StatusOr<std::string> ReadPem(absl::string_view flag, const std::string& path) {
  if (path.empty()) return std::string();
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", path, ": cannot read (", std::strerror(errno), ")"));
  }
  std::stringstream content;
  content << in.rdbuf();
  if (!absl::StrContains(content.str(), "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", path, ": not a PEM file"));
  }
  return content.str();
}

struct Pems {
  std::string cert, key, ca;
};

absl::StatusOr<Pems> ReadAll(const TlsFiles& files) {
  if (files.cert.empty() != files.key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together: give both or neither");
  }
  Pems pems;
  absl::StatusOr<std::string> cert = ReadPem("tls_cert", files.cert);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem("tls_key", files.key);
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> ca = ReadPem("tls_ca", files.ca);
  if (!ca.ok()) return ca.status();
  pems.cert = *std::move(cert);
  pems.key = *std::move(key);
  pems.ca = *std::move(ca);
  return pems;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files) {
  if (!files.enabled()) return grpc::InsecureServerCredentials();
  if (files.cert.empty()) {
    return absl::InvalidArgumentError(
        "--tls_ca without --tls_cert and --tls_key: a TLS server needs its own certificate");
  }
  absl::StatusOr<Pems> pems = ReadAll(files);
  if (!pems.ok()) return pems.status();
  grpc::SslServerCredentialsOptions options(
      pems->ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                       : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = pems->ca;
  options.pem_key_cert_pairs.push_back({pems->key, pems->cert});
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsFiles& files) {
  if (!files.enabled()) return grpc::InsecureChannelCredentials();
  absl::StatusOr<Pems> pems = ReadAll(files);
  if (!pems.ok()) return pems.status();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = pems->ca;
  options.pem_private_key = pems->key;
  options.pem_cert_chain = pems->cert;
  return grpc::SslCredentials(options);
}

std::string DescribeTls(const TlsFiles& files, bool server) {
  if (!files.enabled()) return "plaintext";
  if (server) return files.ca.empty() ? "TLS" : "mutual TLS (client certificates required)";
  return files.cert.empty() ? "TLS" : "mutual TLS";
}

}  // namespace tcpscope
