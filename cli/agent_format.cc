// One row per agent host. Losses keep their three stages apart: they have different causes.
#include "cli/agent_format.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "cli/humanize.h"
#include "common/tcp_names.h"

namespace tcpscope::cli {

Table AgentsTable(const v1::ListAgentsResponse& response, absl::Time now) {
  Table table({"HOST", "STATUS", "UP", "LAST SEEN", "SOURCE", "VERSION", "EVENTS", "LOST KERNEL",
               "LOST AGENT", "LOST TRANSPORT", "CONNECTIONS", "AT RISK", "HALF-OPEN"});
  for (const v1::Agent& agent : response.agents()) {
    const v1::LossCounters& losses = agent.losses();
    table.AddRow(
        {agent.host_name(), agent.connected() ? "connected" : "disconnected",
         agent.connected() ? Age(agent.connected_since_unix_ns(), now) : "-",
         agent.last_seen_unix_ns() == 0 ? "-"
                                        : absl::StrCat(Age(agent.last_seen_unix_ns(), now), " ago"),
         std::string(SourceKindName(agent.source())),
         agent.agent_version().empty() ? "-" : agent.agent_version(), absl::StrCat(agent.events()),
         absl::StrCat(losses.kernel()), absl::StrCat(losses.agent()),
         absl::StrCat(losses.transport()), absl::StrCat(agent.connections()),
         absl::StrCat(agent.at_risk()), absl::StrCat(agent.half_open())});
  }
  return table;
}

}  // namespace tcpscope::cli
