// The agent's own metrics (served on its --metrics_listen), resolved once into handles so the
// hot path only increments.
#pragma once

#include <memory>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace tcpscope::agent {

struct AgentMetrics {
  explicit AgentMetrics(const std::string& host_name);

  // Labels tcpscope_agent_info with the event source once it is chosen.
  void SetSource(const std::string& source);
  // tcpscope_agent_socket_owners_info{mode}: how socket owners are found (bpf, proc, off).
  void SetOwnersMode(const std::string& mode);
  // tcpscope_agent_snapshot_dump_info{method}: how snapshots dump the sockets (bpf_iter,
  // sock_diag).
  void SetSnapshotDump(const std::string& method);
  // tcpscope_agent_home_info{replica}: the replica the agent streams to (agent/replica_homing.h);
  // the previous one's series goes.
  void SetHome(const std::string& replica);

  const std::string host_name;
  std::shared_ptr<prometheus::Registry> registry;
  prometheus::Counter& events_generated;
  prometheus::Counter& events_dropped_kernel;
  prometheus::Counter& events_dropped_agent;
  // The kernel side's drops by cause (agent/bpf/tcpscope_event.h's tcpscope_drop), each also
  // counted in events_dropped_kernel.
  prometheus::Counter& kernel_drops_ring_full;
  prometheus::Counter& kernel_drops_socket_map_full;
  prometheus::Counter& kernel_drops_fin_record;
  // 1 while the source sees what it claims to (eBPF: its ring buffer is read), 0 while not.
  prometheus::Gauge& source_healthy;
  prometheus::Counter& source_failures;
  prometheus::Counter& batches_sent;
  prometheus::Counter& batches_acked;
  prometheus::Gauge& buffered_batches;
  prometheus::Gauge& buffered_bytes;
  prometheus::Gauge& service_connected;
  prometheus::Counter& stream_attempts;
  prometheus::Counter& stream_failures;
  // Moves to another replica, by reason (agent/replica_homing.h's HomeChange).
  prometheus::Counter& home_changes_failover;
  prometheus::Counter& home_changes_return;
  prometheus::Counter& home_changes_resolve;
  prometheus::Counter& dumps;
  prometheus::Counter& dumps_skipped;
  prometheus::Counter& dump_errors;
  prometheus::Histogram& dump_duration;
  prometheus::Gauge& tracked_connections;
  // Not counted as dropped events: the closes in lost notifications still come from dumps.
  prometheus::Counter& destroy_overruns;
  // Socket owners (agent/socket_owner_index.h).
  prometheus::Counter& owner_scans;
  prometheus::Counter& owner_scan_errors;
  prometheus::Histogram& owner_scan_duration;
  prometheus::Counter& owner_fallbacks;
  prometheus::Gauge& ends_without_owner;
  prometheus::Counter& events_without_owner;

 private:
  prometheus::Family<prometheus::Gauge>& home_info_;
  prometheus::Gauge* home_ = nullptr;
};

}  // namespace tcpscope::agent
