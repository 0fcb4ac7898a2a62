// Service and agents as subprocesses, with /metrics polling.
#include "tests/harness/tcpscope_stack.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/harness/sockets.h"

namespace tcpscope::testing {

absl::StatusOr<std::unique_ptr<TcpscopeStack>> TcpscopeStack::Start(
    const std::string& name, const std::vector<std::string>& flags, int grpc_port) {
  std::unique_ptr<TcpscopeStack> stack(new TcpscopeStack());
  stack->name_ = name;
  stack->grpc_port_ = grpc_port != 0 ? grpc_port : FreeTcpPort();
  stack->metrics_port_ = FreeTcpPort();
  stack->agent_service_port_ = stack->grpc_port_;
  stack->service_argv_ = {BinaryPath("tcpscope-service"),
                          absl::StrCat("--grpc_listen=127.0.0.1:", stack->grpc_port_),
                          absl::StrCat("--metrics_listen=127.0.0.1:", stack->metrics_port_)};
  stack->service_argv_.insert(stack->service_argv_.end(), flags.begin(), flags.end());
  if (absl::Status s = stack->RestartService(); !s.ok()) return s;
  return stack;
}

void TcpscopeStack::KillService() {
  if (service_) service_->Kill();
}

absl::Status TcpscopeStack::RestartService() {
  const std::string suffix = service_starts_++ == 0 ? "" : absl::StrCat("-", service_starts_);
  auto service = Subprocess::Start(
      service_argv_, absl::StrCat(::testing::TempDir(), "/", name_, "-service", suffix, ".log"));
  if (!service.ok()) return service.status();
  previous_service_logs_ += service_ ? service_->Log() : "";
  service_ = std::move(*service);
  return absl::OkStatus();
}

namespace {

// Waits (at most `timeout`) until 127.0.0.1:port accepts TCP connections.
absl::Status AwaitListening(int port, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool connected =
        fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    if (fd >= 0) close(fd);
    if (connected) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("nothing listens on 127.0.0.1:", port));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

}  // namespace

absl::Status TcpscopeStack::AwaitServiceListening(absl::Duration timeout) const {
  return AwaitListening(grpc_port_, timeout);
}

absl::Status TcpscopeStack::WatchEvents() {
  // The CLI reports an unreachable service and exits: start it once the service listens.
  if (absl::Status s = AwaitListening(grpc_port_, absl::Seconds(10)); !s.ok()) return s;
  auto watcher = Subprocess::Start({BinaryPath("tcpscope"), "events", "--follow", "-o", "json",
                                    absl::StrCat("--service=127.0.0.1:", grpc_port_)},
                                   absl::StrCat(::testing::TempDir(), "/", name_, "-events.jsonl"));
  if (!watcher.ok()) return watcher.status();
  watcher_ = std::move(*watcher);
  return absl::OkStatus();
}

std::vector<v1::HostEvent> TcpscopeStack::WatchedEvents() const {
  std::vector<v1::HostEvent> events;
  if (!watcher_) return events;
  for (absl::string_view line : absl::StrSplit(watcher_->Log(), '\n')) {
    if (!absl::StartsWith(line, "{")) continue;  // the CLI's notes go to stderr, same file
    v1::HostEvent event;
    if (google::protobuf::util::JsonStringToMessage(std::string(line), &event).ok()) {
      events.push_back(std::move(event));
    }
  }
  return events;
}

std::string TcpscopeStack::WatcherLog() const { return watcher_ ? watcher_->Log() : ""; }

pid_t TcpscopeStack::watcher_pid() const { return watcher_ ? watcher_->pid() : -1; }

TcpscopeStack::~TcpscopeStack() {
  if (watcher_) watcher_->Stop();
  for (auto& [host, agent] : agents_) agent->Stop();
  if (service_) service_->Stop();
}

absl::Status TcpscopeStack::AddAgent(const std::string& host, const std::string& netns_path,
                                     const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {BinaryPath("tcpscope-agent"),
                                   absl::StrCat("--service=127.0.0.1:", agent_service_port_),
                                   absl::StrCat("--host_name=", host),
                                   absl::StrCat("--metrics_listen=127.0.0.1:", FreeTcpPort())};
  if (!netns_path.empty()) argv.push_back("--netns=" + netns_path);
  argv.insert(argv.end(), flags.begin(), flags.end());
  auto agent = Subprocess::Start(
      argv, absl::StrCat(::testing::TempDir(), "/", name_, "-agent-", host, ".log"));
  if (!agent.ok()) return agent.status();
  agents_.emplace_back(host, std::move(*agent));
  return absl::OkStatus();
}

absl::Status TcpscopeStack::WaitForAgents(absl::Duration timeout) {
  const std::string metrics = WaitFor(
      [&](const std::string& m) {
        for (const auto& [host, agent] : agents_) {
          if (MetricValue(m, "tcpscope_agent_up", {{"host", host}}) != 1.0) return false;
          if (!MetricValue(m, "tcpscope_connections", {{"host", host}, {"state", "established"}})) {
            return false;
          }
        }
        return true;
      },
      timeout);
  for (const auto& [host, agent] : agents_) {
    if (!MetricValue(metrics, "tcpscope_connections", {{"host", host}, {"state", "established"}})) {
      return absl::DeadlineExceededError(
          absl::StrCat("agent ", host, " did not connect and deliver a snapshot in time"));
    }
  }
  return absl::OkStatus();
}

std::string TcpscopeStack::Scrape() const {
  absl::StatusOr<std::string> body = HttpGet("127.0.0.1", metrics_port_, "/metrics");
  return body.ok() ? *body : "";
}

std::string TcpscopeStack::WaitFor(const std::function<bool(const std::string&)>& done,
                                   absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  std::string exposition = Scrape();
  while (!done(exposition) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
    exposition = Scrape();
  }
  return exposition;
}

std::optional<double> TcpscopeStack::WaitForValue(const std::string& name, const Labels& labels,
                                                  double value, absl::Duration timeout) const {
  return MetricValue(
      WaitFor([&](const std::string& m) { return MetricValue(m, name, labels) == value; }, timeout),
      name, labels);
}

Subprocess& TcpscopeStack::agent(const std::string& host) {
  for (auto& [name, agent] : agents_) {
    if (name == host) return *agent;
  }
  ADD_FAILURE() << "no agent for host " << host;
  return *agents_.front().second;
}

std::string TcpscopeStack::Logs() const {
  std::string logs =
      absl::StrCat("---- service log\n", previous_service_logs_, service_ ? service_->Log() : "");
  for (const auto& [host, agent] : agents_) {
    absl::StrAppend(&logs, "---- agent ", host, " log\n", agent->Log());
  }
  return logs;
}

}  // namespace tcpscope::testing
