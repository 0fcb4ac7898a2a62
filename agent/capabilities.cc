// Capability sets through the raw capget/capset system calls (no libcap dependency).
#include "agent/capabilities.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

namespace tcpscope::agent {
namespace {

uint64_t NeededMask() {
  uint64_t mask = 0;
  for (const Capability& capability : NeededCapabilities()) mask |= 1ULL << capability.number;
  return mask;
}

}  // namespace

const std::vector<Capability>& NeededCapabilities() {
  static const auto* capabilities = new std::vector<Capability>{
      {CAP_BPF, "CAP_BPF", "load the eBPF program and its maps, and the socket-owner iterator"},
      {CAP_PERFMON, "CAP_PERFMON",
       "attach the eBPF program to tracepoints, and run the socket-owner iterator"},
      {CAP_SYSLOG, "CAP_SYSLOG",
       "read tcp_keepalive_timer's address, without which keepalive probes and timeouts are "
       "invisible to the eBPF source"},
      {CAP_SYS_ADMIN, "CAP_SYS_ADMIN", "enter other network namespaces for their snapshots"},
      {CAP_SYS_PTRACE, "CAP_SYS_PTRACE",
       "open other processes' network namespaces, and, for the /proc walk that finds socket "
       "owners where the BPF iterator cannot load, their /proc/PID/fd"},
      {CAP_NET_ADMIN, "CAP_NET_ADMIN", "hear sock_diag's socket-destroy notifications"},
  };
  return *capabilities;
}

uint64_t EffectiveCapabilities() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "CapEff:")) continue;
    uint64_t mask = 0;
    if (absl::SimpleHexAtoi(absl::StripAsciiWhitespace(rest), &mask)) return mask;
  }
  return 0;
}

bool CanLoadBpf(uint64_t effective) {
  auto has = [effective](int cap) { return (effective & (1ULL << cap)) != 0; };
  return (has(CAP_BPF) && has(CAP_PERFMON)) || has(CAP_SYS_ADMIN);
}

std::vector<std::string> MissingCapabilities(uint64_t effective) {
  // The kernel grants CAP_BPF's and CAP_PERFMON's operations to CAP_SYS_ADMIN as well, and Docker
  // before 23 (Debian 12's docker.io) cannot add them by name: with CAP_SYS_ADMIN nothing is lost.
  const bool sys_admin = (effective & (1ULL << CAP_SYS_ADMIN)) != 0;
  std::vector<std::string> missing;
  for (const Capability& capability : NeededCapabilities()) {
    const bool covered =
        sys_admin && (capability.number == CAP_BPF || capability.number == CAP_PERFMON);
    if ((effective & (1ULL << capability.number)) == 0 && !covered) {
      missing.push_back(absl::StrCat(capability.name, " (", capability.why, ")"));
    }
  }
  return missing;
}

absl::Status DropUnneededCapabilities() {
  const uint64_t keep = NeededMask();
  // The bounding set first, while CAP_SETPCAP may still be effective.
  for (int cap = 0; cap <= 63; ++cap) {
    if ((keep & (1ULL << cap)) != 0) continue;
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;  // absent or unknown to the kernel
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EPERM) {
      return absl::InternalError(
          absl::StrCat("prctl(PR_CAPBSET_DROP, ", cap, "): ", std::strerror(errno)));
    }
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) {
    return absl::InternalError(absl::StrCat("capget: ", std::strerror(errno)));
  }
  for (int i = 0; i < 2; ++i) {
    const uint32_t keep_word = static_cast<uint32_t>(keep >> (32 * i));
    data[i].effective &= keep_word;
    data[i].permitted &= keep_word;
    data[i].inheritable &= keep_word;
  }
  if (syscall(SYS_capset, &header, data) != 0) {
    return absl::InternalError(absl::StrCat("capset: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace tcpscope::agent
