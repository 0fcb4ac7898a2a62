// openssl invocations for the test PKI (P-256 keys, valid for two days).
#include "tests/harness/test_certificates.h"

#include <stdlib.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/harness/process.h"

namespace tcpscope::testing {
namespace {

absl::Status Run(const std::string& command) {
  const CommandResult result = RunCommand(command + " 2>&1");
  if (result.exit_code != 0) {
    return absl::InternalError(absl::StrCat("`", command, "` failed: ", result.output));
  }
  return absl::OkStatus();
}

// A key and a certificate request for `name`, then the certificate signed by `ca`.
absl::Status Issue(const std::string& dir, const std::string& name, const std::string& ca,
                   const std::string& extensions) {
  const std::string base = dir + "/" + name;
  if (absl::Status s = Run(absl::StrCat(
          "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ", base,
          ".key -out ", base, ".csr -subj /CN=", name));
      !s.ok()) {
    return s;
  }
  std::string command =
      absl::StrCat("openssl x509 -req -days 2 -in ", base, ".csr -CA ", dir, "/", ca,
                   ".pem -CAkey ", dir, "/", ca, ".key -CAcreateserial -out ", base, ".pem");
  if (!extensions.empty()) {
    std::ofstream(base + ".ext") << extensions << "\n";
    absl::StrAppend(&command, " -extfile ", base, ".ext");
  }
  return Run(command);
}

absl::Status MakeCa(const std::string& dir, const std::string& name) {
  return Run(absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -keyout ",
      dir, "/", name, ".key -out ", dir, "/", name, ".pem -subj /CN=", name));
}

}  // namespace

absl::StatusOr<TestCertificates> TestCertificates::Create() {
  std::string pattern = ::testing::TempDir() + "/tcpscope-pki.XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  TestCertificates pki;
  pki.dir = pattern;
  for (absl::Status s :
       {MakeCa(pki.dir, "ca"), MakeCa(pki.dir, "rogue-ca"),
        Issue(pki.dir, "service", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        Issue(pki.dir, "client", "ca", ""), Issue(pki.dir, "rogue-client", "rogue-ca", "")}) {
    if (!s.ok()) return s;
  }
  pki.ca = pki.dir + "/ca.pem";
  pki.service_cert = pki.dir + "/service.pem";
  pki.service_key = pki.dir + "/service.key";
  pki.client_cert = pki.dir + "/client.pem";
  pki.client_key = pki.dir + "/client.key";
  pki.rogue_client_cert = pki.dir + "/rogue-client.pem";
  pki.rogue_client_key = pki.dir + "/rogue-client.key";
  return pki;
}

}  // namespace tcpscope::testing
