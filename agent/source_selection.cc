// Source selection and fallback.
#include "agent/source_selection.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/ebpf_source.h"
#include "agent/replay_source.h"
#include "agent/sock_diag_netlink.h"
#include "agent/sock_diag_source.h"
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

absl::StatusOr<OpenedSource> OpenEbpf(const SourceOptions& options, AgentMetrics* metrics) {
  EbpfOptions ebpf;
  ebpf.snapshot_interval = options.snapshot_interval;
  ebpf.ring_capture_path = options.ring_capture_path;
  std::unique_ptr<SnapshotCollector> snapshots;
  uint64_t cookie = 0;
  if (options.netns_path.empty()) {
    snapshots = SnapshotCollector::ForAllNamespaces(options.attribution);
  } else {
    absl::StatusOr<std::unique_ptr<SockDiagDumper>> dumper =
        SockDiagDumper::Open(options.netns_path);
    if (!dumper.ok()) {
      return absl::Status(dumper.status().code(), absl::StrCat("cannot watch ", options.netns_path,
                                                               ": ", dumper.status().message()));
    }
    ebpf.netns_inode = static_cast<uint32_t>((*dumper)->netns_inode());
    cookie = (*dumper)->netns_cookie();
    snapshots = SnapshotCollector::ForNamespace(std::move(*dumper), options.attribution);
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
