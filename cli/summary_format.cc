// Blocks of "name  value" lines rather than one wide table: the breakdowns by reason have as
// many entries as the enums, and they would not fit in table cells.
#include "cli/summary_format.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/humanize.h"
#include "cli/table.h"

namespace tcpscope::cli {
namespace {

using Counts = google::protobuf::RepeatedPtrField<v1::Count>;

uint64_t Total(const Counts& counts) {
  uint64_t total = 0;
  for (const v1::Count& count : counts) total += count.value();
  return total;
}

// "refused 3, timeout 1": entries of zero are left out.
std::string Breakdown(const Counts& counts) {
  std::vector<std::string> parts;
  for (const v1::Count& count : counts) {
    if (count.value() > 0) parts.push_back(absl::StrCat(count.name(), " ", count.value()));
  }
  return absl::StrJoin(parts, ", ");
}

// "4: refused 3, timeout 1", or "0".
std::string TotalAndBreakdown(const Counts& counts) {
  const uint64_t total = Total(counts);
  if (total == 0) return "0";
  return absl::StrCat(total, ": ", Breakdown(counts));
}

void PrintBlock(const std::string& title, const v1::HostSummary& summary, std::ostream& out,
                std::vector<std::string> extra_row) {
  out << title << "\n";
  std::vector<std::vector<std::string>> rows;
  rows.push_back(
      {"  agents", absl::StrCat(summary.agents(), ", ", summary.agents_connected(), " connected")});
  rows.push_back({"  events", absl::StrCat(summary.events())});
  rows.push_back({"  lost", absl::StrCat("kernel ", summary.losses().kernel(), ", agent ",
                                         summary.losses().agent())});
  rows.push_back({"  handshakes", absl::StrCat(summary.handshakes())});
  rows.push_back({"  handshake failures", TotalAndBreakdown(summary.handshake_failures())});
  const uint64_t closes = Total(summary.closes_by_reason());
  std::string closes_text = absl::StrCat(closes, ": short (<1s) ", summary.closes_short(),
                                         ", long ", summary.closes_long());
  if (closes > summary.closes_short() + summary.closes_long()) {
    absl::StrAppend(&closes_text, ", lifetime unknown ",
                    closes - summary.closes_short() - summary.closes_long());
  }
  rows.push_back({"  closes", closes == 0 ? "0" : closes_text});
  if (closes > 0) {
    rows.push_back({"    by initiator", Breakdown(summary.closes_by_initiator())});
    rows.push_back({"    by reason", Breakdown(summary.closes_by_reason())});
  }
  rows.push_back({"  keepalive probes", absl::StrCat(summary.keepalive_probes())});
  rows.push_back({"  keepalive timeouts", absl::StrCat(summary.keepalive_timeouts())});
  rows.push_back({"  connections", TotalAndBreakdown(summary.connections_by_state())});
  rows.push_back({"  established keepalive",
                  absl::StrCat("on ", summary.keepalive_on(), ", off ", summary.keepalive_off())});
  rows.push_back({"  at risk", TotalAndBreakdown(summary.at_risk())});
  rows.push_back({"  half-open", TotalAndBreakdown(summary.half_open())});
  if (!extra_row.empty()) rows.push_back(std::move(extra_row));
  Table table(rows.front());  // a table without a header: the first row takes its place
  for (size_t i = 1; i < rows.size(); ++i) table.AddRow(std::move(rows[i]));
  table.Print(out);
}

}  // namespace

void PrintSummary(const v1::SummaryResponse& response, bool fleet, absl::TimeZone zone,
                  std::ostream& out) {
  bool first = true;
  if (fleet) {
    std::vector<std::string> history = {"  history",
                                        absl::StrCat(response.history_events(), " events")};
    if (response.history_oldest_unix_ns() != 0) {
      absl::StrAppend(&history[1], ", oldest ", EventTime(response.history_oldest_unix_ns(), zone));
    }
    PrintBlock(absl::StrCat("FLEET (", response.hosts_size(),
                            response.hosts_size() == 1 ? " host)" : " hosts)"),
               response.fleet(), out, std::move(history));
    first = false;
  }
  for (const v1::HostSummary& host : response.hosts()) {
    if (!first) out << "\n";
    first = false;
    PrintBlock(absl::StrCat("HOST ", host.host()), host, out, {});
  }
}

}  // namespace tcpscope::cli
