// tcpscope-agent: watches the TCP sockets of this host (or one network namespace) and streams
// events and snapshots to tcpscope-service.
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/agent_metrics.h"
#include "agent/capabilities.h"
#include "agent/host_identity.h"
#include "agent/shipper.h"
#include "agent/socket_owner_index.h"
#include "agent/source_selection.h"
#include "agent/workload_resolver.h"
#include "common/allocator.h"
#include "common/log.h"
#include "common/metrics_server.h"
#include "common/names.h"
#include "common/replica_addresses.h"
#include "common/shutdown.h"
#include "common/tls_flags.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, service, "127.0.0.1:7700",
          "tcpscope-service's gRPC address: HOST:PORT, or the replicas of a service tier as "
          "HOST:PORT,HOST:PORT,... or dns:///NAME:PORT (every A/AAAA record a replica, looked up "
          "again every 30s). The agent streams to the first replica of its host name's "
          "rendezvous ranking that it can reach.");
ABSL_FLAG(absl::Duration, failover_after, absl::Seconds(5),
          "With several replicas: how long the agent's replica may be unreachable before it moves "
          "to the next one of its ranking, and how often, away from its first-ranked replica, it "
          "checks whether it can go back (1s to 10m).");
ABSL_FLAG(std::string, host_name, "",
          "Host name reported to the service (default: this machine's).");
ABSL_FLAG(absl::Duration, snapshot_interval, absl::Seconds(10),
          "How often to dump every socket and send a snapshot (100ms to 1h).");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9701",
          "Address of the agent's own Prometheus metrics (/metrics); empty disables.");
ABSL_FLAG(std::string, source, "auto",
          "Event source: ebpf (exact, needs root and BTF), sockdiag (polling), auto (eBPF, else "
          "sockdiag), or replay:FILE (plays a --record_ring capture through the same record "
          "handling, without root; events keep their recorded times).");
ABSL_FLAG(std::string, snapshot_dump, "auto",
          "How the eBPF source's snapshots read every socket: bpf (an iter/tcp BPF iterator, "
          "kernel 5.14+), sockdiag (the netlink dump `ss` uses, about 3x slower) or auto (bpf, "
          "else sockdiag).");
ABSL_FLAG(std::string, record_ring, "",
          "File to write every raw eBPF ring record to, for --source=replay:FILE (eBPF source "
          "only); empty: none.");
ABSL_FLAG(std::string, netns, "",
          "Network namespace file (e.g. /run/netns/NAME) to watch only; default: every namespace "
          "(eBPF) or the agent's own (sockdiag). The namespace is then the host: the boot id sent "
          "to the service is <kernel boot id>/netns-<namespace cookie>, new when the namespace is "
          "created anew.");
ABSL_FLAG(int, ebpf_ring_buffer_kib, 2048,
          "Size of the eBPF ring buffer, in KiB: a power of two from 4 to 1048576. Events that "
          "find it full are lost (counted, stage=\"kernel\", cause ring_full).");
ABSL_FLAG(int, ebpf_max_tracked_sockets, 262144,
          "Connections the eBPF program tracks at once (16 to 16777216); the events of one it "
          "cannot track are lost (counted, stage=\"kernel\", cause socket_map_full).");
ABSL_FLAG(int, max_buffered_batches, 4096,
          "Batches kept for resending until the service acknowledges them (1 to 1000000).");
ABSL_FLAG(int, max_buffered_mib, 64,
          "Memory the unacknowledged batches may take, in MiB (1 to 4096); beyond it the oldest "
          "are dropped and counted as lost (stage=\"agent\").");
ABSL_FLAG(absl::Duration, max_reconnect_backoff, absl::Seconds(10),
          "Upper bound of the reconnect backoff (100ms to 10m).");
// Workload identity (container, pod) of socket owners: their cgroup, then the runtime's API.
ABSL_FLAG(std::string, cgroup_root, "",
          "The host's cgroup2 mount (default: the one in /proc/self/mountinfo); in a container, "
          "mount the host's there.");
ABSL_FLAG(std::string, docker_socket, "/var/run/docker.sock",
          "Docker API socket, asked for container names; empty or absent: not asked.");
ABSL_FLAG(std::string, podman_socket, "/run/podman/podman.sock",
          "Podman API socket (Docker-compatible); empty or absent: not asked.");
ABSL_FLAG(std::string, containerd_socket, "/run/containerd/containerd.sock",
          "containerd gRPC socket, asked for Kubernetes pod labels; empty or absent: not asked.");
ABSL_FLAG(std::vector<std::string>, containerd_namespaces,
          std::vector<std::string>({"k8s.io", "moby", "default"}),
          "containerd namespaces to look a container up in, in order.");
ABSL_FLAG(std::string, crio_socket, "/var/run/crio/crio.sock",
          "CRI-O socket (its inspect API); empty or absent: not asked.");
ABSL_FLAG(absl::Duration, runtime_timeout, absl::Milliseconds(200),
          "Time a container runtime has to answer one question (10ms to 5s).");

// The process holding each socket.
ABSL_FLAG(std::string, socket_owners, "auto",
          "How to find the process holding each socket (pid, command, cgroup of snapshot ends "
          "and of server handshakes): bpf (an iter/task_file BPF iterator, one pass in the "
          "kernel per snapshot; kernel 5.8+), proc (a /proc/*/fd walk; other users' processes "
          "need CAP_SYS_PTRACE), auto (bpf, else proc) or off.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(3),
          "On SIGTERM, how long to wait for the service to acknowledge what is buffered.");

// jemalloc's settings, read before main() (ignored by glibc's malloc): the agent allocates on a
// few threads, and jemalloc's default of four arenas per CPU would cost a host with many CPUs
// megabytes of metadata for nothing; each allocating thread's cache holds 32 objects of a size
// class instead of up to 200: 0.4 MiB less resident when idle, the same CPU per event under
// churn (BENCHMARKS.md, "Idle agent").
extern "C" {
const char* malloc_conf = "narenas:2,tcache_nslots_small_max:32";
}

namespace tcpscope::agent {
namespace {

absl::Status CheckFlags() {
  const absl::Duration interval = absl::GetFlag(FLAGS_snapshot_interval);
  if (interval < absl::Milliseconds(100) || interval > absl::Hours(1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--snapshot_interval=", absl::FormatDuration(interval), " is outside 100ms..1h"));
  }
  const int buffered = absl::GetFlag(FLAGS_max_buffered_batches);
  if (buffered < 1 || buffered > 1000000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_buffered_batches=", buffered, " is outside 1..1000000"));
  }
  const int buffered_mib = absl::GetFlag(FLAGS_max_buffered_mib);
  if (buffered_mib < 1 || buffered_mib > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_buffered_mib=", buffered_mib, " is outside 1..4096"));
  }
  const absl::Duration backoff = absl::GetFlag(FLAGS_max_reconnect_backoff);
  if (backoff < absl::Milliseconds(100) || backoff > absl::Minutes(10)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_reconnect_backoff=", absl::FormatDuration(backoff), " is outside 100ms..10m"));
  }
  const absl::Duration runtime_timeout = absl::GetFlag(FLAGS_runtime_timeout);
  if (runtime_timeout < absl::Milliseconds(10) || runtime_timeout > absl::Seconds(5)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--runtime_timeout=", absl::FormatDuration(runtime_timeout), " is outside 10ms..5s"));
  }
  const absl::Duration failover_after = absl::GetFlag(FLAGS_failover_after);
  if (failover_after < absl::Seconds(1) || failover_after > absl::Minutes(10)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--failover_after=", absl::FormatDuration(failover_after), " is outside 1s..10m"));
  }
  const int ring_kib = absl::GetFlag(FLAGS_ebpf_ring_buffer_kib);
  if (ring_kib < 4 || ring_kib > (1 << 20) || (ring_kib & (ring_kib - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("--ebpf_ring_buffer_kib=", ring_kib,
                                                   " must be a power of two from 4 to 1048576"));
  }
  const int tracked = absl::GetFlag(FLAGS_ebpf_max_tracked_sockets);
  if (tracked < 16 || tracked > (1 << 24)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ebpf_max_tracked_sockets=", tracked, " is outside 16..16777216"));
  }
  return absl::OkStatus();
}

// TCPSCOPE_TEST_RING_FAILURES=N, for fault-injection tests only: the eBPF ring consumer's next
// N attempts fail as a poll error would (1..1000000; unset or empty: none).
absl::StatusOr<int> ForcedRingFailures() {
  const char* text = std::getenv("TCPSCOPE_TEST_RING_FAILURES");
  if (text == nullptr || *text == '\0') return 0;
  int count = 0;
  if (!absl::SimpleAtoi(text, &count) || count < 1 || count > 1000000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TCPSCOPE_TEST_RING_FAILURES=", text, " (test only) must be a count from 1 to 1000000"));
  }
  TS_LOG(WARNING) << "TCPSCOPE_TEST_RING_FAILURES=" << count
                  << ": the eBPF ring consumer will fail on purpose (fault-injection test)";
  return count;
}

int Main() {
  if (absl::Status status = CheckFlags(); !status.ok()) {
    TS_LOG(ERROR) << status.message();
    return 2;
  }
  absl::StatusOr<ReplicaAddresses> service =
      ReplicaAddresses::Parse("--service", absl::GetFlag(FLAGS_service));
  if (!service.ok()) {
    TS_LOG(ERROR) << service.status().message();
    return 2;
  }
  std::string host_name = absl::GetFlag(FLAGS_host_name);
  if (host_name.empty()) {
    absl::StatusOr<std::string> machine = MachineHostName();
    if (!machine.ok()) {
      TS_LOG(ERROR) << "cannot tell this host's name; pass --host_name: " << machine.status();
      return 2;
    }
    host_name = *machine;
  }
  if (absl::Status status = ValidateHostName(host_name); !status.ok()) {
    TS_LOG(ERROR) << "--host_name=" << host_name << ": " << status.message();
    return 2;
  }
  absl::StatusOr<std::string> kernel_boot_id = BootId();
  if (!kernel_boot_id.ok()) {
    TS_LOG(ERROR) << kernel_boot_id.status();
    return 1;
  }

  absl::StatusOr<int> forced_ring_failures = ForcedRingFailures();
  if (!forced_ring_failures.ok()) {
    TS_LOG(ERROR) << forced_ring_failures.status().message();
    return 2;
  }
  absl::StatusOr<SourceSpec> source_spec = ParseSourceSpec(absl::GetFlag(FLAGS_source));
  if (!source_spec.ok()) {
    TS_LOG(ERROR) << source_spec.status().message();
    return 2;
  }
  const SourceChoice choice = source_spec->choice;
  const std::string record_ring = absl::GetFlag(FLAGS_record_ring);
  if (!record_ring.empty() && choice != SourceChoice::kEbpf && choice != SourceChoice::kAuto) {
    TS_LOG(ERROR) << "--record_ring records the eBPF ring: it needs --source=ebpf or auto";
    return 2;
  }
  absl::StatusOr<SnapshotDumpChoice> snapshot_dump =
      ParseSnapshotDumpChoice(absl::GetFlag(FLAGS_snapshot_dump));
  if (!snapshot_dump.ok()) {
    TS_LOG(ERROR) << snapshot_dump.status().message();
    return 2;
  }
  absl::StatusOr<OwnersMode> owners_mode = ParseOwnersMode(absl::GetFlag(FLAGS_socket_owners));
  if (!owners_mode.ok()) {
    TS_LOG(ERROR) << owners_mode.status().message();
    return 2;
  }

  // Capabilities: checked, and all but the needed ones dropped before any thread starts.
  const uint64_t effective = EffectiveCapabilities();
  if (choice == SourceChoice::kEbpf && !CanLoadBpf(effective)) {
    TS_LOG(ERROR) << "--source=ebpf needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); run as "
                     "root or grant them, or use --source=auto to fall back to sock_diag";
    return 1;
  }
  for (const std::string& missing : MissingCapabilities(effective)) {
    TS_LOG(WARNING) << "without " << missing << "; that part is degraded or off";
  }
  if (absl::Status status = DropUnneededCapabilities(); !status.ok()) {
    TS_LOG(WARNING) << "could not drop unneeded capabilities: " << status.message();
  }

  const TlsFiles tls = TlsFilesFromFlags();
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeChannelCredentials(tls);
  if (!credentials.ok()) {
    TS_LOG(ERROR) << credentials.status().message();
    return 2;
  }

  AgentMetrics metrics(host_name);
  std::unique_ptr<MetricsServer> metrics_server;
  if (const std::string listen = absl::GetFlag(FLAGS_metrics_listen); !listen.empty()) {
    MetricsServerOptions options;
    options.listen = listen;
    absl::StatusOr<std::unique_ptr<MetricsServer>> server =
        MetricsServer::Start(options, {metrics.registry});
    if (!server.ok()) {
      TS_LOG(ERROR) << "--metrics_listen=" << listen << ": " << server.status();
      return 1;
    }
    metrics_server = std::move(*server);
  }

  WorkloadResolverOptions workload_options;
  workload_options.cgroup_root = absl::GetFlag(FLAGS_cgroup_root);
  workload_options.docker_socket = absl::GetFlag(FLAGS_docker_socket);
  workload_options.podman_socket = absl::GetFlag(FLAGS_podman_socket);
  workload_options.containerd_socket = absl::GetFlag(FLAGS_containerd_socket);
  workload_options.containerd_namespaces = absl::GetFlag(FLAGS_containerd_namespaces);
  workload_options.crio_socket = absl::GetFlag(FLAGS_crio_socket);
  workload_options.runtime_timeout = absl::GetFlag(FLAGS_runtime_timeout);
  absl::StatusOr<std::unique_ptr<WorkloadResolver>> workloads =
      NewWorkloadResolver(workload_options, metrics);
  if (!workloads.ok()) {
    TS_LOG(WARNING) << "no workload identity (containers, pods): " << workloads.status().message();
  }
  absl::StatusOr<std::unique_ptr<SocketOwnerIndex>> owners =
      OpenSocketOwnerIndex(*owners_mode, &metrics);
  if (!owners.ok()) {
    TS_LOG(ERROR) << owners.status().message();
    return 1;
  }

  SourceOptions source_options;
  source_options.choice = choice;
  source_options.replay_path = source_spec->replay_path;
  source_options.ring_capture_path = record_ring;
  source_options.attribution = {owners->get(), workloads.ok() ? workloads->get() : nullptr};
  source_options.netns_path = absl::GetFlag(FLAGS_netns);
  source_options.snapshot_interval = absl::GetFlag(FLAGS_snapshot_interval);
  source_options.snapshot_dump = *snapshot_dump;
  source_options.ring_buffer_bytes =
      static_cast<uint32_t>(absl::GetFlag(FLAGS_ebpf_ring_buffer_kib)) << 10;
  source_options.max_tracked_sockets =
      static_cast<uint32_t>(absl::GetFlag(FLAGS_ebpf_max_tracked_sockets));
  source_options.forced_ring_failures = *forced_ring_failures;
  absl::StatusOr<OpenedSource> opened = OpenEventSource(source_options, &metrics);
  if (!opened.ok()) {
    TS_LOG(ERROR) << opened.status().message();
    return 1;
  }
  EventSource& source = *opened->source;
  // A watched namespace is a host of its own: recreating it (a restarted container or test
  // host) must read as a reboot to the service, so its cookie joins the kernel's boot id.
  const std::string boot_id = source_options.netns_path.empty()
                                  ? *kernel_boot_id
                                  : NamespaceBootId(*kernel_boot_id, opened->netns_cookie);

  ShipperOptions options;
  options.service = *std::move(service);
  options.failover_after = absl::GetFlag(FLAGS_failover_after);
  options.credentials = *std::move(credentials);
  if (!tls.enabled()) {
    options.connect_hint =
        "if the service uses TLS, give --tls_ca (and --tls_cert, --tls_key if it demands client "
        "certificates)";
  } else if (tls.cert.empty()) {
    options.connect_hint =
        "if the service demands client certificates (its --tls_ca), give --tls_cert and --tls_key";
  } else {
    options.connect_hint =
        "check that --tls_ca signed the service's certificate and the service's CA signed ours";
  }
  options.max_buffered_batches = static_cast<size_t>(absl::GetFlag(FLAGS_max_buffered_batches));
  options.max_buffered_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_buffered_mib)) << 20;
  options.max_backoff = absl::GetFlag(FLAGS_max_reconnect_backoff);
  v1::Hello& hello = options.hello;
  hello.set_host_name(host_name);
  hello.set_agent_version(TCPSCOPE_VERSION);
  hello.set_boot_id(boot_id);
  hello.set_instance_id(NewInstanceId());
  hello.set_source(source.kind());
  for (const std::string& capability : source.capabilities()) hello.add_capabilities(capability);
  Shipper shipper(options, &metrics);

  TS_LOG(INFO) << "tcpscope-agent " << TCPSCOPE_VERSION << " on host " << host_name << " (boot id "
               << boot_id << "), streaming to " << options.service.spec() << " ("
               << DescribeTls(tls, /*server=*/false) << "; " << AllocatorName() << ")";
  shipper.Start();
  absl::Status source_status;
  std::atomic<bool> source_failed = false;
  std::thread source_thread([&] {
    source_status = source.Run(&shipper);
    // Not a source that stopped: one that broke. The agent exits non-zero rather than go on
    // without it.
    if (!source_status.ok()) {
      source_failed = true;
      RequestShutdown();
    }
  });

  const int signal_number = WaitForShutdownSignal();
  if (!source_failed) TS_LOG(INFO) << "signal " << signal_number << ": stopping";
  source.Stop();
  source_thread.join();
  if (!source_status.ok()) TS_LOG(ERROR) << "source failed: " << source_status;
  const absl::Duration drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  if (!shipper.Drain(drain_timeout)) {
    TS_LOG(WARNING) << "service did not acknowledge everything within "
                    << absl::FormatDuration(drain_timeout) << "; unsent events are lost";
  }
  shipper.Stop();
  TS_LOG(INFO) << "stopped";
  return source_status.ok() ? 0 : 1;
}

}  // namespace
}  // namespace tcpscope::agent

int main(int argc, char** argv) {
  tcpscope::BlockShutdownSignals();
  // Debian's Abseil checks every Mutex acquisition against a lock graph (about 1 % of the
  // agent's CPU under churn); the lock order is kept by design and by TSan.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "Watches TCP connections and streams events to tcpscope-service.\n"
      "Usage: tcpscope-agent [--service=HOST:PORT[,HOST:PORT...]|dns:///NAME:PORT] "
      "[--netns=/run/netns/NAME] [flags]");
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    TS_LOG(ERROR) << "unexpected argument '" << positional[1]
                  << "' (settings are --flags; see --help)";
    return 2;
  }
  return tcpscope::agent::Main();
}
