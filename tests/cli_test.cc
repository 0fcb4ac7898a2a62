// The tcpscope CLI: command-line parsing and request building (every filter, every usage error),
// formatting of agents, connections, events and summary, and the real binary run against an
// in-process fake Observer (exit codes, messages, JSON lines, --follow and signals, help).
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/address_filter.h"
#include "cli/agent_format.h"
#include "cli/command_line.h"
#include "cli/connection_format.h"
#include "cli/enum_names.h"
#include "cli/event_format.h"
#include "cli/flags.h"
#include "cli/humanize.h"
#include "cli/json_output.h"
#include "cli/paired_format.h"
#include "cli/request_builder.h"
#include "cli/rpc_failure.h"
#include "cli/summary_format.h"
#include "cli/table.h"
#include "cli/workload_format.h"
#include "common/tcp_names.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tcpscope/v1/event_kinds.h"
#include "tests/fake_observer.h"
#include "tests/harness/process.h"
#include "tests/harness/sockets.h"

namespace tcpscope::cli {
namespace {

using ::tcpscope::testing::BinaryPath;
using ::tcpscope::testing::FakeObserver;
using ::tcpscope::testing::FakeObserverServer;
using ::tcpscope::testing::Subprocess;

// 2027-01-15 08:00:00 UTC.
const absl::Time kNow = absl::FromUnixSeconds(1800000000);
constexpr uint64_t kNowNs = 1800000000ull * 1000000000ull;

template <typename Message>
Message TextProto(const std::string& text) {
  Message message;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &message)) << text;
  return message;
}

// Compares as text, so a failure shows both messages.
#define EXPECT_PROTO(actual, text) \
  EXPECT_EQ((actual).DebugString(), TextProto<std::decay_t<decltype(actual)>>(text).DebugString())

std::string Bytes(std::initializer_list<int> bytes) {
  std::string out;
  for (int byte : bytes) out.push_back(static_cast<char>(byte));
  return out;
}

absl::StatusOr<Invocation> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "tcpscope");
  return ParseCommandLine(args);
}

// Parses, then builds the common options and the command's request; the first usage error's
// message, or "" when everything is valid.
std::string UsageErrorOf(std::vector<std::string> args) {
  absl::StatusOr<Invocation> invocation = Parse(std::move(args));
  if (!invocation.ok()) return std::string(invocation.status().message());
  if (invocation->help) return "(help)";
  if (absl::StatusOr<CommonOptions> options = BuildCommonOptions(); !options.ok()) {
    return std::string(options.status().message());
  }
  absl::Status status;
  switch (*invocation->command) {
    case Command::kAgents:
      break;
    case Command::kConnections:
      status = BuildListConnectionsRequest(*invocation).status();
      break;
    case Command::kEvents:
      status = BuildGetEventsRequest(*invocation, kNow).status();
      break;
    case Command::kSummary:
      status = BuildSummaryRequest(*invocation).status();
      break;
  }
  return std::string(status.message());
}

v1::ListConnectionsRequest ConnectionsRequest(std::vector<std::string> args) {
  args.insert(args.begin(), "connections");
  absl::StatusOr<Invocation> invocation = Parse(args);
  EXPECT_TRUE(invocation.ok()) << invocation.status();
  if (!invocation.ok()) return {};
  absl::StatusOr<v1::ListConnectionsRequest> request = BuildListConnectionsRequest(*invocation);
  EXPECT_TRUE(request.ok()) << request.status();
  return request.value_or(v1::ListConnectionsRequest());
}

v1::GetEventsRequest EventsRequest(std::vector<std::string> args) {
  args.insert(args.begin(), "events");
  absl::StatusOr<Invocation> invocation = Parse(args);
  EXPECT_TRUE(invocation.ok()) << invocation.status();
  if (!invocation.ok()) return {};
  absl::StatusOr<v1::GetEventsRequest> request = BuildGetEventsRequest(*invocation, kNow);
  EXPECT_TRUE(request.ok()) << request.status();
  return request.value_or(v1::GetEventsRequest());
}

// ---------------------------------------------------------------------------------------------
// Command line.

TEST(CommandLineTest, FlagsGoBeforeOrAfterTheCommandInEveryForm) {
  absl::StatusOr<Invocation> invocation =
      Parse({"-o", "json", "events", "--last", "5", "--follow", "--host=web-1", "-port=443"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->command, Command::kEvents);
  EXPECT_FALSE(invocation->help);
  EXPECT_EQ(invocation->given, (std::set<std::string>{"o", "last", "follow", "host", "port"}));
  EXPECT_EQ(absl::GetFlag(FLAGS_o), "json");
  EXPECT_EQ(absl::GetFlag(FLAGS_last), 5);
  EXPECT_TRUE(absl::GetFlag(FLAGS_follow));
  EXPECT_EQ(absl::GetFlag(FLAGS_host), "web-1");
  EXPECT_EQ(absl::GetFlag(FLAGS_port), 443);
}

TEST(CommandLineTest, BooleansTakeNoValueOrAnExplicitOneAndTheLastSettingWins) {
  absl::StatusOr<Invocation> invocation = Parse({"events", "--follow", "--nofollow"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_FALSE(absl::GetFlag(FLAGS_follow));
  invocation = Parse({"events", "--follow=false", "--follow=true"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_TRUE(absl::GetFlag(FLAGS_follow));
  // A value after a boolean flag is not its value but an argument.
  EXPECT_EQ(UsageErrorOf({"events", "--follow", "false"}),
            "unexpected argument 'false' (events takes flags only)");
}

TEST(CommandLineTest, HelpInEveryFormWinsOverMistakesOnTheLine) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"help", "events"},
                                             {"events", "--help"},
                                             {"events", "-h"},
                                             {"--help", "events"},
                                             {"events", "--bogus", "--help"},
                                             {"events", "--help", "--last=x"}}) {
    absl::StatusOr<Invocation> invocation = Parse(args);
    ASSERT_TRUE(invocation.ok()) << absl::StrJoin(args, " ") << ": " << invocation.status();
    EXPECT_TRUE(invocation->help);
    EXPECT_EQ(invocation->command, Command::kEvents) << absl::StrJoin(args, " ");
  }
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"help"}, {"--help"}, {"-h"}}) {
    absl::StatusOr<Invocation> invocation = Parse(args);
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_TRUE(invocation->help);
    EXPECT_FALSE(invocation->command.has_value());
  }
  EXPECT_EQ(UsageErrorOf({"help", "nosuch"}),
            "unknown command 'nosuch' (commands: agents, connections, events, summary)");
}

TEST(CommandLineTest, UsageErrors) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{}, "no command given (commands: agents, connections, events, summary)"},
      {{"-o", "json"}, "no command given (commands: agents, connections, events, summary)"},
      {{"nosuch"}, "unknown command 'nosuch' (commands: agents, connections, events, summary)"},
      {{"agents", "--bogus"}, "unknown flag --bogus"},
      {{"agents", "--help_all"}, "unknown flag --help_all"},
      {{"agents", "--noservice"}, "unknown flag --noservice"},
      {{"agents", "extra"}, "unexpected argument 'extra' (agents takes flags only)"},
      {{"events", "--", "--last=5"}, "unexpected argument '--last=5' (events takes flags only)"},
      {{"connections", "--follow"},
       "--follow does not apply to 'tcpscope connections' (it is a flag of: events)"},
      {{"agents", "--host=web-1"},
       "--host does not apply to 'tcpscope agents' (it is a flag of: connections, events, "
       "summary)"},
      {{"summary", "--port=443"},
       "--port does not apply to 'tcpscope summary' (it is a flag of: connections, events)"},
      {{"events", "--state=established"},
       "--state does not apply to 'tcpscope events' (it is a flag of: connections)"},
      {{"connections", "--role=client"},
       "--role does not apply to 'tcpscope connections' (it is a flag of: events)"},
      {{"summary", "--pod=web-0"},
       "--pod does not apply to 'tcpscope summary' (it is a flag of: connections, events)"},
      {{"agents", "--process=nginx"},
       "--process does not apply to 'tcpscope agents' (it is a flag of: connections, events)"},
      {{"connections", "--namespace"}, "--namespace needs a value (--namespace=NS)"},
      {{"events", "--last"}, "--last needs a value (--last=N)"},
      {{"agents", "-o"}, "-o needs a value (-o table|json)"},
      {{"events", "--last=x"}, "--last=x: Illegal value 'x' specified for flag 'last'"},
      {{"events", "--port=x"}, "--port=x: Illegal value 'x' specified for flag 'port'"},
      {{"events", "--follow=maybe"},
       "--follow=maybe: Illegal value 'maybe' specified for flag 'follow'"},
      {{"events", "--nofollow=true"}, "--nofollow takes no value"},
      {{"agents", "--timeout=soon"},
       "--timeout=soon: Illegal value 'soon' specified for flag 'timeout'"},
  };
  for (const auto& [args, message] : cases) {
    EXPECT_EQ(UsageErrorOf(args), message) << absl::StrJoin(args, " ");
  }
}

TEST(CommandLineTest, EachCommandsHelpListsExactlyItsFlags) {
  const std::vector<std::string> all = {
      "host",      "port",      "address",        "state",
      "keepalive", "at_risk",   "at_risk_reason", "last",
      "since",     "follow",    "type",           "reason",
      "role",      "half_open", "paired",         "namespace",
      "pod",       "container", "process",        "half_open_reason"};
  const std::vector<std::pair<Command, std::set<std::string>>> expected = {
      {Command::kAgents, {}},
      {Command::kConnections,
       {"host", "state", "port", "address", "keepalive", "at_risk", "at_risk_reason", "half_open",
        "half_open_reason", "paired", "namespace", "pod", "container", "process"}},
      {Command::kEvents,
       {"last", "since", "follow", "host", "type", "reason", "half_open_reason", "port", "address",
        "role", "namespace", "pod", "container", "process"}},
      {Command::kSummary, {"host"}}};
  for (const auto& [command, flags] : expected) {
    const std::string help = CommandHelp(command);
    EXPECT_TRUE(absl::StartsWith(help, absl::StrCat("tcpscope ", CommandName(command), ": ")))
        << help;
    for (const std::string& flag : all) {
      const bool listed = absl::StrContains(help, absl::StrCat("\n  --", flag, "=")) ||
                          absl::StrContains(help, absl::StrCat("\n  --", flag, " "));
      EXPECT_EQ(listed, flags.count(flag) > 0) << CommandName(command) << " --" << flag;
    }
    // The common flags, with their defaults.
    EXPECT_TRUE(absl::StrContains(help,
                                  "\n  --service=HOST:PORT     tcpscope-service's gRPC "
                                  "address. Default: 127.0.0.1:7700.\n"))
        << help;
    EXPECT_TRUE(absl::StrContains(help, "\n  -o table|json  ")) << help;
    EXPECT_TRUE(absl::StrContains(help, "\n  --timeout=DURATION  ")) << help;
    for (absl::string_view line : absl::StrSplit(help, '\n')) {
      EXPECT_LE(line.size(), 100u) << line;
    }
  }
  const std::string overview = OverviewHelp();
  for (absl::string_view name : {"agents", "connections", "events", "summary"}) {
    EXPECT_TRUE(absl::StrContains(overview, absl::StrCat("\n  ", name, " "))) << name;
  }
}

// The flag help texts list names by hand; they must be the names the parser accepts.
TEST(CommandLineTest, HelpNamesEveryAcceptedName) {
  const std::string connections = CommandHelp(Command::kConnections);
  const std::string events = CommandHelp(Command::kEvents);
  for (const std::string& name : TcpStateNames().Names()) {
    EXPECT_TRUE(absl::StrContains(connections, name)) << name;
  }
  for (const EnumNames* names : {&AtRiskReasonNames(), &HalfOpenReasonNames()}) {
    for (const std::string& name : names->Names()) {
      EXPECT_TRUE(absl::StrContains(connections, name)) << name;
    }
  }
  for (const EnumNames* names :
       {&EventKindNames(), &CloseReasonNames(), &HandshakeFailureReasonNames(), &RoleNames(),
        &HalfOpenReasonNames()}) {
    for (const std::string& name : names->Names()) {
      EXPECT_TRUE(absl::StrContains(events, name)) << name;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Common options.

TEST(CommonOptionsTest, DefaultsAndAcceptedForms) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"agents", "--service=[::1]:7700"},
                                             {"agents", "--service=dns:///tcpscope.example:7700"},
                                             {"agents", "--service=unix:/run/tcpscope.sock"},
                                             {"agents", "--service", "db-1.example:7700"}}) {
    EXPECT_EQ(UsageErrorOf(args), "") << absl::StrJoin(args, " ");
  }
  ASSERT_TRUE(Parse({"agents"}).ok());
  absl::StatusOr<CommonOptions> options = BuildCommonOptions();
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->service, "127.0.0.1:7700");
  EXPECT_EQ(options->format, OutputFormat::kTable);
  EXPECT_EQ(options->timeout, absl::Seconds(10));
  ASSERT_TRUE(Parse({"agents", "-o", "json", "--timeout=250ms"}).ok());
  options = BuildCommonOptions();
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->format, OutputFormat::kJson);
  EXPECT_EQ(options->timeout, absl::Milliseconds(250));
}

TEST(CommonOptionsTest, UsageErrors) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"agents", "--service="}, "--service=: empty; expected HOST:PORT"},
      {{"agents", "--service=tcpscope"},
       "--service=tcpscope: expected HOST:PORT (e.g. 127.0.0.1:7700)"},
      {{"agents", "--service=:7700"}, "--service=:7700: expected HOST:PORT (e.g. 127.0.0.1:7700)"},
      {{"agents", "--service=tcpscope:0"}, "--service=tcpscope:0: '0' is not a port (1..65535)"},
      {{"agents", "--service=tcpscope:65536"},
       "--service=tcpscope:65536: '65536' is not a port (1..65535)"},
      {{"agents", "--service=tcpscope:http"},
       "--service=tcpscope:http: 'http' is not a port (1..65535)"},
      {{"agents", "--service=::1:7700"},
       "--service=::1:7700: an IPv6 address needs brackets: [::1]:7700"},
      {{"agents", "-o", "yaml"}, "-o yaml: expected table or json"},
      {{"agents", "--timeout=0s"}, "--timeout=0: must be positive and finite"},
      {{"agents", "--timeout=-1s"}, "--timeout=-1s: must be positive and finite"},
      {{"agents", "--timeout=inf"}, "--timeout=inf: must be positive and finite"},
  };
  for (const auto& [args, message] : cases) {
    EXPECT_EQ(UsageErrorOf(args), message) << absl::StrJoin(args, " ");
  }
}

// ---------------------------------------------------------------------------------------------
// connections

TEST(ConnectionsRequestTest, NoFlagsAskForEverything) { EXPECT_PROTO(ConnectionsRequest({}), ""); }

TEST(ConnectionsRequestTest, EveryFilter) {
  EXPECT_PROTO(ConnectionsRequest({"--host=web-1", "--state=close_wait", "--port=5432",
                                   "--keepalive=off", "--at_risk",
                                   "--at_risk_reason=close_wait_stale", "--address=10.0.0.0/8"}),
               R"pb(host: "web-1"
                    state: TCP_STATE_CLOSE_WAIT
                    port: 5432
                    keepalive: KEEPALIVE_FILTER_OFF
                    at_risk: true
                    at_risk_reason: AT_RISK_CLOSE_WAIT_STALE
                    address: "10.0.0.0/8")pb");
  EXPECT_PROTO(ConnectionsRequest({"--keepalive=on"}), "keepalive: KEEPALIVE_FILTER_ON");
  EXPECT_PROTO(ConnectionsRequest({"--at_risk"}), "at_risk: true");
  // A reason implies at_risk.
  EXPECT_PROTO(ConnectionsRequest({"--at_risk_reason=idle_no_keepalive"}),
               "at_risk: true at_risk_reason: AT_RISK_IDLE_NO_KEEPALIVE");
  EXPECT_PROTO(ConnectionsRequest({"--at_risk_reason=keepalive_probing"}),
               "at_risk: true at_risk_reason: AT_RISK_KEEPALIVE_PROBING");
  EXPECT_PROTO(ConnectionsRequest({"--port=65535"}), "port: 65535");
  EXPECT_PROTO(ConnectionsRequest({"--port=0"}), "");
  EXPECT_PROTO(ConnectionsRequest({"--address=2001:DB8::1"}), R"pb(address: "2001:db8::1")pb");
}

TEST(ConnectionsRequestTest, HalfOpenAndPaired) {
  EXPECT_PROTO(ConnectionsRequest({"--half_open"}), "half_open: true");
  // A reason implies half_open.
  EXPECT_PROTO(ConnectionsRequest({"--half_open_reason=peer_closed"}),
               "half_open: true half_open_reason: HALF_OPEN_PEER_CLOSED");
  EXPECT_PROTO(ConnectionsRequest({"--half_open_reason=peer_rebooted", "--half_open"}),
               "half_open: true half_open_reason: HALF_OPEN_PEER_REBOOTED");
  EXPECT_PROTO(ConnectionsRequest({"--half_open_reason", "peer_host_down"}),
               "half_open: true half_open_reason: HALF_OPEN_PEER_HOST_DOWN");
  EXPECT_PROTO(ConnectionsRequest({"--paired"}), "paired: true");
  EXPECT_PROTO(ConnectionsRequest({"--paired", "--nopaired"}), "");
  // --paired goes with every other filter: the service applies them to either end.
  EXPECT_PROTO(ConnectionsRequest({"--paired", "--half_open_reason=peer_host_down", "--host=db-1",
                                   "--state=established", "--at_risk", "--port=5432"}),
               R"pb(host: "db-1"
                    state: TCP_STATE_ESTABLISHED
                    port: 5432
                    at_risk: true
                    half_open: true
                    half_open_reason: HALF_OPEN_PEER_HOST_DOWN
                    paired: true)pb");
}

TEST(ConnectionsRequestTest, WorkloadFilters) {
  EXPECT_PROTO(ConnectionsRequest({"--namespace=shop", "--pod=web-0", "--container=app",
                                   "--process=nginx", "--state=close_wait"}),
               R"pb(state: TCP_STATE_CLOSE_WAIT
                    pod_namespace: "shop"
                    pod: "web-0"
                    container: "app"
                    process: "nginx")pb");
  // A container id or its 12-character prefix goes as given; a pid loses leading zeros.
  EXPECT_PROTO(ConnectionsRequest({"--container", "4f6c0a3b9e2d", "--process=004242"}),
               R"pb(container: "4f6c0a3b9e2d" process: "4242")pb");
  EXPECT_PROTO(ConnectionsRequest({"--process=4294967295"}), R"pb(process: "4294967295")pb");
  // A command may hold any printable character, up to 64 of them.
  EXPECT_PROTO(ConnectionsRequest({"--process=kworker/0:1 H", "--pod=a.b_c-9"}),
               R"pb(pod: "a.b_c-9" process: "kworker/0:1 H")pb");
  EXPECT_EQ(ConnectionsRequest({absl::StrCat("--process=", std::string(64, 'p'))}).process(),
            std::string(64, 'p'));
  EXPECT_EQ(ConnectionsRequest({absl::StrCat("--namespace=", std::string(253, 'n'))})
                .pod_namespace()
                .size(),
            253u);
  // With --paired too: the service applies them to either end.
  EXPECT_PROTO(ConnectionsRequest({"--paired", "--namespace=shop"}),
               R"pb(paired: true pod_namespace: "shop")pb");
}

// The workload flags' errors, the same for connections and events.
std::vector<std::pair<std::vector<std::string>, std::string>> WorkloadUsageErrors() {
  return {
      {{"--namespace="}, "--namespace=: namespace is empty"},
      {{"--namespace=Shop Floor"},
       "--namespace=Shop Floor: namespace has character 0x20 at position 4; allowed are "
       "[A-Za-z0-9._-], starting with a letter or digit"},
      {{"--pod=-web"},
       "--pod=-web: pod name has character 0x2d at position 0; allowed are [A-Za-z0-9._-], "
       "starting with a letter or digit"},
      {{"--pod=web\x1b[2J"},
       "--pod=web\\x1b[2J: pod name has character 0x1b at position 3; allowed are "
       "[A-Za-z0-9._-], starting with a letter or digit"},
      {{absl::StrCat("--pod=", std::string(254, 'p'))},
       absl::StrCat("--pod=", std::string(254, 'p'),
                    ": pod name is 254 characters long; at most 253 are allowed")},
      {{"--container=/redis"},
       "--container=/redis: container name or id has character 0x2f at position 0; allowed are "
       "[A-Za-z0-9._-], starting with a letter or digit"},
      {{"--process="}, "--process=: empty; expected a pid or a command"},
      {{"--process=0"}, "--process=0: not a pid (1..4294967295)"},
      {{"--process=4294967296"}, "--process=4294967296: not a pid (1..4294967295)"},
      {{absl::StrCat("--process=", std::string(65, 'p'))},
       absl::StrCat("--process=", std::string(65, 'p'), ": a command is at most 64 characters")},
      {{"--process=a\tb"},
       "--process=a\\tb: a command has printable characters only (0x09 at position 1)"},
      {{"--process=caf\xc3\xa9"},
       "--process=caf\\xc3\\xa9: a command has printable characters only (0xc3 at position "
       "3)"},
  };
}

TEST(ConnectionsRequestTest, WorkloadUsageErrors) {
  for (const auto& [args, message] : WorkloadUsageErrors()) {
    std::vector<std::string> line = {"connections"};
    line.insert(line.end(), args.begin(), args.end());
    EXPECT_EQ(UsageErrorOf(line), message) << absl::StrJoin(args, " ");
  }
}

TEST(ConnectionsRequestTest, EveryStateByItsMetricLabel) {
  for (int value = 1; value <= 12; ++value) {
    const auto state = static_cast<v1::TcpState>(value);
    const std::string name(TcpStateName(state));
    EXPECT_EQ(ConnectionsRequest({absl::StrCat("--state=", name)}).state(), state) << name;
  }
}

TEST(ConnectionsRequestTest, UsageErrors) {
  const std::string states =
      "established, syn_sent, syn_recv, fin_wait1, fin_wait2, time_wait, close, close_wait, "
      "last_ack, listen, closing, new_syn_recv";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--host=bad host"},
       "--host=bad host: host name has character 0x20 at position 3; allowed are "
       "[A-Za-z0-9._-], starting with a letter or digit"},
      {{"--host="}, "--host=: host name is empty"},
      {{"--state=listening"}, absl::StrCat("--state=listening: not a TCP state (", states, ")")},
      {{"--state=ESTABLISHED"},
       absl::StrCat("--state=ESTABLISHED: not a TCP state (", states, ")")},
      {{"--state=unspecified"},
       absl::StrCat("--state=unspecified: not a TCP state (", states, ")")},
      {{"--port=-1"}, "--port=-1: outside 0..65535 (0: any port)"},
      {{"--port=65536"}, "--port=65536: outside 0..65535 (0: any port)"},
      {{"--keepalive=yes"}, "--keepalive=yes: expected on or off"},
      {{"--at_risk=false"},
       "--at_risk=false: only connections at risk can be selected; leave the flag out for all"},
      {{"--noat_risk"},
       "--at_risk=false: only connections at risk can be selected; leave the flag out for all"},
      {{"--at_risk_reason=idle"},
       "--at_risk_reason=idle: not an at-risk reason (idle_no_keepalive, keepalive_probing, "
       "close_wait_stale)"},
      {{"--half_open=false"},
       "--half_open=false: only half-open ends can be selected; leave the flag out for all"},
      {{"--nohalf_open"},
       "--half_open=false: only half-open ends can be selected; leave the flag out for all"},
      {{"--half_open_reason=rebooted"},
       "--half_open_reason=rebooted: not a half-open reason (peer_closed, peer_rebooted, "
       "peer_host_down)"},
      {{"--half_open_reason=PEER_CLOSED"},
       "--half_open_reason=PEER_CLOSED: not a half-open reason (peer_closed, peer_rebooted, "
       "peer_host_down)"},
      {{"--half_open_reason=reason_unspecified"},
       "--half_open_reason=reason_unspecified: not a half-open reason (peer_closed, "
       "peer_rebooted, peer_host_down)"},
      {{"--paired=sometimes"},
       "--paired=sometimes: Illegal value 'sometimes' specified for flag 'paired'"},
      {{"--address=10.0.0.1/33"},
       "--address=10.0.0.1/33: prefix length /33 is longer than IPv4's 32 bits"},
      {{"--address=db-1.example"},
       "--address=db-1.example: 'db-1.example' is not an IPv4 or IPv6 address"},
      {{"--address=10.1.2.3/8"},
       "--address=10.1.2.3/8: 10.1.2.3/8 has bits set after the prefix; did you mean "
       "10.0.0.0/8?"},
  };
  for (const auto& [args, message] : cases) {
    std::vector<std::string> line = {"connections"};
    line.insert(line.end(), args.begin(), args.end());
    EXPECT_EQ(UsageErrorOf(line), message) << absl::StrJoin(args, " ");
  }
}

// ---------------------------------------------------------------------------------------------
// events

TEST(EventsRequestTest, WithoutLastSinceOrFollowTheLast20) {
  EXPECT_PROTO(EventsRequest({}), "filter {} last: 20");
}

TEST(EventsRequestTest, HistoryAndFollow) {
  EXPECT_PROTO(EventsRequest({"--follow"}), "filter {} follow: true");
  EXPECT_PROTO(EventsRequest({"--follow", "--last=0"}), "filter {} follow: true");
  EXPECT_PROTO(EventsRequest({"--follow", "--last=50"}), "filter {} last: 50 follow: true");
  EXPECT_PROTO(EventsRequest({"--last=4294967295"}), "filter {} last: 4294967295");
  EXPECT_PROTO(EventsRequest({"--since=5m"}),
               absl::StrCat("filter {} since_unix_ns: ", kNowNs - 300000000000ull));
  EXPECT_PROTO(
      EventsRequest({"--since=1h30m", "--follow"}),
      absl::StrCat("filter {} since_unix_ns: ", kNowNs - 5400000000000ull, " follow: true"));
  // 2024-05-01T10:00:00Z is 1714557600.
  EXPECT_PROTO(EventsRequest({"--since=2024-05-01T10:00:00Z", "--last=7"}),
               "filter {} last: 7 since_unix_ns: 1714557600000000000");
  EXPECT_PROTO(EventsRequest({"--since=2024-05-01T12:00:00.5+02:00"}),
               "filter {} since_unix_ns: 1714557600500000000");
}

TEST(EventsRequestTest, EveryFilter) {
  EXPECT_PROTO(
      EventsRequest({"--host=db-1", "--type=close, handshake_failed,close", "--reason=other",
                     "--port=443", "--address=2001:db8::/32", "--role=server"}),
      R"pb(filter {
             host: "db-1"
             kinds: EVENT_KIND_CLOSE
             kinds: EVENT_KIND_HANDSHAKE_FAILED
             close_reason: CLOSE_REASON_OTHER
             failure_reason: HANDSHAKE_FAILURE_OTHER
             port: 443
             address: "2001:db8::/32"
             role: ROLE_SERVER
           }
           last: 20)pb");
  EXPECT_PROTO(EventsRequest({"--role=client", "--address=::ffff:10.0.0.1"}),
               R"pb(filter { role: ROLE_CLIENT address: "10.0.0.1" }
                    last: 20)pb");
  EXPECT_PROTO(EventsRequest({"--type=handshake,keepalive_probe,keepalive_timeout,"
                              "keepalive_answered"}),
               R"pb(filter {
                      kinds: EVENT_KIND_HANDSHAKE
                      kinds: EVENT_KIND_KEEPALIVE_PROBE
                      kinds: EVENT_KIND_KEEPALIVE_TIMEOUT
                      kinds: EVENT_KIND_KEEPALIVE_ANSWERED
                    }
                    last: 20)pb");
}

TEST(EventsRequestTest, HalfOpenKindAndReason) {
  EXPECT_PROTO(EventsRequest({"--type=half_open"}),
               "filter { kinds: EVENT_KIND_HALF_OPEN } last: 20");
  EXPECT_PROTO(EventsRequest({"--half_open_reason=peer_rebooted"}),
               "filter { half_open_reason: HALF_OPEN_PEER_REBOOTED } last: 20");
  EXPECT_PROTO(EventsRequest({"--type=close,half_open", "--half_open_reason=peer_closed",
                              "--host=web-1", "--follow"}),
               R"pb(filter {
                      host: "web-1"
                      kinds: EVENT_KIND_CLOSE
                      kinds: EVENT_KIND_HALF_OPEN
                      half_open_reason: HALF_OPEN_PEER_CLOSED
                    }
                    follow: true)pb");
}

TEST(EventsRequestTest, WorkloadFilters) {
  EXPECT_PROTO(EventsRequest({"--namespace=shop", "--pod=web-0", "--container=app",
                              "--process=4242", "--type=handshake_failed", "--follow"}),
               R"pb(filter {
                      kinds: EVENT_KIND_HANDSHAKE_FAILED
                      pod_namespace: "shop"
                      pod: "web-0"
                      container: "app"
                      process: "4242"
                    }
                    follow: true)pb");
  EXPECT_PROTO(EventsRequest({"--container=redis", "--process=redis-server"}),
               R"pb(filter { container: "redis" process: "redis-server" }
                    last: 20)pb");
}

TEST(EventsRequestTest, WorkloadUsageErrors) {
  for (const auto& [args, message] : WorkloadUsageErrors()) {
    std::vector<std::string> line = {"events"};
    line.insert(line.end(), args.begin(), args.end());
    EXPECT_EQ(UsageErrorOf(line), message) << absl::StrJoin(args, " ");
  }
}

TEST(EventsRequestTest, ReasonNamesACloseReasonOrAHandshakeFailureReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"fin", "close_reason: CLOSE_REASON_FIN"},
      {"reset_sent", "close_reason: CLOSE_REASON_RESET_SENT"},
      {"reset_received", "close_reason: CLOSE_REASON_RESET_RECEIVED"},
      {"keepalive_timeout", "close_reason: CLOSE_REASON_KEEPALIVE_TIMEOUT"},
      {"keepalive_reset", "close_reason: CLOSE_REASON_KEEPALIVE_RESET"},
      {"retransmit_timeout", "close_reason: CLOSE_REASON_RETRANSMIT_TIMEOUT"},
      {"refused", "failure_reason: HANDSHAKE_FAILURE_REFUSED"},
      {"timeout", "failure_reason: HANDSHAKE_FAILURE_TIMEOUT"},
      {"reset", "failure_reason: HANDSHAKE_FAILURE_RESET"},
      {"unreachable", "failure_reason: HANDSHAKE_FAILURE_UNREACHABLE"},
      {"other", "close_reason: CLOSE_REASON_OTHER failure_reason: HANDSHAKE_FAILURE_OTHER"},
  };
  for (const auto& [reason, filter] : cases) {
    EXPECT_PROTO(EventsRequest({absl::StrCat("--reason=", reason)}),
                 absl::StrCat("filter {", filter, "} last: 20"));
  }
  // With --type, "other" applies to the kinds asked for.
  EXPECT_PROTO(EventsRequest({"--type=close", "--reason=other"}),
               "filter { kinds: EVENT_KIND_CLOSE close_reason: CLOSE_REASON_OTHER } last: 20");
  EXPECT_PROTO(EventsRequest({"--type=handshake_failed,close", "--reason=refused"}),
               "filter { kinds: EVENT_KIND_HANDSHAKE_FAILED kinds: EVENT_KIND_CLOSE "
               "failure_reason: HANDSHAKE_FAILURE_REFUSED } last: 20");
}

TEST(EventsRequestTest, UsageErrors) {
  const std::string kinds = TCPSCOPE_V1_EVENT_KIND_NAMES;  // the oneof's members, from the proto
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--last=-1"}, "--last=-1: outside 0..4294967295"},
      {{"--last=4294967296"}, "--last=4294967296: outside 0..4294967295"},
      {{"--last=0"}, "--last=0: asks for no events; add --follow for live events only"},
      {{"--since=0s"}, "--since=0s: a duration must be positive (how long ago)"},
      {{"--since=-5m"}, "--since=-5m: a duration must be positive (how long ago)"},
      {{"--since=yesterday"},
       "--since=yesterday: neither a duration (30s, 5m, 1h30m) nor an RFC 3339 time "
       "(2024-05-01T10:00:00Z, 2024-05-01T12:00:00.5+02:00)"},
      {{"--since=2024-05-01 10:00:00"},
       "--since=2024-05-01 10:00:00: neither a duration (30s, 5m, 1h30m) nor an RFC 3339 time "
       "(2024-05-01T10:00:00Z, 2024-05-01T12:00:00.5+02:00)"},
      {{"--since=2027-01-15T08:00:01Z"}, "--since=2027-01-15T08:00:01Z: in the future"},
      {{"--since=1969-12-31T00:00:00Z"}, "--since=1969-12-31T00:00:00Z: before 1970"},
      {{"--since=inf"}, "--since=inf: before 1970"},
      {{"--type=closed"},
       absl::StrCat("--type=closed: 'closed' is not an event kind (", kinds, ")")},
      {{"--type=HANDSHAKE"},
       absl::StrCat("--type=HANDSHAKE: 'HANDSHAKE' is not an event kind (", kinds, ")")},
      {{"--type="}, "--type=: an empty kind; expected a comma list of kinds"},
      {{"--type=close,"}, "--type=close,: an empty kind; expected a comma list of kinds"},
      {{"--reason=bogus"},
       "--reason=bogus: neither a close reason (fin, reset_sent, reset_received, "
       "keepalive_timeout, keepalive_reset, retransmit_timeout, other) nor a handshake failure "
       "reason (refused, timeout, reset, unreachable, other)"},
      {{"--type=close", "--reason=refused"},
       "--reason=refused: applies to handshake_failed events, which --type=close leaves out"},
      {{"--type=handshake_failed", "--reason=fin"},
       "--reason=fin: applies to close events, which --type=handshake_failed leaves out"},
      {{"--type=handshake,keepalive_timeout", "--reason=other"},
       "--reason=other: applies to close and handshake_failed events, which "
       "--type=handshake,keepalive_timeout leaves out"},
      {{"--half_open_reason=host_down"},
       "--half_open_reason=host_down: not a half-open reason (peer_closed, peer_rebooted, "
       "peer_host_down)"},
      {{"--type=close", "--half_open_reason=peer_closed"},
       "--half_open_reason=peer_closed: applies to half_open events, which --type=close leaves "
       "out"},
      {{"--reason=fin", "--half_open_reason=peer_closed"},
       "--half_open_reason=peer_closed: keeps half_open events only and --reason=fin closes or "
       "handshake failures only, so nothing would match; give one"},
      {{"--type=half_open", "--reason=fin"},
       "--reason=fin: applies to close events, which --type=half_open leaves out"},
      {{"--role=both"}, "--role=both: not a role (client, server)"},
      {{"--port=70000"}, "--port=70000: outside 0..65535 (0: any port)"},
      {{"--address=10.0.0.0/"}, "--address=10.0.0.0/: '' after '/' is not a prefix length"},
      {{"--host=-web"},
       "--host=-web: host name has character 0x2d at position 0; allowed are [A-Za-z0-9._-], "
       "starting with a letter or digit"},
  };
  for (const auto& [args, message] : cases) {
    std::vector<std::string> line = {"events"};
    line.insert(line.end(), args.begin(), args.end());
    EXPECT_EQ(UsageErrorOf(line), message) << absl::StrJoin(args, " ");
  }
}

// ---------------------------------------------------------------------------------------------
// summary

TEST(SummaryRequestTest, HostFilter) {
  absl::StatusOr<Invocation> invocation = Parse({"summary"});
  ASSERT_TRUE(invocation.ok());
  EXPECT_PROTO(*BuildSummaryRequest(*invocation), "");
  invocation = Parse({"summary", "--host=web-1"});
  ASSERT_TRUE(invocation.ok());
  EXPECT_PROTO(*BuildSummaryRequest(*invocation), R"pb(host: "web-1")pb");
  EXPECT_EQ(UsageErrorOf({"summary", "--host=a b"}),
            "--host=a b: host name has character 0x20 at position 1; allowed are "
            "[A-Za-z0-9._-], starting with a letter or digit");
}

// ---------------------------------------------------------------------------------------------
// Addresses and names.

TEST(AddressFilterTest, CanonicalForms) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"10.0.0.1", "10.0.0.1"},
      {" 10.0.0.1 ", "10.0.0.1"},
      {"10.0.0.0/8", "10.0.0.0/8"},
      {"10.0.0.1/32", "10.0.0.1/32"},
      {"0.0.0.0/0", "0.0.0.0/0"},
      {"2001:DB8:0:0::1", "2001:db8::1"},
      {"2001:db8::/32", "2001:db8::/32"},
      {"::/0", "::/0"},
      {"::1", "::1"},
      {"::ffff:10.1.2.3", "10.1.2.3"},
      {"::ffff:10.0.0.0/104", "10.0.0.0/8"},
      {"::ffff:0:0/96", "0.0.0.0/0"},
      {"::ffff:10.0.0.1/128", "10.0.0.1/32"},
  };
  for (const auto& [input, canonical] : cases) {
    absl::StatusOr<std::string> result = CanonicalAddressFilter(input);
    ASSERT_TRUE(result.ok()) << input << ": " << result.status();
    EXPECT_EQ(*result, canonical) << input;
  }
}

TEST(AddressFilterTest, Errors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "empty address"},
      {"10.0.0.0/", "'' after '/' is not a prefix length"},
      {"10.0.0.0/x", "'x' after '/' is not a prefix length"},
      {"10.0.0.0/-1", "'-1' after '/' is not a prefix length"},
      {"10.0.0.0/0008", "'0008' after '/' is not a prefix length"},
      {"10.0.0.0/33", "prefix length /33 is longer than IPv4's 32 bits"},
      {"2001:db8::/129", "prefix length /129 is longer than IPv6's 128 bits"},
      {"10.1.2.3/8", "10.1.2.3/8 has bits set after the prefix; did you mean 10.0.0.0/8?"},
      {"2001:db8::1/32",
       "2001:db8::1/32 has bits set after the prefix; did you mean 2001:db8::/32?"},
      {"10.0.0", "'10.0.0' is not an IPv4 or IPv6 address"},
      {"10.0.0.1:80", "'10.0.0.1:80' is not an IPv4 or IPv6 address"},
      {"[::1]", "'[::1]' is not an IPv4 or IPv6 address"},
  };
  for (const auto& [input, message] : cases) {
    absl::StatusOr<std::string> result = CanonicalAddressFilter(input);
    EXPECT_EQ(result.status().message(), message) << input;
  }
}

TEST(EnumNamesTest, SameNamesAsTheMetricLabels) {
  for (int value = 0; value <= 13; ++value) {
    const auto state = static_cast<v1::TcpState>(value);
    EXPECT_EQ(TcpStateNames().Name(value), TcpStateName(state)) << value;
    if (value > 0 && value <= 12) {
      EXPECT_EQ(TcpStateNames().Value(TcpStateName(state)), value);
    }
  }
  for (int value = 1; value <= 7; ++value) {
    const auto reason = static_cast<v1::CloseReason>(value);
    EXPECT_EQ(CloseReasonNames().Value(CloseReasonName(reason)), value) << value;
  }
  for (int value = 1; value <= 5; ++value) {
    const auto reason = static_cast<v1::HandshakeFailureReason>(value);
    EXPECT_EQ(HandshakeFailureReasonNames().Value(HandshakeFailureReasonName(reason)), value);
  }
  EXPECT_EQ(RoleNames().Names(), (std::vector<std::string>{"client", "server"}));
  // The kinds' names are the oneof's member names, in field order (--type and the EVENT column
  // agree).
  const google::protobuf::OneofDescriptor* kinds = v1::Event::descriptor()->FindOneofByName("kind");
  ASSERT_EQ(EventKindNames().Names().size(), static_cast<size_t>(kinds->field_count()));
  for (int i = 0; i < kinds->field_count(); ++i) {
    EXPECT_EQ(EventKindNames().Names()[i], kinds->field(i)->name());
  }
  EXPECT_EQ(EventKindNames().Value("handshake_failed"), v1::EVENT_KIND_HANDSHAKE_FAILED);
  EXPECT_EQ(HalfOpenReasonNames().Names(),
            (std::vector<std::string>{"peer_closed", "peer_rebooted", "peer_host_down"}));
  for (int value = 1; value <= 3; ++value) {
    const auto reason = static_cast<v1::HalfOpenReason>(value);
    EXPECT_EQ(HalfOpenReasonNames().Value(HalfOpenReasonName(reason)), value) << value;
  }
  EXPECT_EQ(
      AtRiskReasonNames().Names(),
      (std::vector<std::string>{"idle_no_keepalive", "keepalive_probing", "close_wait_stale"}));
  EXPECT_EQ(AtRiskReasonNames().Name(v1::AT_RISK_REASON_UNSPECIFIED), "unknown");
  EXPECT_EQ(AtRiskReasonNames().Name(99), "unknown");
  EXPECT_EQ(AtRiskReasonNames().Value("reason_unspecified"), std::nullopt);
  EXPECT_EQ(EventKindNames().Value("Close"), std::nullopt);
  EXPECT_EQ(EventKindNames().Value(""), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// Formatting.

TEST(HumanizeTest, ShortForms) {
  const std::vector<std::pair<absl::Duration, std::string>> durations = {
      {absl::Microseconds(-5), "0s"},     {absl::ZeroDuration(), "0s"},
      {absl::Microseconds(1), "1us"},     {absl::Microseconds(850), "850us"},
      {absl::Milliseconds(12), "12ms"},   {absl::Milliseconds(999), "999ms"},
      {absl::Milliseconds(2599), "2.5s"}, {absl::Seconds(42), "42s"},
      {absl::Seconds(303), "5m03s"},      {absl::Seconds(3 * 3600 + 5 * 60 + 59), "3h05m"},
      {absl::Hours(52), "2d04h"},
  };
  for (const auto& [duration, text] : durations) {
    EXPECT_EQ(ShortDuration(duration), text) << duration;
  }
  EXPECT_EQ(Age(0, kNow), "-");
  EXPECT_EQ(Age(kNowNs - 90000000000ull, kNow), "1m30s");
  EXPECT_EQ(Rtt(0), "-");
  EXPECT_EQ(Rtt(420), "0.42ms");
  EXPECT_EQ(EventTime(kNowNs + 123456789, absl::UTCTimeZone()), "2027-01-15 08:00:00.123");
  EXPECT_EQ(ErrnoName(110), "ETIMEDOUT");
  EXPECT_EQ(ErrnoName(4242), "errno 4242");
}

v1::HostEvent SampleEvent(const std::string& text) {
  v1::HostEvent entry = TextProto<v1::HostEvent>(text);
  entry.set_host("web-1");
  v1::Event& event = *entry.mutable_event();
  event.set_time_unix_ns(kNowNs + 5000000);
  event.set_role(v1::ROLE_CLIENT);
  event.mutable_endpoints()->set_local_address(Bytes({10, 0, 0, 1}));
  event.mutable_endpoints()->set_local_port(40000);
  event.mutable_endpoints()->set_remote_address(Bytes({10, 0, 0, 2}));
  event.mutable_endpoints()->set_remote_port(443);
  return entry;
}

TEST(EventFormatTest, KindAndDetailsOfEveryKind) {
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"event { handshake { duration_us: 300 } }", "handshake", "duration=300us"},
      {"event { handshake {} }", "handshake", ""},
      {"event { handshake_failed { reason: HANDSHAKE_FAILURE_TIMEOUT syn_retransmits: 6 "
       "duration_us: 127000000 error: 110 } origin { pid: 4242 command: \"curl\" } }",
       "handshake_failed",
       "reason=timeout syn_retransmits=6 after=2m07s error=ETIMEDOUT process=curl[4242]"},
      {"event { handshake_failed { reason: HANDSHAKE_FAILURE_REFUSED } }", "handshake_failed",
       "reason=refused"},
      {"event { close { initiator: CLOSE_INITIATOR_REMOTE reason: CLOSE_REASON_FIN "
       "lifetime_us: 2500000 bytes_sent: 100 bytes_received: 2000 srtt_us: 420 } }",
       "close", "initiator=remote reason=fin lifetime=2.5s sent=100 received=2000 rtt=0.42ms"},
      {"event { close { initiator: CLOSE_INITIATOR_LOCAL reason: CLOSE_REASON_KEEPALIVE_TIMEOUT "
       "retransmits: 3 last_state: TCP_STATE_ESTABLISHED error: 110 } }",
       "close",
       "initiator=local reason=keepalive_timeout sent=0 received=0 retransmits=3 "
       "last_state=established error=ETIMEDOUT"},
      {"event { keepalive_probe { probe_number: 3 idle_ms: 7350000 } }", "keepalive_probe",
       "probe=3 idle=2h02m"},
      {"event { keepalive_timeout { probes_sent: 9 idle_s: 7200 interval_s: 75 count: 9 "
       "error: 110 } }",
       "keepalive_timeout", "probes=9 idle=7200s interval=75s count=9 error=ETIMEDOUT"},
      {"event { keepalive_answered { probes_outstanding: 2 } }", "keepalive_answered",
       "outstanding=2"},
      {"event { origin { command: \"nginx\" } }", "unknown", "process=nginx[0]"},
      // Lost 2.1 s before the event (which is at kNowNs + 5 ms).
      {"event { half_open { reason: HALF_OPEN_PEER_REBOOTED peer_host: \"db-1\" "
       "peer_connection_id: 9 peer_last_state: TCP_STATE_ESTABLISHED "
       "peer_lost_unix_ns: 1799999997905000000 } }",
       "half_open", "reason=peer_rebooted peer=db-1 peer_state=established lost=2.1s"},
      {"event { half_open { reason: HALF_OPEN_PEER_HOST_DOWN } }", "half_open",
       "reason=peer_host_down"},
      // The owner last: process, then the pod (Kubernetes) or the container (elsewhere).
      {"event { handshake {} origin { pid: 4242 command: \"nginx\" pod_namespace: \"shop\" "
       "pod: \"web-0\" container_name: \"app\" pod_uid: \"u-1\" container_id: \"abc\" } }",
       "handshake", "process=nginx[4242] pod=shop/web-0/app"},
      {"event { close { initiator: CLOSE_INITIATOR_REMOTE reason: CLOSE_REASON_FIN } origin { "
       "pid: 7 command: \"redis-server\" container_name: \"cache\" "
       "runtime: CONTAINER_RUNTIME_DOCKER } }",
       "close",
       "initiator=remote reason=fin sent=0 received=0 process=redis-server[7] "
       "container=docker:cache"},
      // A server handshake in softirq without a known owner, but in a known container.
      {"event { handshake {} origin { container_id: "
       "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\" "
       "runtime: CONTAINER_RUNTIME_CRIO } }",
       "handshake", "container=crio:0123456789ab"},
      // half_open: the peer's owner, then the surviving end's own.
      {"event { half_open { reason: HALF_OPEN_PEER_CLOSED peer_host: \"db-1\" peer_origin { "
       "pid: 77 command: \"postgres\" pod_namespace: \"data\" pod: \"pg-0\" "
       "container_name: \"postgres\" } } origin { pid: 4242 command: \"psql\" "
       "pod_namespace: \"shop\" pod: \"web-0\" container_name: \"app\" } }",
       "half_open",
       "reason=peer_closed peer=db-1 peer_process=postgres[77] peer_pod=data/pg-0/postgres "
       "process=psql[4242] pod=shop/web-0/app"},
      {"event { half_open { reason: HALF_OPEN_PEER_REBOOTED peer_origin { container_name: "
       "\"pg\" runtime: CONTAINER_RUNTIME_PODMAN } } }",
       "half_open", "reason=peer_rebooted peer_container=podman:pg"},
  };
  for (const auto& [text, kind, details] : cases) {
    const v1::HostEvent entry = SampleEvent(text);
    EXPECT_EQ(EventKindName(entry.event()), kind) << text;
    EXPECT_EQ(EventDetails(entry.event()), details) << text;
  }
}

TEST(WorkloadFormatTest, PodContainerOrNothing) {
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {R"pb(pod_namespace: "shop"
            pod: "web-0"
            container_name: "app"
            pod_uid: "u-1"
            container_id: "4f6c0a3b9e2d71c8"
            runtime: CONTAINER_RUNTIME_CONTAINERD)pb",
       "shop/web-0/app", "pod=shop/web-0/app"},
      // A pod whose container name is not known (yet): the pod alone.
      {R"pb(pod_namespace: "shop" pod: "web-0")pb", "shop/web-0", "pod=shop/web-0"},
      {R"pb(pod: "web-0" container_name: "app")pb", "?/web-0/app", "pod=?/web-0/app"},
      {R"pb(container_name: "redis" runtime: CONTAINER_RUNTIME_DOCKER)pb", "docker:redis",
       "container=docker:redis"},
      {R"pb(container_name: "redis" runtime: CONTAINER_RUNTIME_PODMAN)pb", "podman:redis",
       "container=podman:redis"},
      {R"pb(container_id: "0123456789abcdef" runtime: CONTAINER_RUNTIME_CONTAINERD)pb",
       "containerd:0123456789ab", "container=containerd:0123456789ab"},
      // A Kubernetes container whose pod names were dropped: its name means little, its id does.
      {R"pb(container_name: "app"
            pod_uid: "u-1"
            container_id: "0123456789abcdef"
            runtime: CONTAINER_RUNTIME_CONTAINERD)pb",
       "containerd:0123456789ab", "container=containerd:0123456789ab"},
      {R"pb(container_id: "0123456789")pb", "container:0123456789",
       "container=container:0123456789"},
      {R"pb(pid: 1 command: "systemd" cgroup_id: 7 netns_inode: 4026531840)pb", "", ""},
  };
  for (const auto& [text, name, detail] : cases) {
    const v1::Origin origin = TextProto<v1::Origin>(text);
    EXPECT_EQ(WorkloadName(origin), name) << text;
    EXPECT_EQ(WorkloadCell(origin), name.empty() ? "-" : name) << text;
    EXPECT_EQ(WorkloadDetail(origin, ""), detail) << text;
  }
  EXPECT_EQ(ProcessCell(TextProto<v1::Origin>("pid: 4242 command: \"nginx\"")), "nginx[4242]");
  EXPECT_EQ(ProcessCell(TextProto<v1::Origin>("pid: 4242")), "?[4242]");
  EXPECT_EQ(ProcessCell(TextProto<v1::Origin>("cgroup_id: 9")), "-");
}

// A kind without a format of its own prints its set fields: enums by name, durations, errno
// names, an origin as its owner.
TEST(EventFormatTest, FieldDetailsOfAnyKind) {
  v1::HandshakeFailed failed;
  failed.set_reason(v1::HANDSHAKE_FAILURE_REFUSED);
  failed.set_syn_retransmits(2);
  failed.set_duration_us(1500000);
  failed.set_error(111);
  EXPECT_EQ(FieldDetails(failed),
            "reason=refused syn_retransmits=2 duration=1.5s error=ECONNREFUSED");
  v1::HalfOpen half_open;
  half_open.set_reason(v1::HALF_OPEN_PEER_HOST_DOWN);
  half_open.set_peer_host("db-1");
  half_open.set_peer_last_state(v1::TCP_STATE_CLOSE_WAIT);
  half_open.mutable_peer_origin()->set_pid(77);
  half_open.mutable_peer_origin()->set_command("postgres");
  EXPECT_EQ(FieldDetails(half_open),
            "reason=peer_host_down peer_host=db-1 peer_last_state=close_wait "
            "peer_process=postgres[77]");
  EXPECT_EQ(FieldDetails(v1::KeepaliveAnswered()), "");
}

TEST(EventFormatTest, RowsStreamAligned) {
  StreamingTable table(EventHeader(), EventMinWidths());
  std::ostringstream out;
  table.PrintHeader(out);
  table.PrintRow(
      out, EventRow(SampleEvent("event { handshake { duration_us: 300 } }"), absl::UTCTimeZone()));
  v1::HostEvent v6 =
      SampleEvent("event { close { initiator: CLOSE_INITIATOR_REMOTE reason: CLOSE_REASON_FIN } }");
  std::string address(16, '\0');
  address[0] = 0x20;
  address[1] = 0x01;
  address[15] = 1;
  v6.mutable_event()->mutable_endpoints()->set_remote_address(address);
  v6.mutable_event()->set_role(v1::ROLE_SERVER);
  table.PrintRow(out, EventRow(v6, absl::UTCTimeZone()));
  EXPECT_EQ(out.str(),
            "TIME                     HOST          ROLE    LOCAL                      REMOTE"
            "                 EVENT               DETAILS\n"
            "2027-01-15 08:00:00.005  web-1         client  10.0.0.1:40000         ->  "
            "10.0.0.2:443           handshake           duration=300us\n"
            "2027-01-15 08:00:00.005  web-1         server  10.0.0.1:40000         ->  "
            "[2001::1]:443          close               initiator=remote reason=fin sent=0 "
            "received=0\n");
}

TEST(ConnectionFormatTest, EveryColumn) {
  v1::ListConnectionsResponse response = TextProto<v1::ListConnectionsResponse>(R"pb(
    connections {
      host: "web-1"
      at_risk: AT_RISK_KEEPALIVE_PROBING
      pairing: PAIRING_PAIRED
      half_open: HALF_OPEN_PEER_HOST_DOWN
      connection {
        role: ROLE_CLIENT
        state: TCP_STATE_ESTABLISHED
        keepalive { enabled: true probes_out: 2 next_probe_ms: 75000 }
        idle_ms: 7350000
        srtt_us: 420
        send_queue: 10
        recv_queue: 0
        origin {
          pid: 4242
          command: "psql"
          pod_namespace: "shop"
          pod: "web-0"
          container_name: "app"
          pod_uid: "6b1f0c8e-2f4e-4d43-9d1c-0c5b3a6f7e21"
          container_id: "4f6c0a3b9e2d71c85a0f3e6b2d9c4a1e8f7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d"
          runtime: CONTAINER_RUNTIME_CONTAINERD
        }
      }
    }
    connections {
      host: "db-1"
      pairing: PAIRING_UNPAIRED
      connection {
        role: ROLE_SERVER
        state: TCP_STATE_CLOSE_WAIT
        idle_ms: 500
        origin {
          container_id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
          runtime: CONTAINER_RUNTIME_DOCKER
        }
      }
    }
    connections {
      host: "db-2"
      connection { role: ROLE_CLIENT state: TCP_STATE_SYN_SENT }
    }
  )pb");
  v1::Connection& first = *response.mutable_connections(0)->mutable_connection();
  first.set_state_since_unix_ns(kNowNs - 3600ull * 1000000000ull);
  first.mutable_endpoints()->set_local_address(Bytes({10, 0, 0, 1}));
  first.mutable_endpoints()->set_local_port(40000);
  first.mutable_endpoints()->set_remote_address(Bytes({10, 0, 0, 2}));
  first.mutable_endpoints()->set_remote_port(5432);
  response.mutable_connections(1)->mutable_connection()->set_state_since_unix_ns(kNowNs -
                                                                                 42000000000ull);
  std::ostringstream out;
  ConnectionsTable(response, kNow).Print(out);
  EXPECT_EQ(
      out.str(),
      "HOST   ROLE    STATE        IN STATE  LOCAL           REMOTE         PEER      AT RISK  "
      "          HALF-OPEN       KEEPALIVE  PROBES  NEXT PROBE  IDLE   RTT     SEND-Q  RECV-Q  "
      "POD                  PROCESS\n"
      "web-1  client  established  1h00m     10.0.0.1:40000  10.0.0.2:5432  paired    "
      "keepalive_probing  peer_host_down  on         2       1m15s       2h02m  0.42ms  10      "
      "0       shop/web-0/app       psql[4242]\n"
      "db-1   server  close_wait   42s       ?:0             ?:0            unpaired  -        "
      "          -               off        -       -           500ms  -       0       0       "
      "docker:0123456789ab  -\n"
      "db-2   client  syn_sent     -         ?:0             ?:0            -         -        "
      "          -               off        -       -           0s     -       0       0       "
      "-                    -\n");
}

// A half-open survivor whose peer is gone, a healthy pair, and an entry without a peer.
v1::ListConnectionsResponse SamplePaired(uint64_t now_ns) {
  v1::ListConnectionsResponse response = TextProto<v1::ListConnectionsResponse>(R"pb(
    connections {
      host: "web-1"
      pairing: PAIRING_PAIRED
      half_open: HALF_OPEN_PEER_REBOOTED
      connection {
        role: ROLE_CLIENT
        state: TCP_STATE_ESTABLISHED
        keepalive { enabled: true probes_out: 2 }
        idle_ms: 95000
        send_queue: 1200
        endpoints { local_port: 40000 remote_port: 5432 }
        origin {
          pid: 4242
          command: "psql"
          pod_namespace: "shop"
          pod: "web-0"
          container_name: "app"
        }
      }
      peer {
        host: "db-1"
        present: false
        connection {
          role: ROLE_SERVER
          state: TCP_STATE_ESTABLISHED
          keepalive { enabled: true }
          idle_ms: 1000
          send_queue: 7
          endpoints { local_port: 5432 remote_port: 40000 }
          origin {
            pid: 77
            command: "postgres"
            container_name: "pg"
            runtime: CONTAINER_RUNTIME_DOCKER
          }
        }
      }
    }
    connections {
      host: "web-2"
      pairing: PAIRING_PAIRED
      connection {
        state: TCP_STATE_ESTABLISHED
        idle_ms: 500
        recv_queue: 300
        endpoints { local_port: 40001 remote_port: 5432 }
        origin { pid: 5150 command: "curl" }
      }
      peer {
        host: "db-1"
        present: true
        connection {
          state: TCP_STATE_ESTABLISHED
          keepalive { enabled: true }
          idle_ms: 500
          send_queue: 12
          endpoints { local_port: 5432 remote_port: 40001 }
          origin {
            pid: 78
            command: "postgres"
            container_name: "pg"
            runtime: CONTAINER_RUNTIME_DOCKER
          }
        }
      }
    }
    connections {
      host: "web-3"
      connection { state: TCP_STATE_CLOSE_WAIT idle_ms: 42000 }
    }
  )pb");
  for (int i = 0; i < 2; ++i) {
    v1::HostConnection& entry = *response.mutable_connections(i);
    const int web = 1 + 2 * i;  // web-1 10.0.0.1, web-2 10.0.0.3
    entry.mutable_connection()->mutable_endpoints()->set_local_address(Bytes({10, 0, 0, web}));
    entry.mutable_connection()->mutable_endpoints()->set_remote_address(Bytes({10, 0, 0, 2}));
    v1::Endpoints& peer = *entry.mutable_peer()->mutable_connection()->mutable_endpoints();
    peer.set_local_address(Bytes({10, 0, 0, 2}));
    peer.set_remote_address(Bytes({10, 0, 0, web}));
  }
  // Lost an hour and ten seconds ago: the age shows the same for a minute of test time.
  response.mutable_connections(0)->mutable_peer()->set_lost_unix_ns(now_ns - 3610000000000ull);
  return response;
}

const char kPairedTable[] =
    "HOST   POD             PROCESS     LOCAL           STATE        KA        SEND/RECV-Q  IDLE   "
    "|  PEER-HOST  PEER-POD   PEER-PROCESS  PEER-LOCAL     PEER-STATE                    PEER-KA  "
    "PEER-SEND/RECV-Q  PEER-IDLE  HALF-OPEN\n"
    "web-1  shop/web-0/app  psql[4242]  10.0.0.1:40000  established  on 2 out  1200/0       1m35s  "
    "|  db-1       docker:pg  postgres[77]  10.0.0.2:5432  gone 1h00m ago (established)  -        "
    "-                 -          peer_rebooted\n"
    "web-2  -               curl[5150]  10.0.0.3:40001  established  off       0/300        500ms  "
    "|  db-1       docker:pg  postgres[78]  10.0.0.2:5432  established                   on       "
    "12/0              500ms      -\n"
    "web-3  -               -           ?:0             close_wait   off       0/0          42s    "
    "|  -          -          -             -              -                             -        "
    "-                 -          -\n";

TEST(PairedFormatTest, BothEndsSideBySide) {
  std::ostringstream out;
  PairedConnectionsTable(SamplePaired(kNowNs), kNow).Print(out);
  EXPECT_EQ(out.str(), kPairedTable);
  // A peer lost at an unknown time, in an unknown state.
  v1::ListConnectionsResponse unknown = SamplePaired(kNowNs);
  unknown.mutable_connections()->DeleteSubrange(1, 2);
  unknown.mutable_connections(0)->mutable_peer()->set_lost_unix_ns(0);
  unknown.mutable_connections(0)->mutable_peer()->mutable_connection()->clear_state();
  std::ostringstream gone;
  PairedConnectionsTable(unknown, kNow).Print(gone);
  EXPECT_TRUE(absl::StrContains(
      gone.str(), "|  db-1       docker:pg  postgres[77]  10.0.0.2:5432  gone        -  "))
      << gone.str();
}

TEST(AgentFormatTest, EveryColumn) {
  v1::ListAgentsResponse response = TextProto<v1::ListAgentsResponse>(R"pb(
    agents {
      host_name: "web-1"
      connected: true
      agent_version: "0.1.0"
      source: SOURCE_KIND_EBPF
      events: 12345
      losses { kernel: 1 agent: 2 }
      source_health { state: SOURCE_STATE_EVENTS_FAILED problem: "eBPF ring buffer poll: EIO" }
      connections: 40
      at_risk: 2
      half_open: 1
    }
    agents { host_name: "db-1" source: SOURCE_KIND_SOCK_DIAG }
  )pb");
  response.mutable_agents(0)->set_connected_since_unix_ns(kNowNs - 7200ull * 1000000000ull);
  response.mutable_agents(0)->set_last_seen_unix_ns(kNowNs - 1000000000ull);
  response.mutable_agents(1)->set_last_seen_unix_ns(kNowNs - 86400ull * 3 * 1000000000ull);
  std::ostringstream out;
  AgentsTable(response, kNow).Print(out);
  EXPECT_EQ(out.str(),
            "HOST   STATUS        UP     LAST SEEN  SOURCE     HEALTH         VERSION  EVENTS  "
            "LOST KERNEL  LOST AGENT  CONNECTIONS  AT RISK  HALF-OPEN\n"
            "web-1  connected     2h00m  1.0s ago   ebpf       events failed  0.1.0    12345   "
            "1            2           40           2        1\n"
            "db-1   disconnected  -      3d00h ago  sock_diag  -              -        0       "
            "0            0           0            0        0\n");
}

v1::SummaryResponse SampleSummary() {
  return TextProto<v1::SummaryResponse>(R"pb(
    fleet {
      agents: 2
      agents_connected: 1
      events: 1000
      losses { kernel: 5 }
      handshakes: 120
      handshake_failures { name: "refused" value: 3 }
      handshake_failures { name: "timeout" value: 1 }
      handshake_failures { name: "reset" value: 0 }
      closes_by_initiator { name: "local" value: 60 }
      closes_by_initiator { name: "remote" value: 40 }
      closes_by_reason { name: "fin" value: 90 }
      closes_by_reason { name: "keepalive_timeout" value: 10 }
      closes_short: 50
      closes_long: 45
      keepalive_probes: 12
      keepalive_timeouts: 1
      connections_by_state { name: "established" value: 10 }
      connections_by_state { name: "close_wait" value: 1 }
      keepalive_on: 4
      keepalive_off: 6
      at_risk { name: "idle_no_keepalive" value: 2 }
      half_open { name: "peer_closed" value: 0 }
      half_open { name: "peer_rebooted" value: 3 }
      half_open { name: "peer_host_down" value: 1 }
    }
    hosts { host: "web-1" agents: 1 agents_connected: 1 events: 1000 }
    history_events: 1000
    history_oldest_unix_ns: 1800000000000000000
  )pb");
}

TEST(SummaryFormatTest, FleetThenEveryHost) {
  std::ostringstream out;
  PrintSummary(SampleSummary(), /*fleet=*/true, absl::UTCTimeZone(), out);
  EXPECT_EQ(out.str(),
            "FLEET (1 host)\n"
            "  agents                 2, 1 connected\n"
            "  events                 1000\n"
            "  lost                   kernel 5, agent 0\n"
            "  handshakes             120\n"
            "  handshake failures     4: refused 3, timeout 1\n"
            "  closes                 100: short (<1s) 50, long 45, lifetime unknown 5\n"
            "    by initiator         local 60, remote 40\n"
            "    by reason            fin 90, keepalive_timeout 10\n"
            "  keepalive probes       12\n"
            "  keepalive timeouts     1\n"
            "  connections            11: established 10, close_wait 1\n"
            "  established keepalive  on 4, off 6\n"
            "  at risk                2: idle_no_keepalive 2\n"
            "  half-open              4: peer_rebooted 3, peer_host_down 1\n"
            "  history                1000 events, oldest 2027-01-15 08:00:00.000\n"
            "\n"
            "HOST web-1\n"
            "  agents                 1, 1 connected\n"
            "  events                 1000\n"
            "  lost                   kernel 0, agent 0\n"
            "  handshakes             0\n"
            "  handshake failures     0\n"
            "  closes                 0\n"
            "  keepalive probes       0\n"
            "  keepalive timeouts     0\n"
            "  connections            0\n"
            "  established keepalive  on 0, off 0\n"
            "  at risk                0\n"
            "  half-open              0\n");
  std::ostringstream host_only;
  PrintSummary(SampleSummary(), /*fleet=*/false, absl::UTCTimeZone(), host_only);
  EXPECT_TRUE(absl::StartsWith(host_only.str(), "HOST web-1\n")) << host_only.str();
}

TEST(JsonOutputTest, OneLineWithProtoFieldNames) {
  v1::HostEvent entry = SampleEvent("event { connection_id: 7 handshake { duration_us: 300 } }");
  const std::string line = JsonLine(entry);
  EXPECT_EQ(line,
            "{\"host\":\"web-1\",\"event\":{\"time_unix_ns\":\"1800000000005000000\","
            "\"connection_id\":\"7\",\"endpoints\":{\"local_address\":\"CgAAAQ==\","
            "\"local_port\":40000,\"remote_address\":\"CgAAAg==\",\"remote_port\":443},"
            "\"role\":\"ROLE_CLIENT\",\"handshake\":{\"duration_us\":\"300\"}}}");
  v1::HostEvent parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok());
  EXPECT_EQ(parsed.DebugString(), entry.DebugString());
}

TEST(RpcFailureTest, LostStream) {
  EXPECT_EQ(DescribeLostStream("h:1", {grpc::StatusCode::UNAVAILABLE, "Cancelling all calls"}),
            "tcpscope: lost the stream from tcpscope-service at h:1: UNAVAILABLE: Cancelling all "
            "calls");
  EXPECT_EQ(DescribeLostStream("h:1", {grpc::StatusCode::CANCELLED, ""}),
            "tcpscope: lost the stream from tcpscope-service at h:1: CANCELLED");
}

TEST(RpcFailureTest, UnreachableOrRefusedWithTheServicesMessage) {
  const absl::Duration timeout = absl::Seconds(10);
  EXPECT_EQ(DescribeRpcFailure("127.0.0.1:7700", {grpc::StatusCode::UNAVAILABLE, "no route"},
                               timeout, false),
            "tcpscope: tcpscope-service at 127.0.0.1:7700 is unreachable: no route");
  EXPECT_EQ(DescribeRpcFailure("h:1", {grpc::StatusCode::DEADLINE_EXCEEDED, "x"}, timeout, false),
            "tcpscope: tcpscope-service at h:1 is unreachable: not connected within 10s "
            "(--timeout)");
  EXPECT_EQ(DescribeRpcFailure("h:1", {grpc::StatusCode::DEADLINE_EXCEEDED, "x"}, timeout, true),
            "tcpscope: tcpscope-service at h:1 did not answer within 10s (--timeout)");
  EXPECT_EQ(DescribeRpcFailure("h:1", {grpc::StatusCode::INVALID_ARGUMENT, "host filter: bad"},
                               timeout, true),
            "tcpscope: tcpscope-service at h:1 refused the request: INVALID_ARGUMENT: host "
            "filter: bad");
  EXPECT_EQ(
      DescribeRpcFailure("h:1", {grpc::StatusCode::PERMISSION_DENIED, "token"}, timeout, true),
      "tcpscope: tcpscope-service at h:1 refused the request: PERMISSION_DENIED: token");
  EXPECT_EQ(DescribeRpcFailure("h:1", {grpc::StatusCode::UNIMPLEMENTED, ""}, timeout, true),
            "tcpscope: tcpscope-service at h:1 refused the request: UNIMPLEMENTED (the service "
            "is older than this tcpscope)");
}

// Names are validated upstream; a cell from a misbehaving service still prints as one line of
// printable text (no terminal escapes, no broken columns).
TEST(TableTest, CellsArePrintableAscii) {
  EXPECT_EQ(SafeCell("shop/web-0/app"), "shop/web-0/app");
  EXPECT_EQ(SafeCell("kworker/0:1 H"), "kworker/0:1 H");
  EXPECT_EQ(SafeCell("evil\x1b[2J\r\n\t"), "evil\\x1b[2J\\x0d\\x0a\\x09");
  EXPECT_EQ(SafeCell("caf\xc3\xa9\x7f"), "caf\\xc3\\xa9\\x7f");
  EXPECT_EQ(SafeCell("a\\x41"), "a\\\\x41");  // a real backslash stays distinguishable
  EXPECT_EQ(SafeCell(std::string("n\0ul", 4)), "n\\x00ul");
  Table table({"POD", "PROCESS"});
  table.AddRow({"web\n0", "x"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "POD       PROCESS\n"
            "web\\x0a0  x\n");
  StreamingTable stream({"POD", "PROCESS"}, {});
  std::ostringstream streamed;
  stream.PrintRow(streamed, {"\x1b]0;title\x07", "x"});
  EXPECT_EQ(streamed.str(), "\\x1b]0;title\\x07  x\n");
}

TEST(TableTest, StreamingColumnsOnlyGrow) {
  StreamingTable table({"A", "B", "C"}, {3, 0, 0});
  std::ostringstream out;
  table.PrintHeader(out);
  table.PrintRow(out, {"x", "yy", "z"});
  table.PrintRow(out, {"wwww", "y", "z"});
  table.PrintRow(out, {"x", "y", "z"});
  EXPECT_EQ(out.str(),
            "A    B  C\n"
            "x    yy  z\n"
            "wwww  y   z\n"
            "x     y   z\n");
}

// ---------------------------------------------------------------------------------------------
// The real binary against the fake Observer.

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Runs tcpscope with `args` to completion, stdout and stderr captured apart.
CliResult RunTcpscope(const std::vector<std::string>& args) {
  static int runs = 0;
  const std::string base = absl::StrCat(::testing::TempDir(), "/cli_test_", getpid(), "_", ++runs);
  const std::string out_path = base + ".out";
  const std::string err_path = base + ".err";
  std::vector<std::string> argv = {BinaryPath("tcpscope")};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> c_argv;
  for (std::string& arg : argv) c_argv.push_back(arg.data());
  c_argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    execv(c_argv[0], c_argv.data());
    _exit(127);
  }
  CliResult result;
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = ReadFile(out_path);
  result.err = ReadFile(err_path);
  return result;
}

class CliBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("TZ", "UTC", 1);  // event times in the children's tables
    server_ = FakeObserverServer::Start();
    ASSERT_NE(server_, nullptr);
  }

  FakeObserver& fake() { return server_->observer(); }
  std::string service() const { return absl::StrCat("--service=", server_->address()); }

  std::unique_ptr<FakeObserverServer> server_;
};

TEST_F(CliBinaryTest, HelpPerCommandOnStdoutWithExit0) {
  for (Command command :
       {Command::kAgents, Command::kConnections, Command::kEvents, Command::kSummary}) {
    const std::string name(CommandName(command));
    for (const std::vector<std::string>& args :
         std::vector<std::vector<std::string>>{{name, "--help"}, {"help", name}, {name, "-h"}}) {
      const CliResult result = RunTcpscope(args);
      EXPECT_EQ(result.exit_code, 0) << absl::StrJoin(args, " ");
      EXPECT_EQ(result.out, CommandHelp(command)) << absl::StrJoin(args, " ");
      EXPECT_EQ(result.err, "");
    }
  }
  CliResult result = RunTcpscope({"help"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out, OverviewHelp());
  result = RunTcpscope({"--help"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out, OverviewHelp());
  result = RunTcpscope({});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_EQ(result.out, "");
  EXPECT_EQ(result.err, OverviewHelp());
  EXPECT_EQ(fake().calls(), 0);
}

TEST_F(CliBinaryTest, UsageErrorsExit2BeforeAnyCall) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"connections", "--follow"},
       "tcpscope: --follow does not apply to 'tcpscope connections' (it is a flag of: events)\n"
       "Run 'tcpscope help connections' for usage.\n"},
      {{"events", "--last=-5"},
       "tcpscope: --last=-5: outside 0..4294967295\nRun 'tcpscope help events' for usage.\n"},
      {{"connections", "--port=70000"},
       "tcpscope: --port=70000: outside 0..65535 (0: any port)\n"
       "Run 'tcpscope help connections' for usage.\n"},
      {{"bogus"},
       "tcpscope: unknown command 'bogus' (commands: agents, connections, events, summary)\n"
       "Run 'tcpscope help' for usage.\n"},
      {{"agents", "-o", "yaml"},
       "tcpscope: -o yaml: expected table or json\nRun 'tcpscope help agents' for usage.\n"},
      {{"connections", "--paired", "--half_open_reason=rebooted"},
       "tcpscope: --half_open_reason=rebooted: not a half-open reason (peer_closed, "
       "peer_rebooted, peer_host_down)\nRun 'tcpscope help connections' for usage.\n"},
      {{"events", "--half_open_reason=down"},
       "tcpscope: --half_open_reason=down: not a half-open reason (peer_closed, peer_rebooted, "
       "peer_host_down)\nRun 'tcpscope help events' for usage.\n"},
      {{"summary", "--half_open"},
       "tcpscope: --half_open does not apply to 'tcpscope summary' (it is a flag of: "
       "connections)\nRun 'tcpscope help summary' for usage.\n"},
      {{"events", "--pod=web 0"},
       "tcpscope: --pod=web 0: pod name has character 0x20 at position 3; allowed are "
       "[A-Za-z0-9._-], starting with a letter or digit\nRun 'tcpscope help events' for usage.\n"},
      {{"connections", "--process=0"},
       "tcpscope: --process=0: not a pid (1..4294967295)\n"
       "Run 'tcpscope help connections' for usage.\n"},
  };
  for (const auto& [args, message] : cases) {
    std::vector<std::string> line = args;
    line.push_back(service());
    const CliResult result = RunTcpscope(line);
    EXPECT_EQ(result.exit_code, 2) << absl::StrJoin(args, " ");
    EXPECT_EQ(result.out, "");
    EXPECT_EQ(result.err, message);
  }
  EXPECT_EQ(fake().calls(), 0);
}

TEST_F(CliBinaryTest, AgentsTableAndJson) {
  fake().SetAgents(TextProto<v1::ListAgentsResponse>(R"pb(
    agents {
      host_name: "web-1"
      connected: true
      agent_version: "0.1.0"
      source: SOURCE_KIND_EBPF
      events: 7
      losses { agent: 1 }
      source_health { state: SOURCE_STATE_HEALTHY }
      connections: 3
      half_open: 2
    }
  )pb"));
  CliResult result = RunTcpscope({"agents", service()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  // No times were set, so no column depends on the clock.
  EXPECT_EQ(
      result.out,
      "HOST   STATUS     UP  LAST SEEN  SOURCE  HEALTH  VERSION  EVENTS  LOST KERNEL  "
      "LOST AGENT  CONNECTIONS  AT RISK  HALF-OPEN\n"
      "web-1  connected  -   -          ebpf    ok      0.1.0    7       0            1           "
      "3            0        2\n");
  EXPECT_EQ(result.err, "");
  result = RunTcpscope({"agents", "-o", "json", service()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "{\"agents\":[{\"host_name\":\"web-1\",\"connected\":true,\"agent_version\":\"0.1.0\","
            "\"source\":\"SOURCE_KIND_EBPF\",\"events\":\"7\",\"losses\":{\"agent\":\"1\"},"
            "\"connections\":3,\"half_open\":2,\"source_health\":{\"state\":"
            "\"SOURCE_STATE_HEALTHY\"}}]}\n");
}

TEST_F(CliBinaryTest, ConnectionsSendsEveryFilterAndEmptyResultIsHeaderOnly) {
  const CliResult result = RunTcpscope(
      {"connections", service(), "--host=web-1", "--state=established", "--port=443",
       "--keepalive=off", "--at_risk_reason=idle_no_keepalive", "--address=192.168.0.0/16",
       "--namespace=shop", "--pod=web-0", "--container=app", "--process=nginx"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "HOST  ROLE  STATE  IN STATE  LOCAL  REMOTE  PEER  AT RISK  HALF-OPEN  KEEPALIVE  "
            "PROBES  NEXT PROBE  IDLE  RTT  SEND-Q  RECV-Q  POD  PROCESS\n");
  EXPECT_EQ(result.err, "tcpscope: no connections match\n");
  const std::vector<v1::ListConnectionsRequest> requests = fake().connections_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_PROTO(requests[0], R"pb(host: "web-1"
                                 state: TCP_STATE_ESTABLISHED
                                 port: 443
                                 keepalive: KEEPALIVE_FILTER_OFF
                                 at_risk: true
                                 at_risk_reason: AT_RISK_IDLE_NO_KEEPALIVE
                                 address: "192.168.0.0/16"
                                 pod_namespace: "shop"
                                 pod: "web-0"
                                 container: "app"
                                 process: "nginx")pb");
}

TEST_F(CliBinaryTest, ConnectionsPairedTableAndJson) {
  const uint64_t now_ns = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  fake().SetConnections(SamplePaired(now_ns));
  CliResult result = RunTcpscope(
      {"connections", "--paired", "--half_open_reason=peer_rebooted", "--port=5432", service()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, kPairedTable);
  EXPECT_EQ(result.err, "");
  std::vector<v1::ListConnectionsRequest> requests = fake().connections_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_PROTO(requests[0], R"pb(port: 5432
                                 half_open: true
                                 half_open_reason: HALF_OPEN_PEER_REBOOTED
                                 paired: true)pb");

  // Without --paired, the same entries in the usual table; JSON has every new field.
  result = RunTcpscope({"connections", "--half_open", service()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(absl::StrContains(result.out, "  PEER  "));
  EXPECT_TRUE(absl::StrContains(result.out, "  paired  -        peer_rebooted  on  "))
      << result.out;
  result = RunTcpscope({"connections", "--paired", "-o", "json", service()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  for (const std::string& field :
       {std::string("\"pairing\":\"PAIRING_PAIRED\""),
        std::string("\"half_open\":\"HALF_OPEN_PEER_REBOOTED\""),
        std::string("\"peer\":{\"host\":\"db-1\",\"connection\":{"),
        std::string("\"present\":true"),
        std::string("\"origin\":{\"pod\":\"web-0\",\"pid\":4242,\"command\":\"psql\","
                    "\"container_name\":\"app\",\"pod_namespace\":\"shop\"}"),
        std::string("\"origin\":{\"pid\":77,\"command\":\"postgres\",\"container_name\":\"pg\","
                    "\"runtime\":\"CONTAINER_RUNTIME_DOCKER\"}"),
        absl::StrCat("\"lost_unix_ns\":\"", now_ns - 3610000000000ull, "\"")}) {
    EXPECT_TRUE(absl::StrContains(result.out, field)) << field << "\n" << result.out;
  }
  v1::ListConnectionsResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(result.out, &parsed).ok());
  EXPECT_EQ(parsed.DebugString(), SamplePaired(now_ns).DebugString());
  requests = fake().connections_requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_PROTO(requests[1], "half_open: true");
  EXPECT_PROTO(requests[2], "paired: true");
}

TEST_F(CliBinaryTest, SummaryTable) {
  fake().SetSummary(SampleSummary());
  const CliResult result = RunTcpscope({"summary", "--host=web-1", service()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  std::ostringstream expected;
  PrintSummary(SampleSummary(), /*fleet=*/false, absl::UTCTimeZone(), expected);
  EXPECT_EQ(result.out, expected.str());
  const std::vector<v1::SummaryRequest> requests = fake().summary_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_PROTO(requests[0], R"pb(host: "web-1")pb");
}

std::vector<v1::GetEventsResponse> SampleHistory() {
  v1::GetEventsResponse first;
  first.set_history_truncated(true);
  *first.add_events() = SampleEvent("event { connection_id: 1 handshake { duration_us: 300 } }");
  *first.add_events() = SampleEvent(
      "event { connection_id: 1 close { initiator: CLOSE_INITIATOR_LOCAL reason: "
      "CLOSE_REASON_FIN } }");
  v1::GetEventsResponse second;
  second.set_missed(4);
  *second.add_events() = SampleEvent(
      "event { connection_id: 2 handshake_failed { reason: HANDSHAKE_FAILURE_REFUSED } }");
  return {first, second};
}

TEST_F(CliBinaryTest, EventsJsonIsOneHostEventPerLineWithNotesOnStderr) {
  fake().SetHistory(SampleHistory());
  const CliResult result = RunTcpscope({"events", "-o", "json", service()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  std::vector<std::string> expected;
  for (const v1::GetEventsResponse& response : SampleHistory()) {
    for (const v1::HostEvent& entry : response.events()) expected.push_back(JsonLine(entry));
  }
  EXPECT_EQ(result.out, absl::StrCat(absl::StrJoin(expected, "\n"), "\n"));
  EXPECT_EQ(result.err,
            "tcpscope: history truncated: the service no longer holds every event asked for "
            "(older ones were evicted)\n"
            "tcpscope: missed 4 events: this client read too slowly and the service dropped "
            "them\n");
  const std::vector<v1::GetEventsRequest> requests = fake().events_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_PROTO(requests[0], "filter {} last: 20");
}

TEST_F(CliBinaryTest, EventsTable) {
  fake().SetHistory(SampleHistory());
  const CliResult result =
      RunTcpscope({"events", "--last=3", "--type=handshake,close", "--role=client", service()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "TIME                     HOST   ROLE    LOCAL               REMOTE        EVENT      "
            "       DETAILS\n"
            "2027-01-15 08:00:00.005  web-1  client  10.0.0.1:40000  ->  10.0.0.2:443  handshake  "
            "       duration=300us\n"
            "2027-01-15 08:00:00.005  web-1  client  10.0.0.1:40000  ->  10.0.0.2:443  close      "
            "       initiator=local reason=fin sent=0 received=0\n"
            "2027-01-15 08:00:00.005  web-1  client  10.0.0.1:40000  ->  10.0.0.2:443  "
            "handshake_failed  reason=refused\n");
  const std::vector<v1::GetEventsRequest> requests = fake().events_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_PROTO(requests[0],
               R"pb(filter { kinds: EVENT_KIND_HANDSHAKE kinds: EVENT_KIND_CLOSE role: ROLE_CLIENT }
                    last: 3)pb");
}

TEST_F(CliBinaryTest, HalfOpenEventsTableAndJson) {
  v1::GetEventsResponse response;
  *response.add_events() = SampleEvent(
      "event { connection_id: 3 half_open { reason: HALF_OPEN_PEER_REBOOTED peer_host: "
      "\"db-1\" peer_connection_id: 9 peer_last_state: TCP_STATE_ESTABLISHED "
      "peer_lost_unix_ns: 1799999997905000000 } }");
  fake().SetHistory({response});
  CliResult result =
      RunTcpscope({"events", "--type=half_open", "--half_open_reason=peer_rebooted", service()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "TIME                     HOST   ROLE    LOCAL               REMOTE        EVENT      "
            "DETAILS\n"
            "2027-01-15 08:00:00.005  web-1  client  10.0.0.1:40000  ->  10.0.0.2:443  half_open  "
            "reason=peer_rebooted peer=db-1 peer_state=established lost=2.1s\n");
  const std::vector<v1::GetEventsRequest> requests = fake().events_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_PROTO(requests[0],
               R"pb(filter { kinds: EVENT_KIND_HALF_OPEN half_open_reason: HALF_OPEN_PEER_REBOOTED }
                    last: 20)pb");
  result = RunTcpscope({"events", "-o", "json", service()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(absl::StrContains(
      result.out,
      "\"half_open\":{\"reason\":\"HALF_OPEN_PEER_REBOOTED\",\"peer_host\":\"db-1\","
      "\"peer_connection_id\":\"9\",\"peer_last_state\":\"TCP_STATE_ESTABLISHED\","
      "\"peer_lost_unix_ns\":\"1799999997905000000\"}"))
      << result.out;
}

// Which workload each event is about, in the table and in JSON (every Origin field).
TEST_F(CliBinaryTest, EventsNameTheirWorkload) {
  v1::GetEventsResponse response;
  *response.add_events() = SampleEvent(
      "event { connection_id: 4 handshake_failed { reason: HANDSHAKE_FAILURE_REFUSED } origin { "
      "netns_inode: 4026532000 cgroup_id: 9001 pid: 4242 command: \"curl\" container_id: "
      "\"4f6c0a3b9e2d71c85a0f3e6b2d9c4a1e8f7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d\" container_name: "
      "\"app\" pod_namespace: \"shop\" pod: \"web-0\" pod_uid: "
      "\"6b1f0c8e-2f4e-4d43-9d1c-0c5b3a6f7e21\" runtime: CONTAINER_RUNTIME_CONTAINERD } }");
  *response.add_events() = SampleEvent(
      "event { connection_id: 5 half_open { reason: HALF_OPEN_PEER_CLOSED peer_host: \"db-1\" "
      "peer_origin { pid: 77 command: \"postgres\" container_name: \"pg\" runtime: "
      "CONTAINER_RUNTIME_DOCKER } } origin { pid: 4242 command: \"curl\" pod_namespace: "
      "\"shop\" pod: \"web-0\" container_name: \"app\" } }");
  fake().SetHistory({response});
  CliResult result = RunTcpscope({"events", "--namespace=shop", "--pod=web-0", service()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "TIME                     HOST   ROLE    LOCAL               REMOTE        EVENT      "
            "       DETAILS\n"
            "2027-01-15 08:00:00.005  web-1  client  10.0.0.1:40000  ->  10.0.0.2:443  "
            "handshake_failed  reason=refused process=curl[4242] pod=shop/web-0/app\n"
            "2027-01-15 08:00:00.005  web-1  client  10.0.0.1:40000  ->  10.0.0.2:443  half_open  "
            "       reason=peer_closed peer=db-1 peer_process=postgres[77] "
            "peer_container=docker:pg process=curl[4242] pod=shop/web-0/app\n");
  const std::vector<v1::GetEventsRequest> requests = fake().events_requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_PROTO(requests[0], R"pb(filter { pod_namespace: "shop" pod: "web-0" }
                                 last: 20)pb");
  result = RunTcpscope({"events", "-o", "json", "--process=curl", service()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  for (const std::string& field :
       {std::string(
            "\"origin\":{\"netns_inode\":\"4026532000\",\"cgroup_id\":\"9001\","
            "\"container_id\":\"4f6c0a3b9e2d71c85a0f3e6b2d9c4a1e8f7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d\","
            "\"pod\":\"web-0\",\"pid\":4242,\"command\":\"curl\",\"container_name\":\"app\","
            "\"pod_namespace\":\"shop\",\"pod_uid\":\"6b1f0c8e-2f4e-4d43-9d1c-0c5b3a6f7e21\","
            "\"runtime\":\"CONTAINER_RUNTIME_CONTAINERD\"}"),
        std::string("\"peer_origin\":{\"pid\":77,\"command\":\"postgres\","
                    "\"container_name\":\"pg\",\"runtime\":\"CONTAINER_RUNTIME_DOCKER\"}")}) {
    EXPECT_TRUE(absl::StrContains(result.out, field)) << field << "\n" << result.out;
  }
}

TEST_F(CliBinaryTest, EmptyEventsPrintHeaderOnly) {
  const CliResult result = RunTcpscope({"events", "--since=1h", service()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "TIME  HOST  ROLE  LOCAL    REMOTE  EVENT  DETAILS\n");
  EXPECT_EQ(result.err, "tcpscope: no events match\n");
}

// Output goes to a file, which stdio would buffer: each event appearing within a second shows
// the CLI flushes after every response.
TEST_F(CliBinaryTest, FollowPrintsLiveEventsAtOnceAndEndsCleanlyOnSignals) {
  fake().SetHistory({SampleHistory()[0]});
  for (int signal_number : {SIGTERM, SIGINT}) {
    SCOPED_TRACE(signal_number);
    const int streams = static_cast<int>(fake().events_requests().size()) + 1;
    const std::string log =
        absl::StrCat(::testing::TempDir(), "/cli_follow_", getpid(), "_", signal_number);
    auto watcher = Subprocess::Start(
        {BinaryPath("tcpscope"), "events", "--follow", "--last=2", "-o", "json", service()}, log);
    ASSERT_TRUE(watcher.ok()) << watcher.status();
    ASSERT_TRUE(fake().WaitForEventStreams(streams, absl::Seconds(10)));
    EXPECT_PROTO(fake().events_requests().back(), "filter {} last: 2 follow: true");

    v1::GetEventsResponse live;
    *live.add_events() = SampleEvent(absl::StrCat("event { connection_id: ", 100 + signal_number,
                                                  " keepalive_probe { probe_number: 1 } }"));
    const std::string live_line = JsonLine(live.events(0));
    fake().PushLive(live);
    EXPECT_TRUE((*watcher)->WaitForLog(live_line, absl::Seconds(1))) << (*watcher)->Log();

    kill((*watcher)->pid(), signal_number);
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while ((*watcher)->Running() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
    const int status = (*watcher)->Stop();
    EXPECT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
    const std::string expected = absl::StrCat(
        "tcpscope: history truncated: the service no longer holds every event asked "
        "for (older ones were evicted)\n",
        JsonLine(SampleHistory()[0].events(0)), "\n", JsonLine(SampleHistory()[0].events(1)), "\n",
        live_line, "\n");
    // Earlier rounds' live events are replayed by the fake to later streams.
    EXPECT_TRUE(absl::EndsWith((*watcher)->Log(), live_line + "\n")) << (*watcher)->Log();
    if (signal_number == SIGTERM) {
      EXPECT_EQ((*watcher)->Log(), expected);
    }
    EXPECT_TRUE(fake().WaitForCancelledStreams(streams, absl::Seconds(5)));
  }
}

TEST_F(CliBinaryTest, FollowReportsAStreamTheServiceEndsWithExit1) {
  const std::string log = absl::StrCat(::testing::TempDir(), "/cli_follow_lost_", getpid());
  auto watcher = Subprocess::Start({BinaryPath("tcpscope"), "events", "--follow", service()}, log);
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  ASSERT_TRUE(fake().WaitForEventStreams(1, absl::Seconds(10)));
  absl::SleepFor(absl::Milliseconds(300));  // the CLI notes the connection every 100 ms
  const std::string address = server_->address();
  server_.reset();  // shuts the server down, cancelling the stream
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((*watcher)->Running() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  const int status = (*watcher)->Stop();
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const std::string output = (*watcher)->Log();
  EXPECT_TRUE(absl::StartsWith(
      output, absl::StrCat("tcpscope: lost the stream from tcpscope-service at ", address, ": ")))
      << output;
  EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 1) << output;
}

TEST_F(CliBinaryTest, RefusalsExit1WithTheServicesMessage) {
  const std::vector<std::pair<grpc::Status, std::string>> cases = {
      {{grpc::StatusCode::INVALID_ARGUMENT, "host filter: too long"},
       "refused the request: INVALID_ARGUMENT: host filter: too long"},
      {{grpc::StatusCode::PERMISSION_DENIED, "query token required"},
       "refused the request: PERMISSION_DENIED: query token required"},
  };
  for (const auto& [status, message] : cases) {
    fake().FailWith(status);
    for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
             {"agents"}, {"connections"}, {"events"}, {"events", "--follow"}, {"summary"}}) {
      std::vector<std::string> line = args;
      line.push_back(service());
      const CliResult result = RunTcpscope(line);
      EXPECT_EQ(result.exit_code, 1) << absl::StrJoin(args, " ");
      EXPECT_EQ(result.out, "");
      EXPECT_EQ(result.err, absl::StrCat("tcpscope: tcpscope-service at ", server_->address(), " ",
                                         message, "\n"))
          << absl::StrJoin(args, " ");
    }
  }
}

TEST_F(CliBinaryTest, ClosedPortIsUnreachableWithExit1) {
  const std::string address = absl::StrCat("127.0.0.1:", tcpscope::testing::FreeTcpPort());
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"agents"}, {"connections"}, {"events"}, {"events", "--follow"}, {"summary"}}) {
    std::vector<std::string> line = args;
    line.push_back(absl::StrCat("--service=", address));
    const CliResult result = RunTcpscope(line);
    EXPECT_EQ(result.exit_code, 1) << absl::StrJoin(args, " ");
    EXPECT_EQ(result.out, "");
    // gRPC's own words follow; they name the cause.
    EXPECT_TRUE(absl::StartsWith(
        result.err, absl::StrCat("tcpscope: tcpscope-service at ", address, " is unreachable: ")))
        << result.err;
    EXPECT_TRUE(absl::StrContains(result.err, "Connection refused")) << result.err;
    EXPECT_TRUE(absl::EndsWith(result.err, "\n")) << result.err;
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result.err;
  }
}

// A port that accepts TCP connections but never speaks HTTP/2: connecting never completes.
TEST_F(CliBinaryTest, ServiceThatNeverConnectsIsUnreachableAfterTimeout) {
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(listener, 16), 0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const std::string target = absl::StrCat("127.0.0.1:", ntohs(address.sin_port));
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"agents"}, {"events", "--follow"}}) {
    std::vector<std::string> line = args;
    line.push_back(absl::StrCat("--service=", target));
    line.push_back("--timeout=300ms");
    const absl::Time start = absl::Now();
    const CliResult result = RunTcpscope(line);
    EXPECT_LT(absl::Now() - start, absl::Seconds(3));
    EXPECT_EQ(result.exit_code, 1) << absl::StrJoin(args, " ");
    EXPECT_EQ(result.err, absl::StrCat("tcpscope: tcpscope-service at ", target,
                                       " is unreachable: not connected within 300ms "
                                       "(--timeout)\n"));
  }
  close(listener);
}

TEST_F(CliBinaryTest, ConnectedButSilentServiceTimesOut) {
  fake().HoldHistoryStreams();
  const CliResult result = RunTcpscope({"events", "--timeout=300ms", service()});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, absl::StrCat("tcpscope: tcpscope-service at ", server_->address(),
                                     " did not answer within 300ms (--timeout)\n"));
}

}  // namespace
}  // namespace tcpscope::cli
