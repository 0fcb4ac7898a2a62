// libFuzzer target for the service's ingest path: raw bytes -> AgentMessage -> ValidateHello /
// ValidateBatch -> Aggregator, FleetQueries (real ServiceMetrics and EventLog), the way
// IngestService drives them for each stream, then the /metrics exposition and the Observer API's
// reads. Input format: ingest_input.h. Beyond "no crash, no sanitizer report", it checks the
// promises the service makes about hostile input: nothing refused or resent changes the metrics, a
// batch is counted once, every series is well formed with bounded labels, an expired host leaves no
// series.
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>

#include "absl/time/time.h"
#include "common/names.h"
#include "google/protobuf/stubs/logging.h"
#include "prometheus/text_serializer.h"
#include "service/aggregator.h"
#include "service/batch_validator.h"
#include "service/event_log.h"
#include "service/fleet_queries.h"
#include "service/query_filters.h"
#include "service/service_metrics.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/observer.pb.h"
#include "tests/fuzz/exposition_check.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/ingest_input.h"

namespace tcpscope::fuzz {
namespace {

using service::Aggregator;
using service::AggregatorOptions;
using service::EventLog;
using service::HostState;
using service::ServiceMetrics;

// The seeds' clock: 2027-01-15. Event times must lie within a day of it to be accepted.
const absl::Time kStart = absl::FromUnixSeconds(1800000000);
constexpr size_t kHistoryEvents = 64;  // small, so the history evicts
constexpr int kMaxPods = 3;            // small, so pod="other" and port="other" fill
constexpr int kMaxPorts = 3;

// What the service must have done, kept independently of it.
struct HostModel {
  bool connected = false;
  uint64_t instance_id = 0;
  uint64_t last_applied_seq = 0;
  uint64_t events = 0;
};

// One agent stream; once ended (refused or closed), the next message on it opens a new one.
struct Stream {
  std::shared_ptr<HostState> host;  // null until a hello was accepted
  std::string host_name;
};

class IngestFuzz {
 public:
  IngestFuzz() : log_(kHistoryEvents), aggregator_(&metrics_, &log_, Options()) {}

  void Run(const std::vector<Step>& steps) {
    for (const Step& step : steps) {
      switch (step.op) {
        case Op::kMessage:
          Message(streams_[step.stream], step.payload);
          break;
        case Op::kEndStream:
          End(streams_[step.stream]);
          break;
        case Op::kAdvanceClock:
          now_ += absl::Seconds(30 * step.half_minutes);
          Expire();
          break;
        case Op::kQuery:
          Query(step.payload);
          break;
      }
      CheckState();
    }
    for (Stream& stream : streams_) End(stream);
    CheckState();
  }

 private:
  // INGEST_FUZZER_TRACE=1 tells what each step did, for reading a crash input.
  __attribute__((format(printf, 1, 2))) static void Trace(const char* format, ...) {
    static const bool enabled = std::getenv("INGEST_FUZZER_TRACE") != nullptr;
    if (!enabled) return;
    va_list args;
    va_start(args, format);
    std::vfprintf(stderr, format, args);
    va_end(args);
    std::fputc('\n', stderr);
  }

  static AggregatorOptions Options() {
    AggregatorOptions options;
    options.host_expiry = absl::Minutes(10);
    options.max_pods_per_host = kMaxPods;
    options.max_ports_per_host = kMaxPorts;
    return options;
  }

  std::string Exposition() {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, metrics_.Collect());
    return out.str();
  }

  // IngestService::StreamReactor::Handle, without gRPC: a refusal finishes the stream.
  void Message(Stream& stream, std::string_view payload) {
    v1::AgentMessage message;
    if (!message.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      Trace("unparsable message");
      End(stream);  // gRPC fails the stream on a message it cannot parse
      return;
    }
    const std::string before = Exposition();
    absl::Status valid;
    if (stream.host == nullptr) {
      valid = message.has_hello() ? service::ValidateHello(message.hello())
                                  : absl::FailedPreconditionError("no hello");
    } else {
      valid = message.has_batch() ? service::ValidateBatch(message.batch(), now_)
                                  : absl::FailedPreconditionError("no batch");
    }
    if (!valid.ok()) {
      Trace("refused: %s", valid.ToString().c_str());
      FUZZ_CHECK(Exposition() == before, "a refused message changed the metrics");
      End(stream);
      return;
    }
    if (stream.host == nullptr) {
      Connect(stream, message.hello(), before);
    } else {
      Apply(stream, message, before);
    }
  }

  void Connect(Stream& stream, const v1::Hello& hello, const std::string& before) {
    FUZZ_CHECK(ValidateHostName(hello.host_name()).ok(), "validated hello has a bad host name");
    uint64_t last_applied = ~0ULL;
    absl::StatusOr<std::shared_ptr<HostState>> host =
        aggregator_.Connect(hello, now_, &last_applied);
    auto it = model_.find(hello.host_name());
    const bool known = it != model_.end();
    Trace("hello %s instance %llu: %s", hello.host_name().c_str(),
          static_cast<unsigned long long>(hello.instance_id()), host.status().ToString().c_str());
    if (!host.ok()) {
      FUZZ_CHECK(host.status().code() == absl::StatusCode::kAlreadyExists,
                 "Connect refused with %s", host.status().ToString().c_str());
      FUZZ_CHECK(known && it->second.connected, "Connect refused a host that is not connected");
      FUZZ_CHECK(Exposition() == before, "a refused Connect changed the metrics");
      End(stream);
      return;
    }
    FUZZ_CHECK(!known || !it->second.connected, "two streams hold host %s",
               hello.host_name().c_str());
    HostModel& model = model_[hello.host_name()];
    if (model.instance_id != hello.instance_id()) model.last_applied_seq = 0;
    model.instance_id = hello.instance_id();
    model.connected = true;
    FUZZ_CHECK(last_applied == model.last_applied_seq, "hello-ack says %llu, expected %llu",
               static_cast<unsigned long long>(last_applied),
               static_cast<unsigned long long>(model.last_applied_seq));
    stream.host = *std::move(host);
    stream.host_name = hello.host_name();
  }

  void Apply(Stream& stream, v1::AgentMessage& message, const std::string& before) {
    HostModel& model = model_[stream.host_name];
    auto batch = std::make_shared<v1::Batch>();
    batch->Swap(message.mutable_batch());
    const uint64_t seq = batch->seq();
    const uint64_t events = static_cast<uint64_t>(batch->events_size());
    const bool applied = aggregator_.Apply(*stream.host, std::move(batch), now_);
    Trace("batch %llu of %s: %s", static_cast<unsigned long long>(seq), stream.host_name.c_str(),
          applied ? "applied" : "resent");
    FUZZ_CHECK(applied == (seq > model.last_applied_seq), "batch %llu after %llu: applied=%d",
               static_cast<unsigned long long>(seq),
               static_cast<unsigned long long>(model.last_applied_seq), applied);
    if (!applied) {
      FUZZ_CHECK(Exposition() == before, "a resent batch changed the metrics");
      return;
    }
    model.last_applied_seq = seq;
    model.events += events;
  }

  void End(Stream& stream) {
    if (stream.host != nullptr) {
      aggregator_.Disconnect(*stream.host, now_);
      model_[stream.host_name].connected = false;
    }
    stream = Stream();
  }

  void Expire() {
    for (const std::string& host : aggregator_.ExpireHosts(now_)) {
      Trace("expired %s", host.c_str());
      auto it = model_.find(host);
      FUZZ_CHECK(it != model_.end() && !it->second.connected, "expired %s, which is %s",
                 host.c_str(), it == model_.end() ? "unknown" : "connected");
      model_.erase(it);
    }
    aggregator_.CheckSilentHosts(now_);  // may find half-open ends: service-made events
  }

  void Query(std::string_view payload) {
    v1::ListConnectionsRequest request;
    if (!request.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return;
    if (!service::ConnectionMatcher::Create(request).ok()) return;
    const absl::StatusOr<service::WorkloadFilter> workload = service::WorkloadFilter::Create(
        "", request.pod_namespace(), request.pod(), request.container(), request.process());
    FUZZ_CHECK(workload.ok(), "a valid request has invalid workload filters");
    const v1::ListConnectionsResponse response = queries_.Connections(request, now_);
    Trace("query: %d connections", response.connections_size());
    for (const v1::HostConnection& entry : response.connections()) {
      auto it = model_.find(entry.host());
      FUZZ_CHECK(it != model_.end() && it->second.connected,
                 "a connection of %s, which has no snapshot", entry.host().c_str());
      // A pair is listed once, from either end: the host filter takes either.
      FUZZ_CHECK(request.host().empty() || entry.host() == request.host() ||
                     (request.paired() && entry.peer().host() == request.host()),
                 "host filter let %s through", entry.host().c_str());
      FUZZ_CHECK(!request.paired() || (entry.pairing() == v1::PAIRING_PAIRED && entry.has_peer()),
                 "paired listing has an entry of %s that is not paired", entry.host().c_str());
      // Every paired end names its peer, in every listing.
      FUZZ_CHECK(entry.pairing() != v1::PAIRING_PAIRED || entry.has_peer(),
                 "a paired end of %s without its peer", entry.host().c_str());
      // The workload filters hold for the end (or, paired, for either end still there).
      const bool own = workload->Matches(entry.connection().origin());
      const bool peer = request.paired() && entry.peer().present() &&
                        workload->Matches(entry.peer().connection().origin());
      FUZZ_CHECK(own || peer, "workload filters let an end of %s through", entry.host().c_str());
    }
    (void)queries_.Summary(request.host());
  }

  // The service's every view agrees with the model and the exposition follows the rules.
  void CheckState() {
    const std::string exposition = Exposition();
    absl::StatusOr<std::vector<Sample>> samples = ReadExposition(exposition);
    FUZZ_CHECK(samples.ok(), "%s", samples.status().ToString().c_str());
    std::map<std::string, double> events_metric;
    // Per host: the pods (or containers outside Kubernetes) and ports with series of their own.
    std::map<std::string, std::set<std::string>> pods;
    std::map<std::string, std::set<std::string>> ports;
    for (const Sample& sample : *samples) {
      auto host = sample.labels.find("host");
      if (host == sample.labels.end()) continue;
      if (auto pod = sample.labels.find("pod"); pod != sample.labels.end()) {
        const std::string& ns = sample.labels.at("namespace");
        const std::string& container = sample.labels.at("container");
        if (ns.empty() && pod->second == "other") {
          FUZZ_CHECK(container.empty(), "the other bucket has container %s", container.c_str());
        } else {
          FUZZ_CHECK(ns.empty() == pod->second.empty(), "namespace %s with pod %s", ns.c_str(),
                     pod->second.c_str());
          FUZZ_CHECK(!container.empty() || !pod->second.empty(), "a workload without a name");
          pods[host->second].insert(ns + "/" + pod->second + "/" +
                                    (pod->second.empty() ? container : ""));
        }
      }
      if (auto port = sample.labels.find("port"); port != sample.labels.end()) {
        if (port->second != "other") ports[host->second].insert(port->second);
      }
      FUZZ_CHECK(model_.contains(host->second), "series %s of unknown or expired host %s",
                 sample.name.c_str(), host->second.c_str());
      if (sample.name == "tcpscope_agent_events_total") events_metric[host->second] = sample.value;
      if (sample.name == "tcpscope_agent_up") {
        FUZZ_CHECK(sample.value == (model_[host->second].connected ? 1 : 0), "agent_up of %s",
                   host->second.c_str());
      }
    }

    for (const auto& [host, set] : pods) {
      FUZZ_CHECK(set.size() <= kMaxPods, "%zu pods of %s have series", set.size(), host.c_str());
    }
    for (const auto& [host, set] : ports) {
      FUZZ_CHECK(set.size() <= kMaxPorts, "%zu ports of %s have series", set.size(), host.c_str());
    }

    const std::vector<v1::Agent> agents = queries_.Agents();
    FUZZ_CHECK(agents.size() == model_.size(), "%zu agents listed, %zu known", agents.size(),
               model_.size());
    for (const v1::Agent& agent : agents) {
      auto it = model_.find(agent.host_name());
      FUZZ_CHECK(it != model_.end(), "agent %s unknown", agent.host_name().c_str());
      FUZZ_CHECK(agent.connected() == it->second.connected, "agent %s connected=%d",
                 agent.host_name().c_str(), agent.connected());
      FUZZ_CHECK(agent.events() == it->second.events, "agent %s has %llu events, expected %llu",
                 agent.host_name().c_str(), static_cast<unsigned long long>(agent.events()),
                 static_cast<unsigned long long>(it->second.events));
      FUZZ_CHECK(events_metric[agent.host_name()] == static_cast<double>(it->second.events),
                 "tcpscope_agent_events_total of %s", agent.host_name().c_str());
    }

    const v1::SummaryResponse summary = queries_.Summary("");
    uint64_t fleet_events = 0;
    for (const auto& [host, model] : model_) fleet_events += model.events;
    FUZZ_CHECK(summary.fleet().events() == fleet_events, "fleet summary has %llu events, not %llu",
               static_cast<unsigned long long>(summary.fleet().events()),
               static_cast<unsigned long long>(fleet_events));
    FUZZ_CHECK(summary.hosts_size() == static_cast<int>(model_.size()), "summary hosts");

    v1::ListConnectionsRequest all;
    const v1::ListConnectionsResponse connections = queries_.Connections(all, now_);
    for (const v1::HostConnection& entry : connections.connections()) {
      auto it = model_.find(entry.host());
      FUZZ_CHECK(it != model_.end() && it->second.connected, "connections of disconnected %s",
                 entry.host().c_str());
    }

    uint64_t history_events = 0;
    for (const auto& published : log_.Subscribe(nullptr).batches) {
      history_events += static_cast<uint64_t>(published->batch->events_size());
    }
    FUZZ_CHECK(history_events == log_.stats().events, "history holds %llu events, stats say %llu",
               static_cast<unsigned long long>(history_events),
               static_cast<unsigned long long>(log_.stats().events));
  }

  ServiceMetrics metrics_;
  EventLog log_;
  Aggregator aggregator_;
  service::FleetQueries queries_{&aggregator_};
  absl::Time now_ = kStart;
  Stream streams_[2];
  std::map<std::string, HostModel> model_;
};

}  // namespace
}  // namespace tcpscope::fuzz

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  // Protobuf logs every string field that is not UTF-8; the fuzzer makes thousands a second.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tcpscope::fuzz::IngestFuzz().Run(tcpscope::fuzz::ReadSteps(data, size));
  return 0;
}
