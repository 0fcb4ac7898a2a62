// tcpscope-fleet-sim: a fleet of simulated agents (bench/fleet_model.h) over the real Ingest
// protocol, for the service at cluster scale. Every simulated host is one Ingest/Stream on its
// own channel (bench/ingest_stream.h); its connection ends all pair with ends on other simulated
// hosts. Runs a warm-up (one snapshot interval), then --duration of measured load (churn,
// keepalive probes and timeouts, failed connects, snapshots every --snapshot_interval staggered
// over the hosts, and with --saturate prebuilt event batches as fast as the service acknowledges
// them), measures the service (--service_pid: CPU and memory; --metrics_url: scrape time and
// size; ListConnections host=H paired=true latency) under that load, then stops the churn, sends
// one last snapshot per host, waits for every ack and checks that the service counted exactly
// what it acknowledged, pairs every end and found no half-open connection.
//
// With several replicas (--target=HOST:PORT,... or dns:///NAME:PORT) each simulated host homes,
// as the agent does, on the first replica of its host name's rendezvous ranking that is
// reachable at the start; --metrics_url then lists every replica's /metrics and the checks use
// their sums; the Observer checks ask the first reachable replica.
//
// Prints one JSON line (stdout) and a summary with progress every --progress_interval (stderr).
// Exit status: 0 when every check passed, 1 when one failed (the JSON line says which), 2 for
// bad flags.
//
//   tcpscope-fleet-sim --target=127.0.0.1:7700 --hosts=200 --ends_per_host=200
//     --snapshot_interval=2s --duration=20s --service_pid=PID
//     --metrics_url=http://127.0.0.1:9700/metrics
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/fleet_model.h"
#include "bench/ingest_stream.h"
#include "bench/synthetic_events.h"
#include "common/rendezvous.h"
#include "common/replica_addresses.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "service/batch_validator.h"
#include "tcpscope/v1/observer.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:7700",
          "The service's gRPC address, or its replicas: HOST:PORT,HOST:PORT,... or "
          "dns:///NAME:PORT (each host streams to the first reachable replica of its host name's "
          "rendezvous ranking, as the agent does).");
ABSL_FLAG(int, hosts, 100, "Simulated hosts (agents), each with its own stream (2..60000).");
ABSL_FLAG(int, ends_per_host, 1000, "Connection ends per host (even; half client, half server).");
ABSL_FLAG(int, pods_per_host, 20, "Pods per host (workload identity of the ends).");
ABSL_FLAG(absl::Duration, snapshot_interval, absl::Seconds(10),
          "Each host's snapshot interval (hosts staggered over it).");
ABSL_FLAG(double, new_per_second, 20,
          "Connections each host opens per second (and as many it closes), with the handshake "
          "and close events on both ends.");
ABSL_FLAG(double, probes_per_second, 2, "Answered keepalive probes per host per second.");
ABSL_FLAG(double, keepalive_timeouts_per_minute, 0.5,
          "Keepalive timeouts per host per minute (the timed-out connection is replaced).");
ABSL_FLAG(double, failures_per_second, 0.5, "Failed connects per host per second.");
ABSL_FLAG(double, keepalive_fraction, 0.3, "Share of ends with SO_KEEPALIVE on.");
ABSL_FLAG(absl::Duration, flush_interval, absl::Seconds(1),
          "How often a host sends its pending events (the real agent: 50ms or 2048 events).");
ABSL_FLAG(absl::Duration, tick, absl::Milliseconds(100), "The simulation's time step.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(60), "Measured load, after the warm-up.");
ABSL_FLAG(bool, saturate, false,
          "On top of the fleet's load, every saturating host sends prebuilt event batches as "
          "fast as the service acknowledges them (during --duration).");
ABSL_FLAG(int, saturate_hosts, 0, "Hosts that saturate (0: all).");
ABSL_FLAG(int, saturate_batch_size, 256, "Events per saturating batch.");
ABSL_FLAG(int, saturate_window, 2, "Saturating batches unacknowledged per host at most.");
ABSL_FLAG(absl::Duration, failover_after, absl::ZeroDuration(),
          "With several replicas: a host whose stream breaks moves this long after to the next "
          "replica of its ranking, resending what was not acknowledged, as the agent does (it "
          "does not go back). 0: a broken stream fails the run. What a lost replica had "
          "acknowledged is lost with it: the checks then expect what the others acknowledged.");
ABSL_FLAG(int, service_pid, 0, "The service's pid: its CPU and memory are measured.");
ABSL_FLAG(std::string, metrics_url, "",
          "The service's http://127.0.0.1:PORT/metrics, or every replica's, comma-separated (their "
          "sums are checked; scrape time and size are of all of them): scrape time and size, and "
          "the checks of "
          "its counters.");
ABSL_FLAG(int, scrapes, 3, "Scrapes measured (median).");
ABSL_FLAG(int, queries, 5, "ListConnections(host, paired) queries measured (median).");
ABSL_FLAG(int, check_hosts, 200,
          "Hosts whose listings are checked end by end (all when there are fewer).");
ABSL_FLAG(int, check_paired_hosts, 5,
          "Of those, hosts whose paired listing is checked too (it walks the whole fleet).");
ABSL_FLAG(bool, check_pair_index, true,
          "Check tcpscope_service_pair_index_entries/_ends against the fleet (a fresh service).");
ABSL_FLAG(std::string, host_prefix, "node", "Host names are PREFIX-NNNNN.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the fleet's shape and churn.");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(120),
          "How long the connections and every hello-ack may take.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(120),
          "After the last snapshots, how long the outstanding acks may take.");
ABSL_FLAG(absl::Duration, progress_interval, absl::Seconds(10), "Progress lines on stderr.");
ABSL_FLAG(std::string, label, "", "Copied into the JSON line.");

namespace tcpscope::bench {
namespace {

constexpr const char* kKindNames[] = {
    "unspecified",     "handshake",         "handshake_failed",   "close",
    "keepalive_probe", "keepalive_timeout", "keepalive_answered", "half_open"};
static_assert(std::size(kKindNames) == v1::EventKind_ARRAYSIZE);

const absl::Time kProcessStart = absl::Now();

void Log(const std::string& line) {
  std::fprintf(stderr, "fleet_sim [%6.1fs]: %s\n",
               absl::ToDoubleSeconds(absl::Now() - kProcessStart), line.c_str());
}

double Median(std::vector<double> values) {
  if (values.empty()) return -1;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// ---- the service process, from /proc ----

struct ProcSample {
  double cpu_seconds = 0;
  uint64_t rss_bytes = 0;
  uint64_t hwm_bytes = 0;
};

ProcSample SampleProcess(int pid) {
  ProcSample sample;
  if (pid <= 0) return sample;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  if (paren != std::string::npos) {
    // After "pid (comm) ": state is field 3, utime 14 and stime 15.
    std::vector<std::string> fields = absl::StrSplit(text.substr(paren + 2), ' ');
    double utime = 0, stime = 0;
    if (fields.size() > 13 && absl::SimpleAtod(fields[11], &utime) &&
        absl::SimpleAtod(fields[12], &stime)) {
      sample.cpu_seconds = (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(status, line);) {
    uint64_t* into = absl::StartsWith(line, "VmRSS:")   ? &sample.rss_bytes
                     : absl::StartsWith(line, "VmHWM:") ? &sample.hwm_bytes
                                                        : nullptr;
    if (into == nullptr) continue;
    std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    uint64_t kib = 0;
    if (fields.size() >= 2 && absl::SimpleAtoi(fields[1], &kib)) *into = kib * 1024;
  }
  return sample;
}

// ---- /metrics over plain HTTP ----

struct Scrape {
  bool ok = false;
  std::string error;
  double seconds = 0;
  std::string body;
};

// GET of an http://HOST:PORT/PATH URL (HTTP/1.0, the whole body until the server closes).
Scrape HttpGet(const std::string& url) {
  Scrape scrape;
  constexpr absl::string_view kScheme = "http://";
  if (!absl::StartsWith(url, kScheme)) {
    scrape.error = "--metrics_url must be http://HOST:PORT/PATH";
    return scrape;
  }
  const std::string rest = url.substr(kScheme.size());
  const size_t slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  const std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  const size_t colon = authority.rfind(':');
  const std::string host = authority.substr(0, colon);
  const std::string port = colon == std::string::npos ? "80" : authority.substr(colon + 1);
  const absl::Time start = absl::Now();
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    scrape.error = absl::StrCat("cannot resolve ", authority);
    return scrape;
  }
  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bool connected = fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0;
  freeaddrinfo(found);
  if (!connected) {
    if (fd >= 0) close(fd);
    scrape.error = absl::StrCat("cannot connect to ", authority);
    return scrape;
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", authority, "\r\n\r\n");
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    scrape.error = "cannot send the request";
    return scrape;
  }
  std::string response;
  char buffer[1 << 16];
  for (ssize_t n; (n = recv(fd, buffer, sizeof(buffer), 0)) > 0;) response.append(buffer, n);
  close(fd);
  scrape.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const size_t header_end = response.find("\r\n\r\n");
  if (!absl::StartsWith(response, "HTTP/1.1 200") && !absl::StartsWith(response, "HTTP/1.0 200")) {
    scrape.error = absl::StrCat("unexpected answer: ", response.substr(0, response.find('\r')));
    return scrape;
  }
  scrape.body = header_end == std::string::npos ? "" : response.substr(header_end + 4);
  // A server that gives up mid-response (the metrics server's per-connection deadline) leaves a
  // body shorter than announced: a broken scrape, as Prometheus would see it.
  const std::string headers = absl::AsciiStrToLower(response.substr(0, header_end));
  if (const size_t at = headers.find("content-length:"); at != std::string::npos) {
    uint64_t length = 0;
    if (absl::SimpleAtoi(
            absl::StripAsciiWhitespace(headers.substr(at + 15, headers.find('\r', at) - at - 15)),
            &length) &&
        length != scrape.body.size()) {
      scrape.error = absl::StrFormat("truncated after %.1f s: %d of %d bytes", scrape.seconds,
                                     scrape.body.size(), length);
      return scrape;
    }
  }
  scrape.ok = true;
  return scrape;
}

// Sums of the samples of some families, over the series of this fleet's hosts (label
// host="PREFIX-..."), or over every series for families without a host label.
struct MetricSums {
  std::map<std::string, double> by_family;
  double Get(const std::string& family) const {
    auto it = by_family.find(family);
    return it == by_family.end() ? 0 : it->second;
  }
};

MetricSums SumMetrics(const std::string& body, const std::vector<std::string>& families,
                      const std::string& host_prefix) {
  MetricSums sums;
  for (const std::string& family : families) sums.by_family[family] = 0;
  const std::string host_label = absl::StrCat("host=\"", host_prefix, "-");
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t name_end = line.find_first_of("{ ");
    if (name_end == absl::string_view::npos) continue;
    auto it = sums.by_family.find(std::string(line.substr(0, name_end)));
    if (it == sums.by_family.end()) continue;
    if (line[name_end] == '{' && absl::StrContains(line, "host=\"") &&
        !absl::StrContains(line, host_label)) {
      continue;
    }
    double value = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) it->second += value;
  }
  return sums;
}

// Every URL of a comma-separated list, one after the other: the bodies concatenated (sums
// over them are sums over the replicas), the times added.
Scrape HttpGetAll(const std::string& urls) {
  Scrape all;
  all.ok = true;
  for (absl::string_view url : absl::StrSplit(urls, ',')) {
    Scrape scrape = HttpGet(std::string(url));
    all.seconds += scrape.seconds;
    if (!scrape.ok) return scrape;
    absl::StrAppend(&all.body, scrape.body);
  }
  return all;
}

// ---- the run ----

// A simulated agent's own channel (one TCP connection per host, as with real agents).
std::shared_ptr<grpc::Channel> AgentChannel(const std::string& target) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxSendMessageSize(64 << 20);  // as the agent's shipper
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments);
}

struct Totals {
  uint64_t events_sent = 0;
  uint64_t events_acked = 0;
  // Acknowledged by a replica that was lost afterwards (--failover_after): counted nowhere now.
  uint64_t lost_events = 0;
  KindCounts lost_kinds{};
  uint64_t filler_events_acked = 0;
  uint64_t batches_acked = 0;
  uint64_t queued_batches = 0;
  uint64_t queued_bytes = 0;
  KindCounts kinds{};
};

// `retired`: streams of lost replicas, whose unacknowledged batches other streams carried.
Totals Sum(std::vector<std::unique_ptr<IngestStream>>& streams,
           std::vector<std::unique_ptr<IngestStream>>& retired) {
  Totals sum;
  for (auto* list : {&streams, &retired}) {
    const bool lost = list == &retired;
    for (auto& stream : *list) {
      const StreamTotals t = stream->totals();
      sum.events_sent += lost ? t.events_acked : t.events_written;
      sum.events_acked += t.events_acked;
      sum.filler_events_acked += t.filler_events_acked;
      sum.batches_acked += t.batches_acked;
      sum.queued_batches += t.queued_batches;
      sum.queued_bytes += t.queued_bytes;
      for (size_t k = 0; k < sum.kinds.size(); ++k) sum.kinds[k] += t.kinds_acked[k];
      if (!lost) continue;
      sum.lost_events += t.events_acked;
      for (size_t k = 0; k < sum.kinds.size(); ++k) sum.lost_kinds[k] += t.kinds_acked[k];
    }
  }
  return sum;
}

std::string KindsJson(const KindCounts& kinds) {
  std::vector<std::string> parts;
  for (size_t k = 1; k < kinds.size(); ++k) {
    parts.push_back(absl::StrFormat("\"%s\":%d", kKindNames[k], kinds[k]));
  }
  return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
}

class Run {
 public:
  int Main();

 private:
  std::string HostName(int host) const { return absl::StrFormat("%s-%05d", host_prefix_, host); }
  bool SelfCheck(Fleet& fleet, std::string* error);
  // Each host's replica (homes_), the replicas reached, and the Observer's replica; false with
  // error_ set when none can be reached.
  bool HomeHosts(absl::Time deadline);
  void SimulationLoop();
  // Totals over every stream, those of lost replicas included.
  Totals SumStreams() {
    absl::MutexLock lock(&streams_mu_);
    return Sum(streams_, retired_);
  }
  // A batch of host `h`: to its stream, or held while the host has none (its replica is lost).
  void Deliver(int h, OutBatch batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(streams_mu_);
  // --failover_after: hosts whose stream broke move to the next replica of their ranking.
  void FailOver(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(streams_mu_);
  // --metrics_url without the lost replicas' (when it lists one URL per replica of --target).
  std::string LiveMetricsUrls();
  void Progress(absl::Time now);
  void Measure();
  void Check();
  void Fail(const std::string& failure) {
    Log(absl::StrCat("CHECK FAILED: ", failure));
    failures_.push_back(failure);
  }
  int Report();
  // "hosts_by_replica":{...}, with several replicas only (the JSON line of one service is as it
  // always was).
  std::string ReplicasJson() const;

  // Flags.
  std::string target_ = absl::GetFlag(FLAGS_target);
  std::string host_prefix_ = absl::GetFlag(FLAGS_host_prefix);
  std::string metrics_url_ = absl::GetFlag(FLAGS_metrics_url);
  int service_pid_ = absl::GetFlag(FLAGS_service_pid);
  FleetShape shape_;
  FleetRates rates_;
  absl::Duration snapshot_interval_ = absl::GetFlag(FLAGS_snapshot_interval);
  absl::Duration flush_interval_ = absl::GetFlag(FLAGS_flush_interval);
  absl::Duration tick_ = absl::GetFlag(FLAGS_tick);
  absl::Duration duration_ = absl::GetFlag(FLAGS_duration);
  absl::Duration failover_after_ = absl::GetFlag(FLAGS_failover_after);

  std::unique_ptr<Fleet> fleet_;
  std::vector<std::string> replicas_;  // of --target, in its order (a dns:/// name's: sorted)
  std::vector<std::string> homes_;     // by host: the replica it streams to
  std::map<std::string, int> hosts_by_replica_;
  bool several_replicas_ = false;
  std::string observer_target_;
  std::vector<v1::Hello> hellos_;                      // by host
  std::vector<IngestStream::Options> stream_options_;  // by host
  // The simulation thread replaces a host's stream on failover: the streams are read under this.
  absl::Mutex streams_mu_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs_;
  std::vector<std::unique_ptr<IngestStream>> streams_;
  // Failover: the streams, channels and stubs of lost replicas (kept: the totals count them).
  std::vector<std::unique_ptr<IngestStream>> retired_;
  std::vector<std::shared_ptr<grpc::Channel>> retired_channels_;
  std::vector<std::unique_ptr<grpc::GenericStub>> retired_stubs_;
  std::set<std::string> lost_replicas_;
  std::vector<absl::Time> broke_at_;         // by host: when its stream was seen broken
  std::vector<bool> rehoming_;               // by host: moved, not yet greeted
  std::vector<std::vector<OutBatch>> held_;  // by host: made while it had no stream
  std::vector<double> rehome_seconds_;       // broken stream seen .. greeted by the next replica
  bool no_replica_left_ = false;
  std::vector<OutBatch> filler_;
  std::unique_ptr<v1::Observer::Stub> observer_;

  // The simulation thread's; read by the main thread through atomics.
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> snapshots_sent_{0};
  std::atomic<int64_t> lag_max_ns_{0};

  // Half-open events followed from the start.
  std::atomic<uint64_t> half_open_seen_{0};
  std::atomic<uint64_t> half_open_missed_{0};
  std::array<std::atomic<uint64_t>, v1::HalfOpenReason_ARRAYSIZE> half_open_by_reason_{};
  std::atomic<bool> follow_ok_{false};

  // Results.
  std::string error_;
  std::vector<std::string> failures_;
  double window_seconds_ = 0;
  Totals window_start_, window_end_, final_;
  double sim_cpu_window_ = 0;
  double service_cores_ = -1;
  ProcSample service_end_;
  ProcSample service_final_;
  uint64_t backlog_max_ = 0;
  double scrape_median_ = -1, scrape_bytes_ = -1;
  uint64_t scrape_series_ = 0;
  double query_median_ = -1, query_max_ = -1;
  double query_host_median_ = -1;
  int64_t query_rows_ = -1;
  uint64_t snapshot_bytes_ = 0;
  uint64_t ends_last_ = 0;
  int checked_hosts_ = 0;
  absl::Time run_start_;
  absl::Time progress_last_time_;
  Totals progress_last_;
  ProcSample progress_service_;
  double progress_cpu_ = 0;
};

bool Run::SelfCheck(Fleet& fleet, std::string* error) {
  // What the fleet writes by hand must parse and pass the service's own validation.
  const uint64_t now_ns = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  FleetRates busy;
  busy.new_per_second = 50;
  busy.probes_per_second = 20;
  busy.timeouts_per_minute = 600;
  busy.failures_per_second = 20;
  Fleet copy = fleet;  // the run's fleet stays untouched
  copy.Tick(1.0, now_ns, busy);
  for (int host : {0, fleet.hosts() - 1}) {
    for (OutBatch batch : {copy.TakeEvents(host), copy.Snapshot(host, now_ns)}) {
      v1::Batch parsed;
      const std::string message = absl::StrCat(std::string("\x08\x01", 2), *batch.body);
      if (!parsed.ParseFromString(message)) {
        *error = "internal: a hand-written batch does not parse";
        return false;
      }
      if (absl::Status s = service::ValidateBatch(parsed, absl::Now()); !s.ok()) {
        *error = absl::StrCat("internal: the service would refuse a batch: ", s.message());
        return false;
      }
      OutBatch counted = batch;
      if (!CountBody(counted) || counted.kinds != batch.kinds ||
          (batch.snapshot && parsed.snapshot().connections_size() != fleet.ends_per_host())) {
        *error = "internal: a batch's counts are wrong";
        return false;
      }
      if (!batch.snapshot) {
        for (size_t k = 1; k < batch.kinds.size(); ++k) {
          if (k != v1::EVENT_KIND_HALF_OPEN && batch.kinds[k] == 0) {
            *error = absl::StrCat("internal: no ", kKindNames[k], " event in a busy second");
            return false;
          }
        }
      } else {
        snapshot_bytes_ = batch.body->size();
      }
    }
  }
  return true;
}

void Run::SimulationLoop() {
  const int hosts = fleet_->hosts();
  const int64_t tick_ns = absl::ToInt64Nanoseconds(tick_);
  const int64_t flush_ticks = std::max<int64_t>(1, flush_interval_ / tick_);
  const int64_t snapshot_ticks = std::max<int64_t>(1, snapshot_interval_ / tick_);
  const absl::Time start = absl::Now();
  for (int64_t tick = 1; !stop_.load(); ++tick) {
    const absl::Time due = start + tick * tick_;
    if (absl::Now() < due) absl::SleepFor(due - absl::Now());
    const absl::Time now = absl::Now();
    lag_max_ns_.store(std::max(lag_max_ns_.load(), absl::ToInt64Nanoseconds(now - due)));
    const uint64_t now_ns = static_cast<uint64_t>(absl::ToUnixNanos(now));
    fleet_->Tick(static_cast<double>(tick_ns) / 1e9, now_ns, rates_);
    absl::MutexLock lock(&streams_mu_);
    for (int h = 0; h < hosts; ++h) {
      // Hosts flush and snapshot at their own phases.
      const bool snapshot =
          (tick + static_cast<int64_t>(h) * snapshot_ticks / hosts) % snapshot_ticks == 0;
      if (snapshot || (tick + h) % flush_ticks == 0) {
        OutBatch events = fleet_->TakeEvents(h);
        if (events.events > 0) Deliver(h, std::move(events));
      }
      if (snapshot) {
        Deliver(h, fleet_->Snapshot(h, now_ns));
        snapshots_sent_.fetch_add(1);
      }
    }
    FailOver(now);
  }
}

void Run::Deliver(int h, OutBatch batch) {
  if (failover_after_ > absl::ZeroDuration() && streams_[h]->done()) {
    held_[h].push_back(std::move(batch));
  } else {
    streams_[h]->Enqueue(std::move(batch));
  }
}

void Run::FailOver(absl::Time now) {
  if (failover_after_ <= absl::ZeroDuration()) return;
  for (int h = 0; h < fleet_->hosts(); ++h) {
    if (rehoming_[h] && streams_[h]->greeted()) {
      rehome_seconds_.push_back(absl::ToDoubleSeconds(now - broke_at_[h]));
      rehoming_[h] = false;
      broke_at_[h] = absl::InfiniteFuture();
      continue;
    }
    if (!streams_[h]->done()) continue;
    if (broke_at_[h] == absl::InfiniteFuture()) {
      broke_at_[h] = now;
      if (lost_replicas_.insert(homes_[h]).second) {
        Log(absl::StrCat("replica ", homes_[h], " is lost (", streams_[h]->status().error_message(),
                         "): its hosts move to the next replica of their ranking after ",
                         absl::FormatDuration(failover_after_)));
      }
      continue;
    }
    if (now - broke_at_[h] < failover_after_) continue;
    std::string next;
    for (const std::string& replica : RendezvousRanking(HostName(h), replicas_)) {
      if (lost_replicas_.count(replica) == 0) {
        next = replica;
        break;
      }
    }
    if (next.empty()) {
      no_replica_left_ = true;
      continue;
    }
    retired_channels_.push_back(std::exchange(channels_[h], AgentChannel(next)));
    retired_stubs_.push_back(
        std::exchange(stubs_[h], std::make_unique<grpc::GenericStub>(channels_[h])));
    auto stream = std::make_unique<IngestStream>(stubs_[h].get(), hellos_[h], stream_options_[h]);
    for (OutBatch& batch : streams_[h]->TakeUndelivered()) stream->Enqueue(std::move(batch));
    for (OutBatch& batch : held_[h]) stream->Enqueue(std::move(batch));
    held_[h].clear();
    retired_.push_back(std::exchange(streams_[h], std::move(stream)));
    --hosts_by_replica_[homes_[h]];
    ++hosts_by_replica_[next];
    homes_[h] = next;
    rehoming_[h] = true;
  }
}

std::string Run::LiveMetricsUrls() {
  const std::vector<std::string> urls = absl::StrSplit(metrics_url_, ',');
  absl::MutexLock lock(&streams_mu_);
  if (lost_replicas_.empty() || urls.size() != replicas_.size()) return metrics_url_;
  std::vector<std::string> live;
  for (size_t i = 0; i < urls.size(); ++i) {
    if (lost_replicas_.count(replicas_[i]) == 0) live.push_back(urls[i]);
  }
  return absl::StrJoin(live, ",");
}

void Run::Progress(absl::Time now) {
  const Totals totals = SumStreams();
  backlog_max_ = std::max(backlog_max_, totals.queued_batches);
  const ProcSample service = SampleProcess(service_pid_);
  const double cpu = SelfCpuSeconds();
  const double seconds = absl::ToDoubleSeconds(now - progress_last_time_);
  std::string line = absl::StrFormat(
      "%.0f s: %d events acknowledged (%.0f/s), %d unacknowledged, %d batches queued (%.1f MiB), "
      "simulator %.2f cores, lag max %.0f ms",
      absl::ToDoubleSeconds(now - run_start_), totals.events_acked,
      (totals.events_acked - progress_last_.events_acked) / seconds,
      totals.events_sent - totals.events_acked, totals.queued_batches,
      totals.queued_bytes / 1048576.0, (cpu - progress_cpu_) / seconds, lag_max_ns_.load() / 1e6);
  if (service_pid_ > 0) {
    absl::StrAppendFormat(&line, "; service %.2f cores, RSS %.0f MiB",
                          (service.cpu_seconds - progress_service_.cpu_seconds) / seconds,
                          service.rss_bytes / 1048576.0);
  }
  Log(line);
  progress_last_time_ = now;
  progress_last_ = totals;
  progress_service_ = service;
  progress_cpu_ = cpu;
}

void Run::Measure() {
  // Scrapes and queries while the fleet's load goes on.
  if (!metrics_url_.empty()) {
    std::vector<double> times;
    for (int i = 0; i < absl::GetFlag(FLAGS_scrapes); ++i) {
      Scrape scrape = HttpGetAll(LiveMetricsUrls());
      times.push_back(scrape.seconds);
      Log(absl::StrFormat("scrape: %.3f s, %d bytes", scrape.seconds, scrape.body.size()));
      if (!scrape.ok) {
        Fail(absl::StrCat("scrape of ", metrics_url_, ": ", scrape.error));
        break;
      }
      scrape_bytes_ = static_cast<double>(scrape.body.size());
      scrape_series_ = 0;
      for (absl::string_view line : absl::StrSplit(scrape.body, '\n')) {
        if (!line.empty() && line[0] != '#') ++scrape_series_;
      }
    }
    scrape_median_ = Median(times);
  }
  std::vector<double> times;
  const int hosts = fleet_->hosts();
  const int queries = absl::GetFlag(FLAGS_queries);
  for (int i = 0; i < queries; ++i) {
    v1::ListConnectionsRequest request;
    request.set_host(HostName(static_cast<int>(static_cast<int64_t>(i) * hosts / queries)));
    request.set_paired(true);
    v1::ListConnectionsResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    const absl::Time start = absl::Now();
    const grpc::Status status = observer_->ListConnections(&context, request, &response);
    times.push_back(absl::ToDoubleSeconds(absl::Now() - start));  // a timeout counts as its time
    Log(absl::StrFormat("ListConnections(host=%s, paired): %.3f s, %d rows", request.host(),
                        times.back(), response.connections_size()));
    if (!status.ok()) {
      Fail(absl::StrFormat("ListConnections(host, paired): %s after %.1f s", status.error_message(),
                           times.back()));
      break;
    }
    query_rows_ = response.connections_size();
  }
  query_median_ = Median(times);
  query_max_ = times.empty() ? -1 : *std::max_element(times.begin(), times.end());
}

void Run::Check() {
  const int hosts = fleet_->hosts();
  const int ends = fleet_->ends_per_host();
  const uint64_t expected_ends = static_cast<uint64_t>(hosts) * ends;
  // 1. Everything sent was acknowledged.
  if (final_.events_acked != final_.events_sent || final_.queued_batches != 0) {
    Fail(absl::StrFormat("%d events sent, %d acknowledged, %d batches still queued",
                         final_.events_sent, final_.events_acked, final_.queued_batches));
  }
  {
    absl::MutexLock lock(&streams_mu_);
    for (int h = 0; h < hosts; ++h) {
      if (streams_[h]->done()) {
        Fail(absl::StrCat("the stream of ", HostName(h),
                          " ended: ", streams_[h]->status().error_message()));
        break;
      }
    }
  }
  // What the replicas still up acknowledged (all of it, unless a replica was lost).
  KindCounts acked = final_.kinds;
  for (size_t k = 0; k < acked.size(); ++k) acked[k] -= final_.lost_kinds[k];
  const uint64_t acked_events = final_.events_acked - final_.lost_events;
  // 2. The service's counters, from /metrics: each acknowledged event counted once.
  if (!metrics_url_.empty()) {
    Scrape scrape = HttpGetAll(LiveMetricsUrls());
    if (!scrape.ok) {
      Fail(absl::StrCat("scrape: ", scrape.error));
    } else {
      const MetricSums sums =
          SumMetrics(scrape.body,
                     {"tcpscope_agent_events_total", "tcpscope_handshakes_total",
                      "tcpscope_handshake_failures_total", "tcpscope_closes_total",
                      "tcpscope_keepalive_probes_total", "tcpscope_keepalive_timeouts_total",
                      "tcpscope_connections_half_open", "tcpscope_half_open_detected_total",
                      "tcpscope_connections", "tcpscope_service_pair_index_entries",
                      "tcpscope_service_pair_index_ends", "tcpscope_agent_up"},
                     host_prefix_);
      auto expect = [&](const std::string& family, double want) {
        if (sums.Get(family) != want) {
          Fail(absl::StrFormat("/metrics: sum of %s is %.0f, expected %.0f", family,
                               sums.Get(family), want));
        }
      };
      expect("tcpscope_agent_events_total", static_cast<double>(acked_events));
      expect("tcpscope_handshakes_total", acked[v1::EVENT_KIND_HANDSHAKE]);
      expect("tcpscope_handshake_failures_total", acked[v1::EVENT_KIND_HANDSHAKE_FAILED]);
      expect("tcpscope_closes_total", acked[v1::EVENT_KIND_CLOSE]);
      expect("tcpscope_keepalive_probes_total", acked[v1::EVENT_KIND_KEEPALIVE_PROBE]);
      expect("tcpscope_keepalive_timeouts_total", acked[v1::EVENT_KIND_KEEPALIVE_TIMEOUT]);
      expect("tcpscope_connections_half_open", 0);
      expect("tcpscope_half_open_detected_total", 0);
      // Every end, plus each host's listening sockets (state="listen", one per pod).
      expect("tcpscope_connections", static_cast<double>(expected_ends) +
                                         static_cast<double>(hosts) * shape_.pods_per_host);
      expect("tcpscope_agent_up", hosts);
      if (absl::GetFlag(FLAGS_check_pair_index)) {
        expect("tcpscope_service_pair_index_entries", static_cast<double>(expected_ends / 2));
        expect("tcpscope_service_pair_index_ends", static_cast<double>(expected_ends));
      }
    }
  }
  // 3. The Summary RPC's fleet totals.
  {
    v1::SummaryRequest request;
    v1::SummaryResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    const grpc::Status status = observer_->Summary(&context, request, &response);
    if (!status.ok()) {
      Fail(absl::StrCat("Summary: ", status.error_message()));
    } else {
      const v1::HostSummary& fleet = response.fleet();
      auto sum = [](const auto& counts) {
        uint64_t total = 0;
        for (const v1::Count& count : counts) total += count.value();
        return total;
      };
      const std::pair<const char*, std::pair<uint64_t, uint64_t>> compare[] = {
          {"events", {fleet.events(), acked_events}},
          {"handshakes", {fleet.handshakes(), acked[v1::EVENT_KIND_HANDSHAKE]}},
          {"handshake_failures",
           {sum(fleet.handshake_failures()), acked[v1::EVENT_KIND_HANDSHAKE_FAILED]}},
          {"closes_by_initiator", {sum(fleet.closes_by_initiator()), acked[v1::EVENT_KIND_CLOSE]}},
          {"closes_by_reason", {sum(fleet.closes_by_reason()), acked[v1::EVENT_KIND_CLOSE]}},
          {"keepalive_probes", {fleet.keepalive_probes(), acked[v1::EVENT_KIND_KEEPALIVE_PROBE]}},
          {"keepalive_timeouts",
           {fleet.keepalive_timeouts(), acked[v1::EVENT_KIND_KEEPALIVE_TIMEOUT]}},
          {"half_open", {sum(fleet.half_open()), 0}},
          {"agents_connected", {fleet.agents_connected(), static_cast<uint64_t>(hosts)}},
      };
      for (const auto& [name, values] : compare) {
        if (values.first != values.second) {
          Fail(absl::StrFormat("Summary: fleet %s is %d, expected %d", name, values.first,
                               values.second));
        }
      }
    }
  }
  // 4. Listings: every end of a checked host is paired with the simulated peer, nothing is
  // half-open, and the paired listing has one row per connection of the host.
  const int check_hosts = std::min(hosts, absl::GetFlag(FLAGS_check_hosts));
  std::vector<double> host_query_times;
  for (int i = 0; i < check_hosts; ++i) {
    const int h = static_cast<int>(static_cast<int64_t>(i) * hosts / check_hosts);
    v1::ListConnectionsRequest request;
    request.set_host(HostName(h));
    v1::ListConnectionsResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    const absl::Time start = absl::Now();
    grpc::Status status = observer_->ListConnections(&context, request, &response);
    host_query_times.push_back(absl::ToDoubleSeconds(absl::Now() - start));
    if (!status.ok()) {
      Fail(absl::StrCat("ListConnections(host=", HostName(h), "): ", status.error_message()));
      break;
    }
    int paired = 0, half_open = 0;
    for (const v1::HostConnection& end : response.connections()) {
      if (end.pairing() == v1::PAIRING_PAIRED && end.peer().present() &&
          absl::StartsWith(end.peer().host(), absl::StrCat(host_prefix_, "-")) &&
          end.peer().host() != end.host()) {
        ++paired;
      }
      if (end.half_open() != v1::HALF_OPEN_REASON_UNSPECIFIED) ++half_open;
    }
    ends_last_ += static_cast<uint64_t>(response.connections_size());
    if (response.connections_size() != ends || paired != ends || half_open != 0) {
      Fail(
          absl::StrFormat("%s lists %d ends (expected %d), %d paired with a present peer on "
                          "another host, %d half-open",
                          HostName(h), response.connections_size(), ends, paired, half_open));
      break;
    }
    if (i >= absl::GetFlag(FLAGS_check_paired_hosts)) {
      ++checked_hosts_;
      continue;
    }
    request.set_paired(true);
    grpc::ClientContext paired_context;
    paired_context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    status = observer_->ListConnections(&paired_context, request, &response);
    if (!status.ok() || response.connections_size() != ends) {
      Fail(absl::StrFormat("ListConnections(host=%s, paired): %d rows, expected %d %s", HostName(h),
                           response.connections_size(), ends, status.error_message()));
      break;
    }
    ++checked_hosts_;
  }
  query_host_median_ = Median(host_query_times);
  // 5. No half_open event, live (followed since the start) or in the history.
  if (!follow_ok_.load()) Fail("the half_open follow subscription did not run");
  if (half_open_seen_.load() != 0 || half_open_missed_.load() != 0) {
    std::vector<std::string> reasons;
    for (int r = 1; r < v1::HalfOpenReason_ARRAYSIZE; ++r) {
      reasons.push_back(
          absl::StrCat(v1::HalfOpenReason_Name(r), " ", half_open_by_reason_[r].load()));
    }
    Fail(absl::StrFormat("%d half_open events (%s; %d missed by the follower)",
                         half_open_seen_.load(), absl::StrJoin(reasons, ", "),
                         half_open_missed_.load()));
  }
  {
    v1::GetEventsRequest request;
    request.mutable_filter()->add_kinds(v1::EVENT_KIND_HALF_OPEN);
    request.set_last(1000);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    auto reader = observer_->GetEvents(&context, request);
    int events = 0;
    for (v1::GetEventsResponse response; reader->Read(&response);) {
      events += response.events_size();
    }
    const grpc::Status status = reader->Finish();
    if (!status.ok()) Fail(absl::StrCat("GetEvents(half_open): ", status.error_message()));
    if (events != 0) Fail(absl::StrCat(events, " half_open events in the history"));
  }
}

bool Run::HomeHosts(absl::Time deadline) {
  absl::StatusOr<ReplicaAddresses> parsed = ReplicaAddresses::Parse("--target", target_);
  absl::StatusOr<std::vector<std::string>> replicas =
      parsed.ok() ? parsed->Resolve() : parsed.status();
  if (!replicas.ok()) {
    error_ = std::string(replicas.status().message());
    return false;
  }
  if (replicas->size() == 1) {  // one service: every host streams to it
    homes_.assign(static_cast<size_t>(fleet_->hosts()), replicas->front());
    hosts_by_replica_[replicas->front()] = fleet_->hosts();
    observer_target_ = replicas->front();
    return true;
  }
  several_replicas_ = true;
  // Which replicas are reachable now, each tried once (a host's probe would find the same).
  std::vector<std::string> reachable;
  for (const std::string& replica : *replicas) {
    auto channel = grpc::CreateChannel(replica, grpc::InsecureChannelCredentials());
    const absl::Time probe_deadline = std::min(deadline, absl::Now() + absl::Seconds(5));
    if (channel->WaitForConnected(absl::ToChronoTime(probe_deadline))) {
      reachable.push_back(replica);
    } else {
      Log(absl::StrCat("replica ", replica, " is not reachable: its hosts go to the next one"));
    }
  }
  if (reachable.empty()) {
    error_ = absl::StrCat("no replica of ", target_, " is reachable");
    return false;
  }
  // A fixed list keeps its order (--metrics_url follows it, and queries go to its first
  // replica that is reachable); Resolve() sorts.
  replicas_ = parsed->is_dns() ? *replicas : std::vector<std::string>(absl::StrSplit(target_, ','));
  for (int h = 0; h < fleet_->hosts(); ++h) {
    for (const std::string& replica : RendezvousRanking(HostName(h), *replicas)) {
      if (std::find(reachable.begin(), reachable.end(), replica) == reachable.end()) continue;
      homes_.push_back(replica);
      ++hosts_by_replica_[replica];
      break;
    }
  }
  for (const std::string& replica : replicas_) {
    if (std::find(reachable.begin(), reachable.end(), replica) != reachable.end()) {
      observer_target_ = replica;
      break;
    }
  }
  std::vector<std::string> split;
  for (const auto& [replica, count] : hosts_by_replica_) {
    split.push_back(absl::StrCat(replica, " ", count));
  }
  Log(absl::StrCat("hosts by replica: ", absl::StrJoin(split, ", "), "; queries go to ",
                   observer_target_));
  return true;
}

int Run::Main() {
  shape_.hosts = absl::GetFlag(FLAGS_hosts);
  shape_.ends_per_host = absl::GetFlag(FLAGS_ends_per_host);
  shape_.pods_per_host = absl::GetFlag(FLAGS_pods_per_host);
  shape_.keepalive_fraction = absl::GetFlag(FLAGS_keepalive_fraction);
  shape_.seed = absl::GetFlag(FLAGS_seed);
  rates_.new_per_second = absl::GetFlag(FLAGS_new_per_second);
  rates_.probes_per_second = absl::GetFlag(FLAGS_probes_per_second);
  rates_.timeouts_per_minute = absl::GetFlag(FLAGS_keepalive_timeouts_per_minute);
  rates_.failures_per_second = absl::GetFlag(FLAGS_failures_per_second);
  const bool saturate = absl::GetFlag(FLAGS_saturate);
  if (shape_.hosts < 2 || shape_.hosts > 60000 || shape_.ends_per_host < 2 ||
      shape_.ends_per_host % 2 != 0 || shape_.ends_per_host > 100000 || shape_.pods_per_host < 1 ||
      shape_.pods_per_host > 1000 || rates_.new_per_second < 0 || rates_.probes_per_second < 0 ||
      rates_.timeouts_per_minute < 0 || rates_.failures_per_second < 0 ||
      shape_.keepalive_fraction < 0 || shape_.keepalive_fraction > 1 ||
      tick_ < absl::Milliseconds(10) || flush_interval_ < tick_ || snapshot_interval_ < tick_ ||
      duration_ <= absl::ZeroDuration() || absl::GetFlag(FLAGS_saturate_batch_size) < 1 ||
      absl::GetFlag(FLAGS_saturate_window) < 1) {
    Log("bad flags: --hosts 2..60000, --ends_per_host even 2..100000, --pods_per_host 1..1000, "
        "rates >= 0, --keepalive_fraction 0..1, --tick >= 10ms, --flush_interval and "
        "--snapshot_interval >= --tick, --duration > 0");
    return 2;
  }
  const int hosts = shape_.hosts;
  Log(absl::StrFormat("building %d hosts x %d ends (%d pods each)", hosts, shape_.ends_per_host,
                      shape_.pods_per_host));
  fleet_ = std::make_unique<Fleet>(shape_, static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())));
  if (!SelfCheck(*fleet_, &error_)) return Report();
  if (saturate) {
    const absl::Time built = absl::Now();
    for (int d = 0; d < 16; ++d) {
      OutBatch& batch = filler_.emplace_back();
      batch.body = std::make_shared<const std::string>(
          SyntheticBatch(absl::GetFlag(FLAGS_saturate_batch_size), 0x5a7u + d, built)
              .SerializeAsString());
      CountBody(batch);
    }
  }

  // Connections: one channel (one TCP connection) per host, as with real agents.
  const absl::Time connect_deadline = absl::Now() + absl::GetFlag(FLAGS_connect_timeout);
  if (!HomeHosts(connect_deadline)) return Report();
  Log(absl::StrFormat("connecting %d agent streams to %s", hosts, target_));
  for (int h = 0; h < hosts; ++h) {
    channels_.push_back(AgentChannel(homes_[h]));
    if (!channels_.back()->WaitForConnected(absl::ToChronoTime(connect_deadline))) {
      error_ = absl::StrCat("cannot connect to ", homes_[h], " (host ", h, ")");
      return Report();
    }
    stubs_.push_back(std::make_unique<grpc::GenericStub>(channels_.back()));
  }
  observer_ = v1::Observer::NewStub(
      grpc::CreateChannel(observer_target_, grpc::InsecureChannelCredentials()));
  const int saturate_hosts = absl::GetFlag(FLAGS_saturate_hosts) > 0
                                 ? std::min(hosts, absl::GetFlag(FLAGS_saturate_hosts))
                                 : hosts;
  std::mt19937_64 instance_ids(shape_.seed ^ static_cast<uint64_t>(getpid()));
  for (int h = 0; h < hosts; ++h) {
    v1::Hello hello = SyntheticHello(HostName(h), instance_ids() | 1);
    hello.set_agent_version(TCPSCOPE_VERSION);
    IngestStream::Options options;
    options.window = static_cast<uint64_t>(absl::GetFlag(FLAGS_saturate_window));
    if (saturate && h < saturate_hosts) options.filler = &filler_;
    streams_.push_back(std::make_unique<IngestStream>(stubs_[h].get(), hello, options));
    hellos_.push_back(std::move(hello));
    stream_options_.push_back(options);
  }
  broke_at_.assign(static_cast<size_t>(hosts), absl::InfiniteFuture());
  rehoming_.assign(static_cast<size_t>(hosts), false);
  held_.resize(static_cast<size_t>(hosts));
  bool simulating = false;  // from then on, with --failover_after, a broken stream moves
  auto first_failure = [&]() -> std::string {
    absl::MutexLock lock(&streams_mu_);
    if (no_replica_left_) return "every replica of --target is lost";
    if (simulating && failover_after_ > absl::ZeroDuration()) return "";
    for (int h = 0; h < hosts; ++h) {
      if (streams_[h]->done()) {
        return absl::StrCat("the stream of ", HostName(h), " ended (code ",
                            streams_[h]->status().error_code(),
                            "): ", streams_[h]->status().error_message());
      }
    }
    return "";
  };
  auto close_all = [&] {
    absl::MutexLock lock(&streams_mu_);
    for (auto& stream : streams_) stream->Close();
    return WaitUntil(
        absl::Now() + absl::Seconds(30),
        [&] {
          return std::all_of(streams_.begin(), streams_.end(), [](auto& s) { return s->done(); });
        },
        absl::Milliseconds(10));
  };
  const bool greeted = WaitUntil(
      connect_deadline,
      [&] {
        return !first_failure().empty() ||
               std::all_of(streams_.begin(), streams_.end(), [](auto& s) { return s->greeted(); });
      },
      absl::Milliseconds(10));
  if (std::string failure = first_failure(); !greeted || !failure.empty()) {
    error_ = greeted ? failure : "no hello-ack from every host in time";
    if (!close_all()) std::_Exit(Report());
    return Report();
  }

  // Every half_open event from now on.
  grpc::ClientContext follow_context;
  std::thread follower([&] {
    v1::GetEventsRequest request;
    request.mutable_filter()->add_kinds(v1::EVENT_KIND_HALF_OPEN);
    request.set_follow(true);
    auto reader = observer_->GetEvents(&follow_context, request);
    follow_ok_.store(true);
    for (v1::GetEventsResponse response; reader->Read(&response);) {
      half_open_seen_.fetch_add(static_cast<uint64_t>(response.events_size()));
      half_open_missed_.fetch_add(response.missed());
      for (const v1::HostEvent& event : response.events()) {
        const int reason = event.event().half_open().reason();
        if (reason >= 0 && reason < v1::HalfOpenReason_ARRAYSIZE) {
          half_open_by_reason_[reason].fetch_add(1);
        }
      }
    }
    const grpc::Status status = reader->Finish();
    if (status.error_code() != grpc::StatusCode::CANCELLED) follow_ok_.store(false);
  });

  Log(absl::StrFormat("%d streams greeted; warm-up of %s (every host sends a snapshot)", hosts,
                      absl::FormatDuration(snapshot_interval_)));
  simulating = true;
  std::thread simulation([this] { SimulationLoop(); });
  const absl::Duration progress_interval = absl::GetFlag(FLAGS_progress_interval);
  run_start_ = progress_last_time_ = absl::Now();
  progress_cpu_ = SelfCpuSeconds();
  progress_service_ = SampleProcess(service_pid_);
  absl::Time next_progress = absl::Now() + progress_interval;
  auto run_for = [&](absl::Duration how_long) {
    const absl::Time until = absl::Now() + how_long;
    while (absl::Now() < until && error_.empty()) {
      absl::SleepFor(std::min(absl::Milliseconds(100), until - absl::Now()));
      if (std::string failure = first_failure(); !failure.empty()) error_ = failure;
      if (absl::Now() >= next_progress) {
        Progress(absl::Now());
        next_progress += progress_interval;
      }
    }
  };
  run_for(snapshot_interval_ + tick_);

  // The measured window.
  const absl::Time window_start = absl::Now();
  const double sim_cpu_start = SelfCpuSeconds();
  const ProcSample service_start = SampleProcess(service_pid_);
  window_start_ = SumStreams();
  Log(absl::StrFormat("measuring for %s%s", absl::FormatDuration(duration_),
                      saturate ? absl::StrFormat(" (%d hosts saturating)", saturate_hosts) : ""));
  if (saturate) {
    absl::MutexLock lock(&streams_mu_);
    for (auto& stream : streams_) stream->StartFilling();
  }
  run_for(duration_);
  if (saturate) {
    absl::MutexLock lock(&streams_mu_);
    for (auto& stream : streams_) stream->StopFilling();
  }
  window_end_ = SumStreams();
  service_end_ = SampleProcess(service_pid_);
  window_seconds_ = absl::ToDoubleSeconds(absl::Now() - window_start);
  sim_cpu_window_ = SelfCpuSeconds() - sim_cpu_start;
  if (service_pid_ > 0) {
    service_cores_ = (service_end_.cpu_seconds - service_start.cpu_seconds) / window_seconds_;
  }
  if (error_.empty()) {
    Log("measuring scrape time and query latency under load");
    Measure();
  }

  // The end: no more churn, one last snapshot of every host at the same moment, every ack.
  stop_.store(true);
  simulation.join();
  if (error_.empty()) {
    const uint64_t now_ns = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
    {
      absl::MutexLock lock(&streams_mu_);
      for (int h = 0; h < hosts; ++h) {
        OutBatch events = fleet_->TakeEvents(h);
        if (events.events > 0) Deliver(h, std::move(events));
        Deliver(h, fleet_->Snapshot(h, now_ns));
      }
    }
    Log("last snapshots sent; waiting for every ack");
    const bool drained = WaitUntil(
        absl::Now() + absl::GetFlag(FLAGS_drain_timeout),
        [&] {
          absl::MutexLock lock(&streams_mu_);
          return std::all_of(streams_.begin(), streams_.end(),
                             [](auto& s) { return s->drained(); });
        },
        absl::Milliseconds(10));
    if (std::string failure = first_failure(); !failure.empty()) {
      error_ = failure;
    } else if (!drained) {
      error_ = "batches still unacknowledged after --drain_timeout";
    }
  }
  final_ = SumStreams();
  if (error_.empty()) {
    // While checking, hosts go on sending snapshots of the (now still) fleet, as idle agents
    // would, so that no host looks silent (--peer_down_after) however long the checks take.
    rates_ = FleetRates{0, 0, 0, 0};
    stop_.store(false);
    std::thread idle([this] { SimulationLoop(); });
    // The service's housekeeping publishes the pair index's size once a second.
    absl::SleepFor(absl::Milliseconds(2500));
    Log("checking");
    Check();
    stop_.store(true);
    idle.join();
  }
  service_final_ = SampleProcess(service_pid_);
  follow_context.TryCancel();
  follower.join();
  if (!close_all()) {
    Report();
    std::_Exit(1);  // a reactor still owns its stream: do not destroy it under gRPC
  }
  return Report();
}

std::string Run::ReplicasJson() const {
  if (!several_replicas_) return "";
  std::vector<std::string> parts;
  for (const auto& [replica, count] : hosts_by_replica_) {
    parts.push_back(absl::StrFormat("%s:%d", JsonString(replica), count));
  }
  std::string failover;
  if (failover_after_ > absl::ZeroDuration()) {
    std::vector<double> rehome = rehome_seconds_;
    std::sort(rehome.begin(), rehome.end());
    failover = absl::StrFormat(
        "\"replicas_lost\":%d,\"hosts_rehomed\":%d,\"rehome_median_s\":%.3f,"
        "\"rehome_max_s\":%.3f,\"events_lost_with_replicas\":%d,",
        lost_replicas_.size(), rehome.size(), rehome.empty() ? -1 : rehome[rehome.size() / 2],
        rehome.empty() ? -1 : rehome.back(), final_.lost_events);
  }
  return absl::StrCat("\"hosts_by_replica\":{", absl::StrJoin(parts, ","), "},", failover);
}

int Run::Report() {
  const int hosts = shape_.hosts;
  const uint64_t ends = static_cast<uint64_t>(hosts) * shape_.ends_per_host;
  const uint64_t window_events = window_end_.events_acked - window_start_.events_acked;
  const uint64_t window_filler =
      window_end_.filler_events_acked - window_start_.filler_events_acked;
  const double per_s = window_seconds_ > 0 ? 1 / window_seconds_ : 0;
  std::vector<std::string> failures;
  for (const std::string& failure : failures_) failures.push_back(JsonString(failure));
  absl::PrintF(
      "{\"label\":%s,\"target\":%s,\"hosts\":%d,\"ends_per_host\":%d,\"pods_per_host\":%d,"
      "\"snapshot_interval_s\":%.3f,\"flush_interval_s\":%.3f,\"new_per_second\":%.3f,"
      "\"saturate\":%s,\"window_s\":%.3f,"
      "\"events_sent\":%d,\"events_acked\":%d,\"events_acked_by_kind\":%s,\"batches_acked\":%d,"
      "\"snapshots_sent\":%d,\"snapshot_bytes\":%d,"
      "\"window_events_acked\":%d,\"events_per_s\":%.1f,\"saturation_events_per_s\":%.1f,"
      "\"ends\":%d,\"expected_pairs\":%d,\"checked_hosts\":%d,\"checked_ends\":%d,"
      "\"sim_cores\":%.3f,\"sim_lag_max_ms\":%.1f,\"backlog_max_batches\":%d,"
      "\"service_cores\":%.3f,\"service_rss_bytes\":%d,\"service_hwm_bytes\":%d,"
      "\"service_rss_bytes_per_end\":%.1f,\"service_hwm_bytes_per_end\":%.1f,"
      "\"scrape_s\":%.4f,\"scrape_bytes\":%.0f,\"scrape_samples\":%d,"
      "\"query_paired_s\":%.4f,\"query_paired_max_s\":%.4f,\"query_paired_rows\":%d,"
      "\"query_host_s\":%.4f,"
      "\"half_open_events\":%d,%s\"checks_passed\":%s,\"failures\":[%s],\"error\":%s}\n",
      JsonString(absl::GetFlag(FLAGS_label)), JsonString(target_), hosts, shape_.ends_per_host,
      shape_.pods_per_host, absl::ToDoubleSeconds(snapshot_interval_),
      absl::ToDoubleSeconds(flush_interval_), absl::GetFlag(FLAGS_new_per_second),
      absl::GetFlag(FLAGS_saturate) ? "true" : "false", window_seconds_, final_.events_sent,
      final_.events_acked, KindsJson(final_.kinds), final_.batches_acked, snapshots_sent_.load(),
      snapshot_bytes_, window_events, window_events * per_s, window_filler * per_s, ends, ends / 2,
      checked_hosts_, ends_last_, sim_cpu_window_ * per_s, lag_max_ns_.load() / 1e6, backlog_max_,
      service_cores_, service_end_.rss_bytes, service_final_.hwm_bytes,
      static_cast<double>(service_end_.rss_bytes) / ends,
      static_cast<double>(service_final_.hwm_bytes) / ends, scrape_median_, scrape_bytes_,
      scrape_series_, query_median_, query_max_, query_rows_, query_host_median_,
      half_open_seen_.load(), ReplicasJson(),
      error_.empty() && failures_.empty() ? "true" : "false", absl::StrJoin(failures, ","),
      error_.empty() ? "null" : JsonString(error_));
  std::fflush(stdout);
  Log(absl::StrFormat(
      "%d hosts x %d ends: %d events acknowledged of %d sent; in the %.0f s window %.0f events/s "
      "(saturating batches %.0f/s); simulator %.2f cores",
      hosts, shape_.ends_per_host, final_.events_acked, final_.events_sent, window_seconds_,
      window_events * per_s, window_filler * per_s, sim_cpu_window_ * per_s));
  if (!rehome_seconds_.empty()) {
    Log(absl::StrFormat(
        "failover: %d replica(s) lost with %d events they had acknowledged; %d hosts rehomed, "
        "the last %.2f s after its stream broke",
        lost_replicas_.size(), final_.lost_events, rehome_seconds_.size(),
        *std::max_element(rehome_seconds_.begin(), rehome_seconds_.end())));
  }
  if (service_pid_ > 0) {
    Log(absl::StrFormat("service: %.2f cores, RSS %.0f MiB (%.0f bytes per end), peak %.0f MiB",
                        service_cores_, service_end_.rss_bytes / 1048576.0,
                        static_cast<double>(service_end_.rss_bytes) / ends,
                        service_final_.hwm_bytes / 1048576.0));
  }
  Log(absl::StrFormat(
      "scrape %.3f s (%.1f MB, %d samples); ListConnections(host, paired) %.3f s (max %.3f s, "
      "%d rows) under load; ListConnections(host) %.4f s after it",
      scrape_median_, scrape_bytes_ / 1e6, scrape_series_, query_median_, query_max_, query_rows_,
      query_host_median_));
  if (!error_.empty()) {
    Log(absl::StrCat("ERROR: ", error_));
    return 1;
  }
  if (!failures_.empty()) {
    Log(absl::StrFormat("%d checks FAILED", failures_.size()));
    return 1;
  }
  Log(absl::StrFormat("all checks passed (%d hosts' listings checked end by end)", checked_hosts_));
  return 0;
}

}  // namespace
}  // namespace tcpscope::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "A fleet of simulated agents against tcpscope-service: load, cost and exactness checks.\n"
      "Usage: tcpscope-fleet-sim --target=HOST:PORT [--hosts=100] [--ends_per_host=1000] "
      "[--duration=60s] [--service_pid=PID] [--metrics_url=URL] [--saturate]");
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "fleet_sim: unexpected argument %s\n", positional[1]);
    return 2;
  }
  // Debian's Abseil checks every lock order (GraphCycles), a cost of its own under thousands of
  // streams' mutexes: the simulator's time belongs to the load.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  tcpscope::bench::Run run;
  return run.Main();
}
