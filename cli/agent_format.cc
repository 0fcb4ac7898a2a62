// One row per agent host. Losses keep their stages apart: they have different causes.
#include "cli/agent_format.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "cli/humanize.h"
#include "common/tcp_names.h"

namespace tcpscope::cli {
namespace {

// "-" for an agent that does not report it (older than the field, or nothing received yet).
std::string HealthName(v1::SourceState state) {
  switch (state) {
    case v1::SOURCE_STATE_HEALTHY:
      return "ok";
    case v1::SOURCE_STATE_EVENTS_FAILED:
      return "events failed";
    default:
      return "-";
  }
}

}  // namespace

Table AgentsTable(const v1::ListAgentsResponse& response, absl::Time now) {
  Table table({"HOST", "STATUS", "UP", "LAST SEEN", "SOURCE", "HEALTH", "VERSION", "EVENTS",
               "LOST KERNEL", "LOST AGENT", "CONNECTIONS", "AT RISK", "HALF-OPEN"});
  for (const v1::Agent& agent : response.agents()) {
    const v1::LossCounters& losses = agent.losses();
    table.AddRow(
        {agent.host_name(), agent.connected() ? "connected" : "disconnected",
         agent.connected() ? Age(agent.connected_since_unix_ns(), now) : "-",
         agent.last_seen_unix_ns() == 0 ? "-"
                                        : absl::StrCat(Age(agent.last_seen_unix_ns(), now), " ago"),
         std::string(SourceKindName(agent.source())), HealthName(agent.source_health().state()),
         agent.agent_version().empty() ? "-" : agent.agent_version(), absl::StrCat(agent.events()),
         absl::StrCat(losses.kernel()), absl::StrCat(losses.agent()),
         absl::StrCat(agent.connections()), absl::StrCat(agent.at_risk()),
         absl::StrCat(agent.half_open())});
  }
  return table;
}

}  // namespace tcpscope::cli
