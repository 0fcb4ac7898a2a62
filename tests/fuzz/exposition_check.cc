// Exposition rules for the ingest fuzzer, written out from SPEC.md's metric table, README's
// workload and port families and the service's own health series.
#include "tests/fuzz/exposition_check.h"

#include <cmath>
#include <cstdlib>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/names.h"

namespace tcpscope::fuzz {
namespace {

using Values = std::set<std::string, std::less<>>;

const Values kAnyValue = {};  // marker: checked for characters only
// Markers: a workload name (empty, or what ValidateName allows: "other" is one) and a port
// (0 to 65535, or "other").
const Values kWorkloadName = {};
const Values kPort = {};

// "unknown": an end whose role no source knows (events.proto: reported, never guessed).
const Values kRoles = {"client", "server", "unknown"};
const Values kFailureReasons = {"refused", "timeout", "reset", "unreachable", "other"};
const Values kInitiators = {"local", "remote", "simultaneous", "unknown"};
const Values kCloseReasons = {"fin",
                              "reset_sent",
                              "reset_received",
                              "keepalive_timeout",
                              "keepalive_reset",
                              "retransmit_timeout",
                              "other"};
const Values kStates = {"established", "syn_sent",  "syn_recv", "fin_wait1",
                        "fin_wait2",   "time_wait", "close",    "close_wait",
                        "last_ack",    "listen",    "closing"};
const Values kKeepalive = {"on", "off"};
const Values kAtRisk = {"idle_no_keepalive", "keepalive_probing", "close_wait_stale"};
const Values kHalfOpen = {"peer_closed", "peer_rebooted", "peer_host_down"};
const Values kWorkloadStates = {"established", "syn_sent", "syn_recv", "close_wait", "time_wait"};
const Values kStages = {"kernel", "agent"};
const Values kBatchResults = {"applied", "duplicate"};
const Values kIgnored = {"other_ring", "homed_here", "stale"};

struct Family {
  absl::string_view type;
  std::map<absl::string_view, const Values*> labels;
};

// host, namespace, pod, container and `extra`.
std::map<absl::string_view, const Values*> WorkloadLabels(
    std::map<absl::string_view, const Values*> extra) {
  extra.emplace("host", &kAnyValue);
  extra.emplace("namespace", &kWorkloadName);
  extra.emplace("pod", &kWorkloadName);
  extra.emplace("container", &kWorkloadName);
  return extra;
}

bool PortValue(absl::string_view value) {
  if (value == "other") return true;
  uint32_t port = 0;
  return !value.empty() && value.size() <= 5 && absl::SimpleAtoi(value, &port) && port <= 65535 &&
         absl::StrCat(port) == value;
}

const std::map<absl::string_view, Family>& Families() {
  static const auto* families = new std::map<absl::string_view, Family>{
      {"tcpscope_handshakes_total", {"counter", {{"host", &kAnyValue}, {"role", &kRoles}}}},
      {"tcpscope_handshake_failures_total",
       {"counter", {{"host", &kAnyValue}, {"reason", &kFailureReasons}}}},
      {"tcpscope_handshake_duration_seconds",
       {"histogram", {{"host", &kAnyValue}, {"role", &kRoles}}}},
      {"tcpscope_closes_total",
       {"counter",
        {{"host", &kAnyValue},
         {"role", &kRoles},
         {"initiator", &kInitiators},
         {"reason", &kCloseReasons}}}},
      {"tcpscope_connection_lifetime_seconds",
       {"histogram", {{"host", &kAnyValue}, {"role", &kRoles}}}},
      {"tcpscope_keepalive_probes_total", {"counter", {{"host", &kAnyValue}}}},
      {"tcpscope_keepalive_timeouts_total", {"counter", {{"host", &kAnyValue}, {"role", &kRoles}}}},
      {"tcpscope_connections", {"gauge", {{"host", &kAnyValue}, {"state", &kStates}}}},
      {"tcpscope_connections_keepalive",
       {"gauge", {{"host", &kAnyValue}, {"keepalive", &kKeepalive}}}},
      {"tcpscope_connections_at_risk", {"gauge", {{"host", &kAnyValue}, {"reason", &kAtRisk}}}},
      {"tcpscope_connections_half_open", {"gauge", {{"host", &kAnyValue}, {"reason", &kHalfOpen}}}},
      {"tcpscope_half_open_detected_total",
       {"counter", {{"host", &kAnyValue}, {"reason", &kHalfOpen}}}},
      {"tcpscope_workload_connections", {"gauge", WorkloadLabels({{"state", &kWorkloadStates}})}},
      {"tcpscope_workload_connections_at_risk", {"gauge", WorkloadLabels({{"reason", &kAtRisk}})}},
      {"tcpscope_workload_connections_half_open",
       {"gauge", WorkloadLabels({{"reason", &kHalfOpen}})}},
      {"tcpscope_workload_handshake_failures_total",
       {"counter", WorkloadLabels({{"reason", &kFailureReasons}})}},
      {"tcpscope_workload_keepalive_timeouts_total", {"counter", WorkloadLabels({})}},
      {"tcpscope_workload_closes_total", {"counter", WorkloadLabels({{"reason", &kCloseReasons}})}},
      {"tcpscope_port_handshake_failures_total",
       {"counter", {{"host", &kAnyValue}, {"port", &kPort}, {"reason", &kFailureReasons}}}},
      {"tcpscope_port_closes_total",
       {"counter", {{"host", &kAnyValue}, {"port", &kPort}, {"reason", &kCloseReasons}}}},
      {"tcpscope_agent_up", {"gauge", {{"host", &kAnyValue}}}},
      {"tcpscope_agent_events_total", {"counter", {{"host", &kAnyValue}}}},
      {"tcpscope_agent_events_lost_total",
       {"counter", {{"host", &kAnyValue}, {"stage", &kStages}}}},
      {"tcpscope_service_ingest_streams", {"gauge", {}}},
      {"tcpscope_service_batches_total", {"counter", {{"result", &kBatchResults}}}},
      {"tcpscope_service_rejected_total", {"counter", {{"reason", &kAnyValue}}}},
      {"tcpscope_service_event_watchers", {"gauge", {}}},
      {"tcpscope_service_watch_events_missed_total", {"counter", {}}},
      {"tcpscope_service_hosts", {"gauge", {}}},
      {"tcpscope_service_hosts_expired_total", {"counter", {}}},
      {"tcpscope_service_event_history_events", {"gauge", {}}},
      {"tcpscope_service_pair_index_entries", {"gauge", {}}},
      {"tcpscope_service_pair_index_ends", {"gauge", {}}},
      {"tcpscope_service_replica_forwarded_ends_total", {"counter", {}}},
      {"tcpscope_service_replica_received_ends_total", {"counter", {}}},
      {"tcpscope_service_replica_remote_hosts", {"gauge", {}}},
      {"tcpscope_service_replica_fragments_ignored_total", {"counter", {{"reason", &kIgnored}}}},
  };
  return *families;
}

// What a host label may hold (ValidateHostName) and every fixed value is made of: nothing
// that the text format would have to escape.
bool PlainValue(absl::string_view value) {
  for (char c : value) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-' &&
        c != '+') {
      return false;
    }
  }
  return true;
}

bool MetricName(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != ':') return false;
  }
  return !absl::ascii_isdigit(static_cast<unsigned char>(name[0]));
}

absl::Status Bad(size_t line_number, absl::string_view line, absl::string_view what) {
  return absl::InternalError(
      absl::StrCat("exposition line ", line_number, " (", line, "): ", what));
}

// Reads `name{k="v",...}` or `name` off the front of `rest`.
absl::Status ReadSeries(absl::string_view& rest, Sample* sample) {
  const size_t name_end = rest.find_first_of("{ ");
  if (name_end == absl::string_view::npos) return absl::InternalError("no value");
  sample->name = std::string(rest.substr(0, name_end));
  if (!MetricName(sample->name)) return absl::InternalError("bad metric name");
  rest.remove_prefix(name_end);
  if (rest.front() != '{') return absl::OkStatus();
  rest.remove_prefix(1);
  while (true) {
    const size_t eq = rest.find('=');
    if (eq == absl::string_view::npos) return absl::InternalError("label without '='");
    const std::string label(rest.substr(0, eq));
    if (!MetricName(label)) return absl::InternalError("bad label name");
    rest.remove_prefix(eq + 1);
    if (rest.empty() || rest.front() != '"') return absl::InternalError("label value unquoted");
    rest.remove_prefix(1);
    const size_t quote = rest.find('"');
    if (quote == absl::string_view::npos) return absl::InternalError("label value unterminated");
    const absl::string_view value = rest.substr(0, quote);
    if (!PlainValue(value)) {
      return absl::InternalError(absl::StrCat("label ", label, " has a value that needs escaping"));
    }
    if (!sample->labels.emplace(label, std::string(value)).second) {
      return absl::InternalError(absl::StrCat("label ", label, " twice"));
    }
    rest.remove_prefix(quote + 1);
    if (rest.empty()) return absl::InternalError("series unterminated");
    if (rest.front() == '}') {
      rest.remove_prefix(1);
      return absl::OkStatus();
    }
    if (rest.front() != ',') return absl::InternalError("expected ',' or '}' after a label");
    rest.remove_prefix(1);
  }
}

// The family a sample belongs to, and whether it is a histogram bucket.
const Family* FamilyOf(const std::string& name,
                       const std::map<std::string, std::string, std::less<>>& types, bool* bucket) {
  *bucket = false;
  const auto& families = Families();
  absl::string_view base = name;
  for (absl::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (absl::EndsWith(name, suffix)) {
      const absl::string_view stripped = base.substr(0, base.size() - suffix.size());
      auto it = families.find(stripped);
      if (it != families.end() && it->second.type == "histogram") {
        *bucket = suffix == "_bucket";
        base = stripped;
        break;
      }
    }
  }
  auto it = families.find(base);
  if (it == families.end()) return nullptr;
  auto type = types.find(base);
  if (type == types.end() || type->second != it->second.type) return nullptr;
  return &it->second;
}

}  // namespace

absl::StatusOr<std::vector<Sample>> ReadExposition(absl::string_view text) {
  std::vector<Sample> samples;
  std::map<std::string, std::string, std::less<>> types;
  if (!text.empty() && text.back() != '\n') return absl::InternalError("no final newline");
  size_t line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (line.empty()) continue;
    if (absl::StartsWith(line, "# HELP ")) continue;
    if (absl::StartsWith(line, "# TYPE ")) {
      std::vector<std::string> words = absl::StrSplit(line.substr(7), ' ');
      if (words.size() != 2 || !MetricName(words[0])) return Bad(line_number, line, "bad TYPE");
      types[words[0]] = words[1];
      continue;
    }
    if (line.front() == '#') return Bad(line_number, line, "unknown comment");
    Sample sample;
    absl::string_view rest = line;
    if (absl::Status s = ReadSeries(rest, &sample); !s.ok()) {
      return Bad(line_number, line, s.message());
    }
    if (rest.size() < 2 || rest.front() != ' ') return Bad(line_number, line, "no value");
    rest.remove_prefix(1);
    const std::string value(rest);
    char* end = nullptr;
    sample.value = std::strtod(value.c_str(), &end);
    if (end != value.c_str() + value.size()) return Bad(line_number, line, "bad value");
    if (!std::isfinite(sample.value) || sample.value < 0) {
      return Bad(line_number, line, "value not finite and non-negative");
    }

    bool bucket = false;
    const Family* family = FamilyOf(sample.name, types, &bucket);
    if (family == nullptr) return Bad(line_number, line, "series of no known family");
    size_t expected = family->labels.size() + (bucket ? 1 : 0);
    if (sample.labels.size() != expected) return Bad(line_number, line, "wrong label set");
    for (const auto& [label, value] : sample.labels) {
      if (bucket && label == "le") {
        if (value != "+Inf" && std::strtod(value.c_str(), nullptr) <= 0) {
          return Bad(line_number, line, "bad bucket bound");
        }
        continue;
      }
      auto allowed = family->labels.find(label);
      if (allowed == family->labels.end()) return Bad(line_number, line, "unexpected label");
      if (allowed->second == &kWorkloadName) {
        if (!value.empty() && !ValidateName("workload name", value).ok()) {
          return Bad(line_number, line, absl::StrCat("label ", label, " is not a workload name"));
        }
        continue;
      }
      if (allowed->second == &kPort) {
        if (!PortValue(value)) return Bad(line_number, line, "label port is not a port");
        continue;
      }
      if (allowed->second != &kAnyValue && !allowed->second->contains(value)) {
        return Bad(line_number, line, absl::StrCat("label ", label, " outside its set"));
      }
      if (value.empty()) return Bad(line_number, line, "empty label value");
    }
    samples.push_back(std::move(sample));
  }
  return samples;
}

}  // namespace tcpscope::fuzz
