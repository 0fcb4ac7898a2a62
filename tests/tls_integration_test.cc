// Authentication with the real binaries: mutual TLS between agent and service, the refusals a
// TLS service gives plaintext, certificate-less and wrongly-signed agents, server-only TLS, the
// query API's bearer token, and flag validation. Agents use the sock_diag source in the test's
// own namespace, so no root is needed.
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/tls_credentials.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tcpscope/v1/observer.grpc.pb.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/process.h"
#include "tests/harness/sockets.h"
#include "tests/harness/tcpscope_stack.h"
#include "tests/harness/test_certificates.h"

namespace tcpscope::testing {
namespace {

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TestCertificates> pki = TestCertificates::Create();
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *pki;
  }

  void TearDown() override {
    if (HasFailure() && stack_) std::cerr << stack_->Logs();
  }

  void StartService(std::vector<std::string> flags) {
    auto stack = TcpscopeStack::Start(
        ::testing::UnitTest::GetInstance()->current_test_info()->name(), flags);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = std::move(*stack);
    // Agents started before the port listens first see a refusal, for which no TLS hint is
    // logged: these tests ask what the TLS handshake itself leads to.
    ASSERT_TRUE(stack_->AwaitServiceListening().ok()) << stack_->Logs();
  }

  std::vector<std::string> MutualTlsService() const {
    return {"--tls_cert=" + pki_.service_cert, "--tls_key=" + pki_.service_key,
            "--tls_ca=" + pki_.ca};
  }

  void AddAgent(const std::string& host, std::vector<std::string> flags) {
    flags.push_back("--source=sockdiag");
    flags.push_back("--snapshot_interval=200ms");
    flags.push_back("--max_reconnect_backoff=500ms");
    flags.push_back("--drain_timeout=0s");  // refused agents have nothing to wait for
    ASSERT_TRUE(stack_->AddAgent(host, "", flags).ok());
  }

  std::optional<double> Up(const std::string& host) {
    return MetricValue(stack_->Scrape(), "tcpscope_agent_up", {{"host", host}});
  }

  bool AgentLogSays(const std::string& host, const std::string& text) {
    return stack_->agent(host).WaitForLog(text, absl::Seconds(10));
  }

  TestCertificates pki_;
  std::unique_ptr<TcpscopeStack> stack_;
};

TEST_F(TlsTest, MutualTlsAgentIsAcceptedAndOthersAreRefused) {
  ASSERT_NO_FATAL_FAILURE(StartService(MutualTlsService()));
  AddAgent("good", {"--tls_ca=" + pki_.ca, "--tls_cert=" + pki_.client_cert,
                    "--tls_key=" + pki_.client_key});
  AddAgent("plaintext", {});
  AddAgent("no-cert", {"--tls_ca=" + pki_.ca});
  AddAgent("rogue", {"--tls_ca=" + pki_.ca, "--tls_cert=" + pki_.rogue_client_cert,
                     "--tls_key=" + pki_.rogue_client_key});
  EXPECT_EQ(stack_->WaitForValue("tcpscope_agent_up", {{"host", "good"}}, 1), 1);
  // The others retry every half second; none of them ever gets in.
  absl::SleepFor(absl::Seconds(2));
  for (const char* refused : {"plaintext", "no-cert", "rogue"}) {
    EXPECT_EQ(Up(refused), std::nullopt) << refused;
  }
  // Each refused agent says what to check (once its first try is not simply refused: it may
  // have started before the service listened).
  EXPECT_TRUE(AgentLogSays("plaintext", "if the service uses TLS, give --tls_ca"))
      << stack_->agent("plaintext").Log();
  EXPECT_TRUE(AgentLogSays("no-cert", "if the service demands client certificates"))
      << stack_->agent("no-cert").Log();
  EXPECT_TRUE(AgentLogSays("rogue", "check that --tls_ca signed")) << stack_->agent("rogue").Log();
}

TEST_F(TlsTest, ServerOnlyTlsNeedsNoClientCertificate) {
  ASSERT_NO_FATAL_FAILURE(
      StartService({"--tls_cert=" + pki_.service_cert, "--tls_key=" + pki_.service_key}));
  AddAgent("tls", {"--tls_ca=" + pki_.ca});
  AddAgent("plaintext", {});
  EXPECT_EQ(stack_->WaitForValue("tcpscope_agent_up", {{"host", "tls"}}, 1), 1);
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(Up("plaintext"), std::nullopt);
}

TEST_F(TlsTest, QueryApiDemandsTheBearerToken) {
  const std::string token_file = pki_.dir + "/token";
  const std::string token = "s3cret-token-of-enough-length";
  std::ofstream(token_file) << token << "\n";
  std::vector<std::string> flags = MutualTlsService();
  flags.push_back("--query_token_file=" + token_file);
  ASSERT_NO_FATAL_FAILURE(StartService(flags));
  // The agent needs no token: it is authenticated by its certificate.
  AddAgent("good", {"--tls_ca=" + pki_.ca, "--tls_cert=" + pki_.client_cert,
                    "--tls_key=" + pki_.client_key});
  EXPECT_EQ(stack_->WaitForValue("tcpscope_agent_up", {{"host", "good"}}, 1), 1);

  auto credentials = MakeChannelCredentials({pki_.client_cert, pki_.client_key, pki_.ca});
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  auto stub = v1::Observer::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", stack_->grpc_port()), *credentials));
  auto list = [&](const std::string& authorization) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    v1::ListAgentsResponse response;
    return stub->ListAgents(&context, {}, &response);
  };
  grpc::Status status = list("");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "requires a bearer token"));
  status = list("Bearer " + token + "x");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(status.error_message(), "wrong bearer token");
  EXPECT_TRUE(list("Bearer " + token).ok());
  EXPECT_EQ(
      MetricValue(stack_->Scrape(), "tcpscope_service_rejected_total", {{"reason", "query_token"}}),
      2);
}

TEST_F(TlsTest, BadTlsFlagsStopTheBinariesWithAClearMessage) {
  struct Case {
    std::string binary;
    std::vector<std::string> flags;
    std::string message;
  };
  const std::string metrics = absl::StrCat("--metrics_listen=127.0.0.1:", FreeTcpPort());
  const std::vector<Case> cases = {
      {"tcpscope-service", {"--tls_cert=" + pki_.service_cert}, "go together"},
      {"tcpscope-service", {"--tls_ca=" + pki_.ca}, "needs its own certificate"},
      {"tcpscope-service",
       {"--tls_cert=/nonexistent.pem", "--tls_key=" + pki_.service_key},
       "--tls_cert=/nonexistent.pem: cannot read"},
      {"tcpscope-service",
       {"--tls_cert=" + pki_.service_cert, "--tls_key=" + pki_.dir + "/ca.srl"},
       "not a PEM file"},
      {"tcpscope-service", {"--query_token_file=/nonexistent"}, "cannot read"},
      {"tcpscope-agent", {"--tls_ca=/nonexistent.pem", "--source=sockdiag"}, "cannot read"},
  };
  for (const Case& c : cases) {
    std::string command = BinaryPath(c.binary) + " " + metrics;
    if (c.binary == "tcpscope-service") {
      absl::StrAppend(&command, " --grpc_listen=127.0.0.1:", FreeTcpPort());
    }
    for (const std::string& flag : c.flags) absl::StrAppend(&command, " ", flag);
    const CommandResult result = RunCommand(command + " 2>&1");
    EXPECT_EQ(result.exit_code, 2) << command << "\n" << result.output;
    EXPECT_TRUE(absl::StrContains(result.output, c.message)) << command << "\n" << result.output;
  }
}

}  // namespace
}  // namespace tcpscope::testing
