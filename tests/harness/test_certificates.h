// Throwaway PKI for TLS tests, made with the openssl command in a temporary directory: a CA, a
// service certificate for 127.0.0.1/localhost, a client certificate, and a client certificate
// from a second, untrusted CA.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace tcpscope::testing {

struct TestCertificates {
  std::string dir;
  std::string ca;  // PEM paths
  std::string service_cert, service_key;
  std::string client_cert, client_key;
  std::string rogue_client_cert, rogue_client_key;  // signed by a CA the service does not trust

  // Creates them under a new directory in the test's temporary directory.
  static absl::StatusOr<TestCertificates> Create();
};

}  // namespace tcpscope::testing
