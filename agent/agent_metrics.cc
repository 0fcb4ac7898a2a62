// Registration of the agent's self-metrics.
#include "agent/agent_metrics.h"

namespace tcpscope::agent {
namespace {

prometheus::Counter& NewCounter(prometheus::Registry& registry, const std::string& name,
                                const std::string& help, const prometheus::Labels& labels = {}) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add(labels);
}

prometheus::Gauge& NewGauge(prometheus::Registry& registry, const std::string& name,
                            const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

constexpr char kHomeChangesHelp[] =
    "Moves of the agent to another service replica, by reason: failover (its home was "
    "unreachable past --failover_after), return (a better-ranked replica it had left is "
    "reachable again), resolve (the dns:/// list changed: the home left it, or a better-ranked "
    "replica joined).";

}  // namespace

void AgentMetrics::SetSource(const std::string& source) {
  prometheus::BuildGauge()
      .Name("tcpscope_agent_info")
      .Help("Constant 1, labelled with the agent's version, host name and event source.")
      .Register(*registry)
      .Add({{"version", TCPSCOPE_VERSION}, {"host", host_name}, {"source", source}})
      .Set(1);
  source_healthy.Set(1);  // an open source is healthy until it reports otherwise
}

void AgentMetrics::SetOwnersMode(const std::string& mode) {
  prometheus::BuildGauge()
      .Name("tcpscope_agent_socket_owners_info")
      .Help(
          "Constant 1, labelled with how socket owners are found: bpf (iterator), proc (/proc "
          "walk) or off.")
      .Register(*registry)
      .Add({{"mode", mode}})
      .Set(1);
}

void AgentMetrics::SetSnapshotDump(const std::string& method) {
  prometheus::BuildGauge()
      .Name("tcpscope_agent_snapshot_dump_info")
      .Help(
          "Constant 1, labelled with how snapshots dump the sockets: bpf_iter (iter/tcp "
          "iterator) or sock_diag (netlink).")
      .Register(*registry)
      .Add({{"method", method}})
      .Set(1);
}

void AgentMetrics::SetHome(const std::string& replica) {
  if (home_ != nullptr) home_info_.Remove(home_);
  home_ = &home_info_.Add({{"replica", replica}});
  home_->Set(1);
}

AgentMetrics::AgentMetrics(const std::string& host_name)
    : host_name(host_name),
      registry(std::make_shared<prometheus::Registry>()),
      events_generated(NewCounter(*registry, "tcpscope_agent_events_generated_total",
                                  "Events produced by the source.")),
      events_dropped_kernel(NewCounter(*registry, "tcpscope_agent_events_dropped_total",
                                       "Events lost, by the stage that lost them.",
                                       {{"stage", "kernel"}})),
      events_dropped_agent(NewCounter(*registry, "tcpscope_agent_events_dropped_total",
                                      "Events lost, by the stage that lost them.",
                                      {{"stage", "agent"}})),
      kernel_drops_ring_full(NewCounter(
          *registry, "tcpscope_agent_kernel_drops_total",
          "Records the kernel side could not deliver, by cause: ring_full (an event, the ring "
          "buffer full), socket_map_full (an event of a socket the full map could not track), "
          "fin_record (a FIN record dating snapshots, either way). Their sum is "
          "tcpscope_agent_events_dropped_total{stage=\"kernel\"}.",
          {{"cause", "ring_full"}})),
      kernel_drops_socket_map_full(NewCounter(
          *registry, "tcpscope_agent_kernel_drops_total",
          "Records the kernel side could not deliver, by cause: ring_full (an event, the ring "
          "buffer full), socket_map_full (an event of a socket the full map could not track), "
          "fin_record (a FIN record dating snapshots, either way). Their sum is "
          "tcpscope_agent_events_dropped_total{stage=\"kernel\"}.",
          {{"cause", "socket_map_full"}})),
      kernel_drops_fin_record(NewCounter(
          *registry, "tcpscope_agent_kernel_drops_total",
          "Records the kernel side could not deliver, by cause: ring_full (an event, the ring "
          "buffer full), socket_map_full (an event of a socket the full map could not track), "
          "fin_record (a FIN record dating snapshots, either way). Their sum is "
          "tcpscope_agent_events_dropped_total{stage=\"kernel\"}.",
          {{"cause", "fin_record"}})),
      source_healthy(NewGauge(*registry, "tcpscope_agent_source_healthy",
                              "1 while the event source sees what it claims to (eBPF: its ring "
                              "buffer is read); 0 while its event feed is broken.")),
      source_failures(NewCounter(*registry, "tcpscope_agent_source_failures_total",
                                 "Failures of the event feed (eBPF: the ring buffer could not be "
                                 "opened or read); each is retried, and the agent exits after "
                                 "several in a row.")),
      batches_sent(NewCounter(*registry, "tcpscope_agent_batches_sent_total",
                              "Batches written to the service stream, resends included.")),
      batches_acked(NewCounter(*registry, "tcpscope_agent_batches_acked_total",
                               "Batches the service acknowledged as applied.")),
      buffered_batches(NewGauge(*registry, "tcpscope_agent_buffered_batches",
                                "Batches kept until the service acknowledges them.")),
      buffered_bytes(NewGauge(*registry, "tcpscope_agent_buffered_bytes",
                              "Serialized size of the unacknowledged batches.")),
      service_connected(NewGauge(*registry, "tcpscope_agent_service_connected",
                                 "1 while a stream to the service is established.")),
      stream_attempts(NewCounter(*registry, "tcpscope_agent_stream_attempts_total",
                                 "Attempts to open a stream to the service.")),
      stream_failures(NewCounter(*registry, "tcpscope_agent_stream_failures_total",
                                 "Streams to the service that ended with an error.")),
      home_changes_failover(NewCounter(*registry, "tcpscope_agent_home_changes_total",
                                       kHomeChangesHelp, {{"reason", "failover"}})),
      home_changes_return(NewCounter(*registry, "tcpscope_agent_home_changes_total",
                                     kHomeChangesHelp, {{"reason", "return"}})),
      home_changes_resolve(NewCounter(*registry, "tcpscope_agent_home_changes_total",
                                      kHomeChangesHelp, {{"reason", "resolve"}})),
      dumps(NewCounter(*registry, "tcpscope_agent_sock_diag_dumps_total",
                       "Complete sock_diag dumps taken.")),
      dumps_skipped(NewCounter(
          *registry, "tcpscope_agent_snapshot_namespaces_skipped_total",
          "Namespaces a snapshot did not walk: empty at their last walk, and no socket was created "
          "in a watched namespace since (eBPF source).")),
      dump_errors(NewCounter(*registry, "tcpscope_agent_sock_diag_dump_errors_total",
                             "sock_diag dumps that failed.")),
      dump_duration(
          prometheus::BuildHistogram()
              .Name("tcpscope_agent_sock_diag_dump_duration_seconds")
              .Help("Time to take one sock_diag dump of the namespace.")
              .Register(*registry)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.0001, 0.0005, 0.001, 0.005, 0.01,
                                                               0.05, 0.1, 0.5, 1})),
      tracked_connections(NewGauge(*registry, "tcpscope_agent_tracked_connections",
                                   "Connection ends the agent currently tracks.")),
      destroy_overruns(NewCounter(
          *registry, "tcpscope_agent_sock_diag_destroy_overruns_total",
          "Times the kernel dropped socket-destroy notifications for lack of buffer; their "
          "closes are reported by the next dump instead.")),
      owner_scans(NewCounter(*registry, "tcpscope_agent_socket_owner_scans_total",
                             "Scans of which process holds each socket (for a snapshot with new "
                             "sockets, at least once a minute, and for unknown listeners).")),
      owner_scan_errors(NewCounter(*registry, "tcpscope_agent_socket_owner_scan_errors_total",
                                   "Socket owner scans that failed (the last table stays).")),
      owner_scan_duration(
          prometheus::BuildHistogram()
              .Name("tcpscope_agent_socket_owner_scan_duration_seconds")
              .Help("Time to find the owner of every socket of the host.")
              .Register(*registry)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.0001, 0.0005, 0.001, 0.005, 0.01,
                                                               0.05, 0.1, 0.5, 1})),
      owner_fallbacks(NewCounter(*registry, "tcpscope_agent_socket_owner_fallbacks_total",
                                 "Times the BPF iterator could not load and the /proc walk "
                                 "was used instead.")),
      ends_without_owner(NewGauge(*registry, "tcpscope_agent_connection_ends_without_owner",
                                  "Ends of the last snapshot with no known process (TIME_WAIT "
                                  "and orphaned ends never seen owned, sockets of processes "
                                  "out of sight).")),
      events_without_owner(NewCounter(*registry, "tcpscope_agent_events_without_owner_total",
                                      "Events from a kernel context without a process whose "
                                      "socket's owner was not known either.")),
      home_info_(prometheus::BuildGauge()
                     .Name("tcpscope_agent_home_info")
                     .Help("Constant 1, labelled with the service replica the agent streams to "
                           "(its home among --service's replicas).")
                     .Register(*registry)) {}

}  // namespace tcpscope::agent
