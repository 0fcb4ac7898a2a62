// tcpscope: command-line client of tcpscope-service's Observer API.
//   tcpscope agents | connections | events --follow   [-o json] [--service=HOST:PORT]
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/table.h"
#include "common/shutdown.h"
#include "common/tcp_names.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "tcpscope/v1/observer.grpc.pb.h"

ABSL_FLAG(std::string, service, "127.0.0.1:7700", "Address of tcpscope-service's gRPC port.");
ABSL_FLAG(std::string, o, "table", "Output format: table or json.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10), "Deadline of each call.");
ABSL_FLAG(std::string, host, "", "connections, events: only this host.");
ABSL_FLAG(std::string, state, "", "connections: only this TCP state (e.g. established).");
ABSL_FLAG(int, port, 0, "connections: only connections with this local or remote port.");
ABSL_FLAG(bool, follow, false, "events: stream live events until interrupted.");

namespace tcpscope::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;  // the service refused or could not be reached
constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    "Queries tcpscope-service.\n"
    "Usage: tcpscope COMMAND [flags]\n"
    "Commands:\n"
    "  agents        agents known to the service: connected, version, events, losses\n"
    "  connections   current connections from the agents' latest snapshots\n"
    "                (--host, --state, --port filter)\n"
    "  events        live events as the service receives them (--follow, --host)\n"
    "Flags: --service=HOST:PORT (default 127.0.0.1:7700), -o table|json.\n"
    "Exit codes: 0 ok, 1 the service refused or is unreachable, 2 bad usage.";

bool Json() { return absl::GetFlag(FLAGS_o) == "json"; }

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

int Failed(const grpc::Status& status) {
  std::cerr << "tcpscope: service " << absl::GetFlag(FLAGS_service) << ": ";
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    std::cerr << "unreachable (" << status.error_message() << ")\n";
  } else {
    std::cerr << status.error_message() << " (code " << status.error_code() << ")\n";
  }
  return kExitFailed;
}

std::string Ago(uint64_t unix_ns) {
  if (unix_ns == 0) return "-";
  const absl::Duration ago = absl::Now() - absl::FromUnixNanos(static_cast<int64_t>(unix_ns));
  if (ago < absl::Seconds(1)) return "now";
  return absl::StrCat(absl::FormatDuration(absl::Trunc(ago, absl::Seconds(1))), " ago");
}

void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_timeout)));
}

int Agents(v1::Observer::Stub& stub) {
  grpc::ClientContext context;
  SetDeadline(context);
  v1::ListAgentsResponse response;
  if (grpc::Status status = stub.ListAgents(&context, {}, &response); !status.ok()) {
    return Failed(status);
  }
  if (Json()) {
    std::cout << ToJson(response) << "\n";
    return kExitOk;
  }
  Table table(
      {"HOST", "CONNECTED", "LAST SEEN", "VERSION", "SOURCE", "EVENTS", "LOST", "CONNECTIONS"});
  for (const v1::Agent& agent : response.agents()) {
    const v1::LossCounters& losses = agent.losses();
    table.AddRow({agent.host_name(), agent.connected() ? "yes" : "no",
                  Ago(agent.last_seen_unix_ns()), agent.agent_version(),
                  std::string(SourceKindName(agent.source())), absl::StrCat(agent.events()),
                  absl::StrCat(losses.kernel() + losses.agent() + losses.transport()),
                  absl::StrCat(agent.connections())});
  }
  table.Print(std::cout);
  return kExitOk;
}

int Connections(v1::Observer::Stub& stub) {
  v1::ListConnectionsRequest request;
  request.set_host(absl::GetFlag(FLAGS_host));
  if (const std::string state = absl::GetFlag(FLAGS_state); !state.empty()) {
    bool found = false;
    for (int value = 1; value <= 12 && !found; ++value) {
      if (TcpStateName(static_cast<v1::TcpState>(value)) == state) {
        request.set_state(static_cast<v1::TcpState>(value));
        found = true;
      }
    }
    if (!found) {
      std::cerr << "tcpscope: --state=" << state
                << " is not a TCP state (established, syn_sent, time_wait, close_wait, ...)\n";
      return kExitUsage;
    }
  }
  const int port = absl::GetFlag(FLAGS_port);
  if (port < 0 || port > 65535) {
    std::cerr << "tcpscope: --port=" << port << " is outside 0..65535\n";
    return kExitUsage;
  }
  request.set_port(static_cast<uint32_t>(port));
  grpc::ClientContext context;
  SetDeadline(context);
  v1::ListConnectionsResponse response;
  if (grpc::Status status = stub.ListConnections(&context, request, &response); !status.ok()) {
    return Failed(status);
  }
  if (Json()) {
    std::cout << ToJson(response) << "\n";
    return kExitOk;
  }
  Table table({"HOST", "ROLE", "STATE", "LOCAL", "REMOTE", "KEEPALIVE", "IDLE", "RTT", "NETNS"});
  for (const v1::HostConnection& entry : response.connections()) {
    const v1::Connection& c = entry.connection();
    std::string keepalive = c.keepalive().enabled() ? "on" : "off";
    if (c.keepalive().enabled() && c.keepalive().next_probe_ms() > 0) {
      absl::StrAppend(&keepalive, " (next ", c.keepalive().next_probe_ms() / 1000, "s, ",
                      c.keepalive().probes_out(), " out)");
    }
    table.AddRow(
        {entry.host(), std::string(RoleName(c.role())), std::string(TcpStateName(c.state())),
         FormatAddress(c.endpoints().local_address(), c.endpoints().local_port()),
         FormatAddress(c.endpoints().remote_address(), c.endpoints().remote_port()), keepalive,
         absl::StrCat(c.idle_ms() / 1000, "s"), absl::StrFormat("%.2fms", c.srtt_us() / 1000.0),
         absl::StrCat(c.origin().netns_inode())});
  }
  table.Print(std::cout);
  return kExitOk;
}

std::string DescribeEvent(const v1::Event& event) {
  switch (event.kind_case()) {
    case v1::Event::kHandshake:
      return event.handshake().has_duration_us()
                 ? absl::StrCat(
                       "handshake duration=",
                       absl::FormatDuration(absl::Microseconds(event.handshake().duration_us())))
                 : "handshake";
    case v1::Event::kHandshakeFailed:
      return absl::StrCat("handshake_failed reason=",
                          HandshakeFailureReasonName(event.handshake_failed().reason()));
    case v1::Event::kClose: {
      const v1::Close& close = event.close();
      std::string text =
          absl::StrCat("close initiator=", CloseInitiatorName(close.initiator()),
                       " reason=", CloseReasonName(close.reason()), " sent=", close.bytes_sent(),
                       " received=", close.bytes_received());
      if (close.has_lifetime_us()) {
        absl::StrAppend(
            &text, " lifetime=", absl::FormatDuration(absl::Microseconds(close.lifetime_us())));
      }
      return text;
    }
    case v1::Event::kKeepaliveProbe:
      return absl::StrCat("keepalive_probe n=", event.keepalive_probe().probe_number());
    case v1::Event::kKeepaliveTimeout:
      return absl::StrCat("keepalive_timeout probes=", event.keepalive_timeout().probes_sent(),
                          event.keepalive_timeout().error() == 110 ? "" : " (unreachable)");
    case v1::Event::kKeepaliveAnswered:
      return absl::StrCat("keepalive_answered outstanding=",
                          event.keepalive_answered().probes_outstanding());
    case v1::Event::KIND_NOT_SET:
      break;
  }
  return "unknown";
}

int Events(v1::Observer::Stub& stub) {
  if (!absl::GetFlag(FLAGS_follow)) {
    std::cerr << "tcpscope: events needs --follow (history comes with a later service)\n";
    return kExitUsage;
  }
  grpc::ClientContext context;
  v1::GetEventsRequest request;
  request.mutable_filter()->set_host(absl::GetFlag(FLAGS_host));
  request.set_follow(true);
  std::unique_ptr<grpc::ClientReader<v1::GetEventsResponse>> reader =
      stub.GetEvents(&context, request);
  // Ctrl-C ends the stream cleanly: a thread waits for the signal and cancels the call.
  std::thread canceller([&context] {
    WaitForShutdownSignal();
    context.TryCancel();
  });
  canceller.detach();
  v1::GetEventsResponse response;
  while (reader->Read(&response)) {
    if (response.missed() > 0) {
      std::cerr << "tcpscope: missed " << response.missed() << " events (reading too slowly)\n";
    }
    for (const v1::HostEvent& entry : response.events()) {
      if (Json()) {
        std::cout << ToJson(entry) << "\n";
        continue;
      }
      const v1::Event& event = entry.event();
      std::cout << absl::FormatTime("%H:%M:%E3S",
                                    absl::FromUnixNanos(static_cast<int64_t>(event.time_unix_ns())),
                                    absl::LocalTimeZone())
                << " " << entry.host() << " " << RoleName(event.role()) << " "
                << FormatAddress(event.endpoints().local_address(), event.endpoints().local_port())
                << " -> "
                << FormatAddress(event.endpoints().remote_address(),
                                 event.endpoints().remote_port())
                << " " << DescribeEvent(event) << "\n";
    }
    std::cout.flush();
  }
  grpc::Status status = reader->Finish();
  if (status.error_code() == grpc::StatusCode::CANCELLED) return kExitOk;
  return status.ok() ? kExitOk : Failed(status);
}

}  // namespace
}  // namespace tcpscope::cli

int main(int argc, char** argv) {
  using namespace tcpscope::cli;
  tcpscope::BlockShutdownSignals();
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::cerr << kUsage << "\n";
    return kExitUsage;
  }
  const std::string format = absl::GetFlag(FLAGS_o);
  if (format != "table" && format != "json") {
    std::cerr << "tcpscope: -o " << format << ": choose table or json\n";
    return kExitUsage;
  }
  auto channel =
      grpc::CreateChannel(absl::GetFlag(FLAGS_service), grpc::InsecureChannelCredentials());
  auto stub = tcpscope::v1::Observer::NewStub(channel);
  const std::string command = args[1];
  if (command == "agents") return Agents(*stub);
  if (command == "connections") return Connections(*stub);
  if (command == "events") return Events(*stub);
  std::cerr << "tcpscope: unknown command '" << command << "'\n" << kUsage << "\n";
  return kExitUsage;
}
