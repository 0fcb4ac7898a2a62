// tcpscope-service: receives agent streams, aggregates them into Prometheus metrics and serves
// the Observer query API, health and reflection on one gRPC port.
#include <malloc.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/bearer_token.h"
#include "common/log.h"
#include "common/metrics_server.h"
#include "common/shutdown.h"
#include "common/tls_flags.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "service/aggregator.h"
#include "service/event_log.h"
#include "service/fleet_queries.h"
#include "service/ingest_service.h"
#include "service/observer_service.h"
#include "service/query_fanout.h"
#include "service/replica_link.h"
#include "service/replica_service.h"
#include "service/replica_set.h"
#include "service/service_metrics.h"

ABSL_FLAG(std::string, grpc_listen, "127.0.0.1:7700",
          "Address for gRPC (agent ingest, Observer API, health, reflection).");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9700",
          "Address of the Prometheus metrics endpoint (/metrics).");
ABSL_FLAG(int, max_message_bytes, 16 << 20,
          "Largest gRPC message accepted, in bytes (1 KiB to 256 MiB).");
ABSL_FLAG(int, max_agent_streams, 10000,
          "Agent streams open at once; more are refused (RESOURCE_EXHAUSTED) and retry.");
ABSL_FLAG(double, max_events_per_second, 200000,
          "Events one agent stream may send per second (burst: two seconds' worth); a batch over "
          "it is refused and resent by the agent after a backoff. 0: no limit.");
ABSL_FLAG(int, event_history, 100000,
          "Events kept in memory for GetEvents --last/--since (newest; 0 to 10,000,000).");
ABSL_FLAG(absl::Duration, idle_risk_after, absl::Minutes(30),
          "An established connection without keepalive and without data for longer than this is "
          "at risk (idle_no_keepalive).");
ABSL_FLAG(absl::Duration, close_wait_risk_after, absl::Minutes(1),
          "A connection in CLOSE_WAIT for longer than this is at risk (close_wait_stale).");
ABSL_FLAG(absl::Duration, half_open_grace, absl::Seconds(3),
          "A paired connection end still ESTABLISHED in a snapshot taken this long after its "
          "peer's end closed or vanished is half-open (covers a FIN in flight and clock skew "
          "between hosts; at least 100ms).");
ABSL_FLAG(absl::Duration, peer_down_after, absl::Minutes(1),
          "A host whose agent has sent nothing for this long is down: its peers' ends of their "
          "connections are half-open (peer_host_down). Keep it above twice the agents' "
          "--snapshot_interval.");
ABSL_FLAG(std::string, query_token_file, "",
          "File holding a bearer token the Observer API demands (\"authorization: Bearer "
          "TOKEN\"); empty: no token. Agents are not asked for it (use mutual TLS).");
ABSL_FLAG(absl::Duration, host_expiry, absl::Minutes(10),
          "A disconnected host's series and totals are removed this long after its last message "
          "(at least 1s; keep it above the agents' --max_reconnect_backoff). A pod or port with "
          "no connection end and no event for this long loses its series too.");
ABSL_FLAG(int, max_pods_per_host, 100,
          "Per host, the pods (a container outside Kubernetes counts as one) whose workload "
          "series are their own; the series of further pods are summed into pod=\"other\" "
          "(0 to 100000).");
ABSL_FLAG(int, max_ports_per_host, 50,
          "Per host, the server ports whose tcpscope_port_* series are their own; further ports "
          "are summed into port=\"other\" (0 to 65536).");

ABSL_FLAG(std::string, peers, "",
          "Every replica of the service, this one included, as HOST:PORT,... or "
          "dns:///NAME:PORT (a headless Service); empty: this is the only replica.");
ABSL_FLAG(std::string, advertise, "",
          "With --peers: the HOST:PORT the other replicas reach this one at (one of --peers).");
ABSL_FLAG(absl::Duration, replica_down_after, absl::Seconds(3),
          "With --peers: a replica not answering pings for this long is out of the ring "
          "(1s to 1m).");

namespace tcpscope::service {

constexpr int kMaxReadChunkBytes = 16 * 1024;
// How long a peer may take to give its part of a query (or, following events, its history),
// when the caller's deadline is not earlier.
constexpr absl::Duration kFanoutTimeout = absl::Seconds(5);
namespace {

int Main() {
  const int max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  if (max_message_bytes < 1024 || max_message_bytes > (256 << 20)) {
    TS_LOG(ERROR) << "--max_message_bytes=" << max_message_bytes << " is outside 1024..268435456";
    return 2;
  }
  const int event_history = absl::GetFlag(FLAGS_event_history);
  if (event_history < 0 || event_history > 10000000) {
    TS_LOG(ERROR) << "--event_history=" << event_history << " is outside 0..10000000";
    return 2;
  }
  AggregatorOptions aggregator_options;
  aggregator_options.at_risk.idle_after = absl::GetFlag(FLAGS_idle_risk_after);
  aggregator_options.at_risk.close_wait_after = absl::GetFlag(FLAGS_close_wait_risk_after);
  aggregator_options.host_expiry = absl::GetFlag(FLAGS_host_expiry);
  aggregator_options.half_open.grace = absl::GetFlag(FLAGS_half_open_grace);
  aggregator_options.half_open.peer_down_after = absl::GetFlag(FLAGS_peer_down_after);
  if (aggregator_options.half_open.grace < absl::Milliseconds(100) ||
      aggregator_options.half_open.peer_down_after < absl::Seconds(1)) {
    TS_LOG(ERROR) << "--half_open_grace must be at least 100ms and --peer_down_after at least 1s";
    return 2;
  }
  if (aggregator_options.at_risk.idle_after <= absl::ZeroDuration() ||
      aggregator_options.at_risk.close_wait_after <= absl::ZeroDuration()) {
    TS_LOG(ERROR) << "--idle_risk_after and --close_wait_risk_after must be positive";
    return 2;
  }
  if (aggregator_options.host_expiry < absl::Seconds(1)) {
    TS_LOG(ERROR) << "--host_expiry=" << absl::FormatDuration(aggregator_options.host_expiry)
                  << " is below 1s";
    return 2;
  }
  aggregator_options.max_pods_per_host = absl::GetFlag(FLAGS_max_pods_per_host);
  aggregator_options.max_ports_per_host = absl::GetFlag(FLAGS_max_ports_per_host);
  if (aggregator_options.max_pods_per_host < 0 || aggregator_options.max_pods_per_host > 100000 ||
      aggregator_options.max_ports_per_host < 0 || aggregator_options.max_ports_per_host > 65536) {
    TS_LOG(ERROR) << "--max_pods_per_host must be in 0..100000 and --max_ports_per_host in "
                     "0..65536";
    return 2;
  }
  const TlsFiles tls = TlsFilesFromFlags();
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = MakeServerCredentials(tls);
  if (!credentials.ok()) {
    TS_LOG(ERROR) << credentials.status().message();
    return 2;
  }
  ObserverOptions observer_options;
  if (const std::string path = absl::GetFlag(FLAGS_query_token_file); !path.empty()) {
    absl::StatusOr<std::string> token = ReadBearerToken(path);
    if (!token.ok()) {
      TS_LOG(ERROR) << "--query_token_file=" << path << ": " << token.status().message();
      return 2;
    }
    observer_options.query_token = *std::move(token);
  }

  IngestLimits ingest_limits;
  ingest_limits.max_streams = absl::GetFlag(FLAGS_max_agent_streams);
  ingest_limits.max_events_per_second = absl::GetFlag(FLAGS_max_events_per_second);
  if (ingest_limits.max_streams < 1 || ingest_limits.max_events_per_second < 0) {
    TS_LOG(ERROR) << "--max_agent_streams must be at least 1 and --max_events_per_second at "
                     "least 0";
    return 2;
  }

  ServiceMetrics metrics;
  std::unique_ptr<ReplicaSet> replicas;
  std::unique_ptr<ReplicaLink> replica_link;
  if (const std::string peers = absl::GetFlag(FLAGS_peers); !peers.empty()) {
    ReplicaSetOptions replica_options;
    absl::StatusOr<ReplicaAddresses> addresses = ReplicaAddresses::Parse("--peers", peers);
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> peer_credentials =
        MakeChannelCredentials(tls);
    if (!addresses.ok() || !peer_credentials.ok()) {
      TS_LOG(ERROR) << (addresses.ok() ? peer_credentials.status() : addresses.status()).message();
      return 2;
    }
    replica_options.peers = *std::move(addresses);
    replica_options.advertise = absl::GetFlag(FLAGS_advertise);
    replica_options.down_after = absl::GetFlag(FLAGS_replica_down_after);
    replica_options.ping_interval = std::min(absl::Seconds(1), replica_options.down_after / 3);
    replica_options.credentials = *std::move(peer_credentials);
    replica_options.token = observer_options.query_token;
    if (replica_options.down_after < absl::Seconds(1) ||
        replica_options.down_after > absl::Minutes(1)) {
      TS_LOG(ERROR) << "--replica_down_after=" << absl::FormatDuration(replica_options.down_after)
                    << " is outside 1s..1m";
      return 2;
    }
    absl::StatusOr<std::unique_ptr<ReplicaSet>> created =
        ReplicaSet::Create(std::move(replica_options), *metrics.registry());
    if (!created.ok()) {
      TS_LOG(ERROR) << created.status().message();
      return 2;
    }
    replicas = *std::move(created);
    replica_link = std::make_unique<ReplicaLink>(replicas.get(), *metrics.registry());
    // The replicas see a change within a ping interval of each other, then send their hosts'
    // views: twice --replica_down_after covers both.
    aggregator_options.ring_quiet = 2 * absl::GetFlag(FLAGS_replica_down_after);
  } else if (!absl::GetFlag(FLAGS_advertise).empty()) {
    TS_LOG(ERROR) << "--advertise needs --peers (the replicas of the tier)";
    return 2;
  }
  EventLog event_log(static_cast<size_t>(event_history));
  Aggregator aggregator(&metrics, &event_log, aggregator_options);
  if (replica_link != nullptr) aggregator.SetReplicaSender(replica_link.get());
  IngestService ingest(&aggregator, &metrics, ingest_limits);
  FleetQueries queries(&aggregator);
  // With replicas, any replica answers queries for the whole fleet.
  std::unique_ptr<QueryFanout> fanout;
  if (replicas != nullptr) {
    fanout = std::make_unique<QueryFanout>(replicas.get(), *metrics.registry(), kFanoutTimeout);
  }
  ObserverService observer(&queries, &event_log, &metrics, observer_options, fanout.get());

  MetricsServerOptions metrics_options;
  metrics_options.listen = absl::GetFlag(FLAGS_metrics_listen);
  absl::StatusOr<std::unique_ptr<MetricsServer>> metrics_server =
      MetricsServer::Start(metrics_options, metrics.collectables());
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
  builder.AddListeningPort(grpc_listen, *credentials, &grpc_port);
  builder.SetMaxReceiveMessageSize(max_message_bytes);
  // gRPC's TCP reader grows its read buffer towards the largest message a connection carried
  // (a snapshot: hundreds of KiB) and keeps it allocated while the connection waits: ~330 KiB
  // per agent stream, measured (heaptrack, BENCHMARKS.md "Fleet simulator"). Capped, a large
  // message takes a few more reads instead.
  builder.AddChannelArgument(GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE, kMaxReadChunkBytes);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  // gRPC binds with SO_REUSEPORT by default: a second service on a port in use would share its
  // connections silently instead of failing to start.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(&ingest);
  builder.RegisterService(&observer);
  std::unique_ptr<ReplicaService> replica_service;
  if (replicas != nullptr) {
    replica_service = std::make_unique<ReplicaService>(
        replicas.get(),
        [&aggregator](const std::string& from, v1::ReplicaMessage& message) {
          return aggregator.ApplyReplicaMessage(from, message, absl::Now());
        },
        &metrics, observer_options.query_token);
    builder.RegisterService(replica_service.get());
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    TS_LOG(ERROR) << "--grpc_listen=" << grpc_listen
                  << ": cannot listen (address in use or invalid)";
    return 1;
  }
  if (fanout != nullptr) observer.set_local_channel(server->InProcessChannel({}));
  TS_LOG(INFO) << "tcpscope-service " << TCPSCOPE_VERSION << ": gRPC on " << grpc_listen
               << " (port " << grpc_port << ", " << DescribeTls(tls, /*server=*/true)
               << (observer_options.query_token.empty() ? "" : ", query token required")
               << "), metrics on http://" << metrics_options.listen << "/metrics";

  if (replicas != nullptr) {
    TS_LOG(INFO) << "replica " << replicas->self() << " of --peers=" << absl::GetFlag(FLAGS_peers);
    replicas->Start(
        [&aggregator](std::shared_ptr<const Ring> ring) {
          aggregator.OnRing(std::move(ring), absl::Now());
        },
        [&aggregator](const std::string& peer) { aggregator.OnAgreement(peer); });
  }

  // Housekeeping once a second: expire hosts, mark silent ones down for their peers, publish the
  // history size; every 30 s, give the heap's free pages back (parsing snapshots frees as much
  // as it keeps, in pieces: glibc held ~20 % of the RSS free at 1000 hosts, measured).
  absl::Notification stopping;
  std::thread housekeeping([&] {
    for (int tick = 1; !stopping.WaitForNotificationWithTimeout(absl::Seconds(1)); ++tick) {
      if (tick % 30 == 0) malloc_trim(0);
      for (const std::string& host : aggregator.ExpireHosts(absl::Now())) {
        TS_LOG(INFO) << "host " << host << " expired: disconnected for over "
                     << absl::FormatDuration(aggregator_options.host_expiry)
                     << "; its series are removed";
      }
      aggregator.CheckSilentHosts(absl::Now());
      metrics.history_events.Set(static_cast<double>(event_log.stats().events));
      const PairIndex::Stats pairs = aggregator.pairs().stats(/*count_pairs=*/false);
      metrics.pair_index_entries.Set(static_cast<double>(pairs.entries));
      metrics.pair_index_ends.Set(static_cast<double>(pairs.ends));
    }
  });

  const int signal_number = WaitForShutdownSignal();
  TS_LOG(INFO) << "signal " << signal_number << ": stopping";
  stopping.Notify();
  housekeeping.join();
  // Streams get a moment to finish, then are cancelled.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  observer.set_local_channel(nullptr);
  replicas.reset();  // no more ring changes
  replica_link.reset();
  TS_LOG(INFO) << "stopped";
  return 0;
}

}  // namespace
}  // namespace tcpscope::service

int main(int argc, char** argv) {
  tcpscope::BlockShutdownSignals();
  // Debian's Abseil checks every Mutex acquisition against a lock graph (a few % of the
  // service's CPU at thousands of streams); the lock order is kept by design and by TSan.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
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
