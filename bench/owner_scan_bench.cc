// Snapshot dump and socket-owner scan costs against `ss -tanio` on the same sockets, in the same
// run: forks --processes processes that each hold --pairs loopback connections (both ends: 2
// sockets a pair, plus a listener) in a network namespace of their own, then times, per round,
// the two dumps a snapshot can take (every TCP socket with tcp_info and timers: the iter/tcp BPF
// iterator and the sock_diag netlink dump), `ss -tanio` (the same information, printed to
// /dev/null), the BPF owner scans and the /proc/*/fd walk. The owner scans cover every process
// of the host, as the agent's do.
//
//   sudo build/bench/tcpscope-owner-scan-bench --processes=6 --pairs=8000 --rounds=7
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "agent/connection_tracker.h"
#include "agent/sock_diag_netlink.h"
#include "agent/socket_owners.h"
#include "agent/tcp_socket_iterator.h"

ABSL_FLAG(int, processes, 6, "Processes holding sockets (each holds at most 20,000 files).");
ABSL_FLAG(int, pairs, 8000, "Loopback connections per process (both ends held).");
ABSL_FLAG(int, rounds, 7, "Timed rounds; medians are reported.");
ABSL_FLAG(int, hold_seconds, 0,
          "Keep the sockets open this long after the rounds (to measure something else).");

namespace {

void Die(const char* what) {
  perror(what);
  exit(1);
}

void LoopbackUp() {
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ);
  if (ioctl(fd, SIOCGIFFLAGS, &request) != 0) Die("SIOCGIFFLAGS lo");
  request.ifr_flags |= IFF_UP;
  if (ioctl(fd, SIOCSIFFLAGS, &request) != 0) Die("SIOCSIFFLAGS lo");
  close(fd);
}

// A process that holds `pairs` connections to its own listener on 127.0.0.1:port, then waits.
void Holder(uint16_t port, int pairs, int ready) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  const rlim_t files = static_cast<rlim_t>(2 * pairs + 64);
  const rlimit limit{files, files};
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) Die("setrlimit");
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) Die("bind");
  if (listen(listener, 4096) != 0) Die("listen");
  for (int i = 0; i < pairs; ++i) {
    const int client = socket(AF_INET, SOCK_STREAM, 0);
    if (client < 0) Die("socket");
    if (connect(client, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      Die("connect");
    }
    if (accept(listener, nullptr, nullptr) < 0) Die("accept");
  }
  (void)!write(ready, "x", 1);
  pause();
  _exit(0);
}

// Runs `ss -tanio` with its output to /dev/null; false if it did not exit 0.
bool RunSs() {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  char* argv[] = {const_cast<char*>("ss"), const_cast<char*>("-tanio"), nullptr};
  pid_t pid = 0;
  const int error = posix_spawnp(&pid, "ss", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) return false;
  int status = 0;
  return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

double CpuMs(int who) {
  rusage usage{};
  getrusage(who, &usage);
  return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e3 +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e3;
}

// CPU time (user + system) `f` costs this process (RUSAGE_SELF) or its waited-for children
// (RUSAGE_CHILDREN): on a shared machine, less noisy than the wall clock.
template <typename F>
double CpuTimeMs(int who, F f) {
  const double start = CpuMs(who);
  f();
  return CpuMs(who) - start;
}

template <typename F>
double TimeMs(F f) {
  const absl::Time start = absl::Now();
  f();
  return absl::ToDoubleMilliseconds(absl::Now() - start);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int processes = absl::GetFlag(FLAGS_processes);
  const int pairs = absl::GetFlag(FLAGS_pairs);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  if (unshare(CLONE_NEWNET) != 0) Die("unshare(CLONE_NEWNET) (run as root)");
  LoopbackUp();

  int ready[2];
  if (pipe(ready) != 0) Die("pipe");
  std::vector<pid_t> children;
  const absl::Time setup_start = absl::Now();
  for (int k = 0; k < processes; ++k) {
    const pid_t pid = fork();
    if (pid < 0) Die("fork");
    if (pid == 0) Holder(static_cast<uint16_t>(20000 + k), pairs, ready[1]);
    children.push_back(pid);
  }
  for (int k = 0; k < processes; ++k) {
    char byte;
    if (read(ready[0], &byte, 1) != 1) Die("a holder died");
  }
  absl::PrintF("%d processes x %d connection pairs set up in %s\n", processes, pairs,
               absl::FormatDuration(absl::Now() - setup_start));

  auto dumper = tcpscope::agent::SockDiagDumper::Open("");
  if (!dumper.ok()) Die("sock_diag");
  auto iterator = tcpscope::agent::TcpSocketIterator::Load();
  if (!iterator.ok()) {
    absl::FPrintF(stderr, "iter/tcp iterator: %s\n", iterator.status().ToString());
    return 1;
  }
  auto bpf = tcpscope::agent::OpenBpfSocketOwners();
  if (!bpf.ok()) {
    absl::FPrintF(stderr, "BPF iterator: %s\n", bpf.status().ToString());
    return 1;
  }
  auto compat = tcpscope::agent::OpenBpfSocketOwners(/*compat=*/true);
  if (!compat.ok()) {
    absl::FPrintF(stderr, "BPF iterator (probe-read variant): %s\n", compat.status().ToString());
    return 1;
  }
  auto proc = tcpscope::agent::NewProcSocketOwners();

  std::vector<double> iter_cpu_ms, ss_cpu_ms, dump_cpu_ms;
  std::vector<double> iter_ms, ss_ms, dump_ms, bpf_ms, compat_ms, proc_ms, diff_ms, diff_owned_ms;
  // The agent's per-snapshot diff of the same dump, without and with owners (lookup by inode,
  // origin fields, owners by cookie), to show what naming the ends adds beyond the scan.
  tcpscope::agent::ConnectionTracker plain(1), owned(1);
  size_t sockets = 0, iterated = 0, bpf_found = 0, proc_found = 0, bpf_table = 0;
  for (int round = 0; round < rounds; ++round) {
    absl::StatusOr<std::vector<tcpscope::agent::SocketRecord>> dump;
    absl::StatusOr<std::vector<tcpscope::agent::SocketRecord>> iter_dump;
    absl::StatusOr<tcpscope::agent::OwnerTable> from_bpf, from_compat, from_proc;
    bool ss_ok = false;
    iter_ms.push_back(TimeMs([&] { iter_dump = (*iterator)->Dump(-1); }));
    ss_ms.push_back(TimeMs([&] { ss_ok = RunSs(); }));
    dump_ms.push_back(TimeMs([&] { dump = (*dumper)->Dump(); }));
    if (!iter_dump.ok() || !ss_ok) Die("the iterator dump or ss failed");
    iter_cpu_ms.push_back(CpuTimeMs(RUSAGE_SELF, [&] { iter_dump = (*iterator)->Dump(-1); }));
    ss_cpu_ms.push_back(CpuTimeMs(RUSAGE_CHILDREN, [&] { ss_ok = RunSs(); }));
    dump_cpu_ms.push_back(CpuTimeMs(RUSAGE_SELF, [&] { dump = (*dumper)->Dump(); }));
    if (!iter_dump.ok() || !ss_ok || !dump.ok()) Die("the iterator dump or ss failed");
    iterated = iter_dump->size();
    bpf_ms.push_back(TimeMs([&] { from_bpf = (*bpf)->Scan(); }));
    compat_ms.push_back(TimeMs([&] { from_compat = (*compat)->Scan(); }));
    proc_ms.push_back(TimeMs([&] { from_proc = proc->Scan(); }));
    if (!dump.ok() || !from_bpf.ok() || !from_compat.ok() || !from_proc.ok()) {
      Die("a scan failed");
    }
    const absl::Time now = absl::Now();
    diff_ms.push_back(TimeMs([&] { plain.Update(*dump, now); }));
    diff_owned_ms.push_back(TimeMs([&] { owned.Update(*dump, now, &*from_bpf); }));
    sockets = dump->size();
    bpf_table = from_bpf->sockets.size();
    bpf_found = proc_found = 0;
    for (const auto& record : *dump) {
      bpf_found += from_bpf->sockets.contains(record.inode);
      proc_found += from_proc->sockets.contains(record.inode);
    }
    absl::PrintF("round %d: iterator dump %.1f ms, ss -tanio %.1f ms\n", round, iter_ms.back(),
                 ss_ms.back());
    absl::PrintF(
        "round %d: dump %.1f ms, bpf scan %.1f ms, bpf scan (probe reads) %.1f ms, /proc walk "
        "%.1f ms\n",
        round, dump_ms.back(), bpf_ms.back(), compat_ms.back(), proc_ms.back());
  }
  const double by_iter = Median(iter_ms), by_ss = Median(ss_ms);
  const double dump = Median(dump_ms), by_bpf = Median(bpf_ms), by_compat = Median(compat_ms),
               by_proc = Median(proc_ms);
  absl::PrintF(
      "median of %d: iterator dump %.1f ms (%d sockets) | sock_diag dump %.1f ms (%d sockets) | "
      "ss -tanio %.1f ms: ss / iterator %.2fx, ss / sock_diag %.2fx\n",
      rounds, by_iter, iterated, dump, sockets, by_ss, by_ss / by_iter, by_ss / dump);
  absl::PrintF(
      "median of %d, CPU time (user+sys): iterator dump %.1f ms | sock_diag dump %.1f ms | ss "
      "-tanio %.1f ms: ss / iterator %.2fx, ss / sock_diag %.2fx\n",
      rounds, Median(iter_cpu_ms), Median(dump_cpu_ms), Median(ss_cpu_ms),
      Median(ss_cpu_ms) / Median(iter_cpu_ms), Median(ss_cpu_ms) / Median(dump_cpu_ms));
  absl::PrintF(
      "sockets in the dump: %d (owned, found by bpf: %d, by /proc: %d); bpf table: %d sockets\n",
      sockets, bpf_found, proc_found, bpf_table);
  absl::PrintF(
      "median of %d: dump %.1f ms | bpf scan %.1f ms (%.2fx the dump) | bpf scan, probe reads "
      "%.1f ms (%.2fx) | /proc walk %.1f ms (%.2fx the dump, %.1fx the bpf scan)\n",
      rounds, dump, by_bpf, by_bpf / dump, by_compat, by_compat / dump, by_proc, by_proc / dump,
      by_proc / by_bpf);
  absl::PrintF("tracker diff of the dump: %.1f ms without owners, %.1f ms with\n", Median(diff_ms),
               Median(diff_owned_ms));
  fflush(stdout);
  sleep(static_cast<unsigned>(absl::GetFlag(FLAGS_hold_seconds)));
  for (pid_t pid : children) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  return 0;
}
