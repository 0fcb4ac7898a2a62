// The real tcpscope binaries for an integration test: one service on free loopback ports and
// any number of agents, plus polling of the service's /metrics for exact values.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tcpscope/v1/observer.pb.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/process.h"

namespace tcpscope::testing {

class TcpscopeStack {
 public:
  // Starts tcpscope-service with extra `flags`; `name` prefixes the log files. `grpc_port` 0:
  // a free one.
  static absl::StatusOr<std::unique_ptr<TcpscopeStack>> Start(
      const std::string& name, const std::vector<std::string>& flags = {}, int grpc_port = 0);
  ~TcpscopeStack();

  // SIGKILL: the service dies without a goodbye, losing whatever it held in memory.
  void KillService();
  // Starts the service again on the same ports with the same flags.
  absl::Status RestartService();
  // Agents added from now on connect to this port instead of the service's (e.g. a proxy).
  void set_agent_service_port(int port) { agent_service_port_ = port; }

  // Starts an agent for `host` watching the namespace file `netns_path` (empty: every
  // namespace), with extra flags.
  absl::Status AddAgent(const std::string& host, const std::string& netns_path,
                        const std::vector<std::string>& flags = {});
  // Waits until the service's gRPC port accepts connections.
  absl::Status AwaitServiceListening(absl::Duration timeout = absl::Seconds(10)) const;
  // Waits until every agent is connected and has delivered a snapshot.
  absl::Status WaitForAgents(absl::Duration timeout = absl::Seconds(15));

  std::string Scrape() const;
  // Polls /metrics until `done` holds or `timeout` passes; returns the last exposition.
  std::string WaitFor(const std::function<bool(const std::string&)>& done,
                      absl::Duration timeout = absl::Seconds(15)) const;
  // Polls until the series has exactly `value` (or the timeout); returns the last value seen.
  std::optional<double> WaitForValue(const std::string& name, const Labels& labels, double value,
                                     absl::Duration timeout = absl::Seconds(15)) const;

  // Starts `tcpscope events --follow -o json` against the service, to record live events.
  absl::Status WatchEvents();
  // The events the watcher printed so far.
  std::vector<v1::HostEvent> WatchedEvents() const;
  // The watcher's whole output (events and its notes on stderr), and its process id.
  std::string WatcherLog() const;
  pid_t watcher_pid() const;

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  Subprocess& service() { return *service_; }
  Subprocess& agent(const std::string& host);
  // Every process's log, for a failing test's output.
  std::string Logs() const;

 private:
  TcpscopeStack() = default;
  std::string name_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  int agent_service_port_ = 0;
  std::vector<std::string> service_argv_;
  int service_starts_ = 0;
  std::unique_ptr<Subprocess> service_;
  std::string previous_service_logs_;  // of services killed and restarted
  std::unique_ptr<Subprocess> watcher_;
  std::vector<std::pair<std::string, std::unique_ptr<Subprocess>>> agents_;
};

}  // namespace tcpscope::testing
