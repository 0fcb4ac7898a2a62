// Source selection and fallback.
#include "agent/source_selection.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/ebpf_source.h"
#include "agent/replay_source.h"
#include "agent/sock_diag_netlink.h"
#include "agent/sock_diag_source.h"
#include "agent/tcp_socket_iterator.h"
#include "common/log.h"

namespace tcpscope::agent {
namespace {

std::string Describe(const std::string& netns_path) {
  return netns_path.empty() ? "this network namespace" : netns_path;
}

absl::StatusOr<OpenedSource> OpenSockDiag(const SourceOptions& options, AgentMetrics* metrics) {
  absl::StatusOr<std::unique_ptr<SockDiagDumper>> dumper = SockDiagDumper::Open(options.netns_path);
  if (!dumper.ok()) {
    return absl::Status(dumper.status().code(),
                        absl::StrCat("cannot watch ", Describe(options.netns_path), ": ",
                                     dumper.status().message()));
  }
  std::unique_ptr<SockDiagDestroyListener> destroy_listener;
  if (auto listener = SockDiagDestroyListener::Open(options.netns_path); listener.ok()) {
    destroy_listener = std::move(*listener);
  } else {
    TS_LOG(WARNING) << "socket-destroy notifications unavailable (" << listener.status()
                    << "): closes are seen at the next dump";
  }
  metrics->SetSource("sock_diag");
  const uint64_t cookie = options.netns_path.empty() ? 0 : (*dumper)->netns_cookie();
  return OpenedSource{
      std::make_unique<SockDiagSource>(std::move(*dumper), options.snapshot_interval, metrics,
                                       std::move(destroy_listener), options.attribution),
      cookie};
}

absl::StatusOr<std::unique_ptr<SocketDumper>> OpenSockDiagDumper(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SockDiagDumper>> dumper = SockDiagDumper::Open(path);
  if (!dumper.ok()) return dumper.status();
  return std::unique_ptr<SocketDumper>(std::move(*dumper));
}

// The snapshots' dumper for each namespace: the iter/tcp iterator unless it is refused or does
// not load, then sock_diag (logged once, and tcpscope_agent_snapshot_dump_info says which).
absl::StatusOr<SocketDumperOpener> ChooseSnapshotDump(SnapshotDumpChoice choice,
                                                      AgentMetrics* metrics) {
  if (choice != SnapshotDumpChoice::kSockDiag) {
    absl::StatusOr<std::shared_ptr<TcpSocketIterator>> iterator = TcpSocketIterator::Load();
    if (iterator.ok()) {
      TS_LOG(INFO) << "snapshots: every TCP socket dumped by the iter/tcp BPF iterator";
      metrics->SetSnapshotDump("bpf_iter");
      return SocketDumperOpener([iterator = *std::move(iterator)](const std::string& path) {
        return IterSocketDumper::Open(iterator, path);
      });
    }
    if (choice == SnapshotDumpChoice::kBpf) {
      return absl::Status(iterator.status().code(),
                          absl::StrCat("--snapshot_dump=bpf: ", iterator.status().message()));
    }
    TS_LOG(WARNING) << "the iter/tcp BPF iterator is unavailable (" << iterator.status()
                    << "); snapshots use the sock_diag netlink dump, about 3x slower";
  }
  metrics->SetSnapshotDump("sock_diag");
  return SocketDumperOpener(OpenSockDiagDumper);
}

absl::StatusOr<OpenedSource> OpenEbpf(const SourceOptions& options, AgentMetrics* metrics) {
  absl::StatusOr<SocketDumperOpener> open_dumper =
      ChooseSnapshotDump(options.snapshot_dump, metrics);
  if (!open_dumper.ok()) return open_dumper.status();
  EbpfOptions ebpf;
  ebpf.snapshot_interval = options.snapshot_interval;
  ebpf.ring_buffer_bytes = options.ring_buffer_bytes;
  ebpf.max_tracked_sockets = options.max_tracked_sockets;
  ebpf.forced_ring_failures = options.forced_ring_failures;
  ebpf.ring_capture_path = options.ring_capture_path;
  std::unique_ptr<SnapshotCollector> snapshots;
  uint64_t cookie = 0;
  if (options.netns_path.empty()) {
    snapshots = SnapshotCollector::ForAllNamespaces(options.attribution, *open_dumper);
  } else {
    absl::StatusOr<std::unique_ptr<SockDiagDumper>> dumper =
        SockDiagDumper::Open(options.netns_path);
    if (!dumper.ok()) {
      return absl::Status(dumper.status().code(), absl::StrCat("cannot watch ", options.netns_path,
                                                               ": ", dumper.status().message()));
    }
    ebpf.netns_inode = static_cast<uint32_t>((*dumper)->netns_inode());
    cookie = (*dumper)->netns_cookie();
    absl::StatusOr<std::unique_ptr<SocketDumper>> snapshot_dumper =
        (*open_dumper)(options.netns_path);
    if (!snapshot_dumper.ok()) {
      return absl::Status(snapshot_dumper.status().code(),
                          absl::StrCat("cannot dump ", options.netns_path, ": ",
                                       snapshot_dumper.status().message()));
    }
    snapshots = SnapshotCollector::ForNamespace(*std::move(snapshot_dumper), options.attribution);
  }
  absl::StatusOr<std::unique_ptr<EbpfSource>> source =
      EbpfSource::Open(ebpf, std::move(snapshots), metrics, options.attribution);
  if (!source.ok()) return source.status();
  metrics->SetSource("ebpf");
  return OpenedSource{std::move(*source), cookie};
}

}  // namespace

absl::StatusOr<SourceSpec> ParseSourceSpec(const std::string& text) {
  if (text == "auto") return SourceSpec{SourceChoice::kAuto};
  if (text == "ebpf") return SourceSpec{SourceChoice::kEbpf};
  if (text == "sockdiag") return SourceSpec{SourceChoice::kSockDiag};
  if (absl::StartsWith(text, "replay:") && text.size() > 7) {
    return SourceSpec{SourceChoice::kReplay, text.substr(7)};
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--source=", text, ": choose auto, ebpf, sockdiag or replay:FILE"));
}

absl::StatusOr<SnapshotDumpChoice> ParseSnapshotDumpChoice(const std::string& text) {
  if (text == "auto") return SnapshotDumpChoice::kAuto;
  if (text == "bpf") return SnapshotDumpChoice::kBpf;
  if (text == "sockdiag") return SnapshotDumpChoice::kSockDiag;
  return absl::InvalidArgumentError(
      absl::StrCat("--snapshot_dump=", text, ": choose auto, bpf or sockdiag"));
}

absl::StatusOr<OpenedSource> OpenEventSource(const SourceOptions& options, AgentMetrics* metrics) {
  switch (options.choice) {
    case SourceChoice::kSockDiag:
      return OpenSockDiag(options, metrics);
    case SourceChoice::kEbpf:
      return OpenEbpf(options, metrics);
    case SourceChoice::kReplay: {
      absl::StatusOr<std::unique_ptr<ReplaySource>> replay =
          ReplaySource::Open(options.replay_path, metrics);
      if (!replay.ok()) return replay.status();
      return OpenedSource{std::move(*replay)};
    }
    case SourceChoice::kAuto:
      break;
  }
  absl::StatusOr<OpenedSource> ebpf = OpenEbpf(options, metrics);
  if (ebpf.ok()) return ebpf;
  TS_LOG(WARNING) << "eBPF source unavailable: " << ebpf.status().message()
                  << ". Falling back to sock_diag polling every "
                  << absl::FormatDuration(options.snapshot_interval)
                  << " (closes as they happen, other events at the next dump; no keepalive "
                     "probe or failure events)"
                  << (options.ring_capture_path.empty() ? "." : "; no ring capture is recorded.");
  return OpenSockDiag(options, metrics);
}

}  // namespace tcpscope::agent
