// Which replica of the service tier the agent streams to (its home), and why it moves: the home
// is the first replica of the rendezvous ranking of the host name (common/rendezvous.h) that the
// agent can reach, so every agent of a fleet spreads over the replicas the same way and moves
// only when its home goes away, or back when a better-ranked replica returns. This class keeps
// the list, the ranking and the home, and counts and logs every move; the shipper decides when
// to move (it owns the connections and their timing).
#pragma once

#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "agent/agent_metrics.h"
#include "common/replica_addresses.h"

namespace tcpscope::agent {

enum class HomeChange {
  kFailover,  // the home was unreachable past the grace
  kReturn,    // a better-ranked replica, one the agent had left, is reachable again
  kResolve,   // the dns:/// list changed: the home left it, or a better-ranked replica joined
};

class ReplicaHoming {
 public:
  ReplicaHoming(ReplicaAddresses service, std::string host_name, AgentMetrics* metrics);

  // Looks the list up again (a dns:/// name; a fixed list is the same every time) and ranks it.
  // On an error (a failed lookup) the last list stays. Logs a changed list.
  absl::Status Resolve();
  bool is_dns() const { return service_.is_dns(); }
  const std::string& spec() const { return service_.spec(); }

  // The replicas, best first for this host; empty until a Resolve() succeeds.
  const std::vector<std::string>& ranking() const { return ranking_; }
  // Empty until the first TakeHome().
  const std::string& home() const { return home_; }
  // The home's position in ranking(); ranking().size() when the list no longer has it.
  size_t home_rank() const;
  bool home_listed() const { return home_rank() < ranking_.size(); }
  // Whether there is anywhere else to go: another replica, or a new list without the home.
  bool has_alternatives() const { return ranking_.size() > 1 || !home_listed(); }

  // The first home (no move counted).
  void TakeHome(const std::string& replica);
  // Moves home to `replica`, counted by `reason` and logged once with `why`.
  void MoveTo(const std::string& replica, HomeChange reason, absl::string_view why);
  // Why a move to `better` (ranked above the home) would be made: kReturn when it was listed
  // when the agent took its home (it left it or could not reach it), else kResolve.
  HomeChange ReasonToPrefer(const std::string& better) const;

  // Logs, once per replica until the next move, that the agent cannot go back to `replica`.
  void NoteCannotReturn(const std::string& replica, absl::string_view why);

 private:
  const ReplicaAddresses service_;
  const std::string host_name_;
  AgentMetrics* const metrics_;
  std::vector<std::string> listed_;   // as resolved: sorted
  std::vector<std::string> ranking_;  // listed_, best first for host_name_
  std::string home_;
  std::set<std::string> listed_at_move_;  // the list when the home was taken
  std::set<std::string> cannot_return_logged_;
};

absl::string_view HomeChangeName(HomeChange reason);

}  // namespace tcpscope::agent
