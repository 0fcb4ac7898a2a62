// tcpscope-service: receives agent streams, aggregates them into Prometheus metrics and serves
// the Observer query API, health and reflection on one gRPC port.
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/metrics_server.h"
#include "common/shutdown.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "service/aggregator.h"
#include "service/event_hub.h"
#include "service/ingest_service.h"
#include "service/observer_service.h"
#include "service/service_metrics.h"

ABSL_FLAG(std::string, grpc_listen, "127.0.0.1:7700",
          "Address for gRPC (agent ingest, Observer API, health, reflection).");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9700",
          "Address of the Prometheus metrics endpoint (/metrics).");
ABSL_FLAG(int, max_message_bytes, 16 << 20,
          "Largest gRPC message accepted, in bytes (1 KiB to 256 MiB).");

namespace tcpscope::service {
namespace {

int Main() {
  const int max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  if (max_message_bytes < 1024 || max_message_bytes > (256 << 20)) {
    TS_LOG(ERROR) << "--max_message_bytes=" << max_message_bytes << " is outside 1024..268435456";
    return 2;
  }
  ServiceMetrics metrics;
  EventHub hub;
  Aggregator aggregator(&metrics, &hub);
  IngestService ingest(&aggregator, &metrics);
  ObserverService observer(&aggregator, &hub, &metrics);

  MetricsServerOptions metrics_options;
  metrics_options.listen = absl::GetFlag(FLAGS_metrics_listen);
  absl::StatusOr<std::unique_ptr<MetricsServer>> metrics_server =
      MetricsServer::Start(metrics_options, {metrics.registry()});
  if (!metrics_server.ok()) {
    TS_LOG(ERROR) << "--metrics_listen=" << metrics_options.listen << ": "
                  << metrics_server.status();
    return 1;
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  const std::string grpc_listen = absl::GetFlag(FLAGS_grpc_listen);
  int grpc_port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(grpc_listen, grpc::InsecureServerCredentials(), &grpc_port);
  builder.SetMaxReceiveMessageSize(max_message_bytes);
  builder.RegisterService(&ingest);
  builder.RegisterService(&observer);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    TS_LOG(ERROR) << "--grpc_listen=" << grpc_listen
                  << ": cannot listen (address in use or invalid)";
    return 1;
  }
  TS_LOG(INFO) << "tcpscope-service " << TCPSCOPE_VERSION << ": gRPC on " << grpc_listen
               << " (port " << grpc_port << "), metrics on http://" << metrics_options.listen
               << "/metrics";

  const int signal_number = WaitForShutdownSignal();
  TS_LOG(INFO) << "signal " << signal_number << ": stopping";
  // Streams get a moment to finish, then are cancelled.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  TS_LOG(INFO) << "stopped";
  return 0;
}

}  // namespace
}  // namespace tcpscope::service

int main(int argc, char** argv) {
  tcpscope::BlockShutdownSignals();
  absl::SetProgramUsageMessage(
      "Aggregates tcpscope agents' streams into metrics and a query API.\n"
      "Usage: tcpscope-service [--grpc_listen=HOST:PORT] [--metrics_listen=HOST:PORT]");
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    TS_LOG(ERROR) << "unexpected argument '" << positional[1]
                  << "' (settings are --flags; see --help)";
    return 2;
  }
  return tcpscope::service::Main();
}
