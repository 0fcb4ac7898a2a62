// The agent's home among the service's replicas: ranking, moves, their log and metrics.
#include "agent/replica_homing.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/rendezvous.h"

namespace tcpscope::agent {

absl::string_view HomeChangeName(HomeChange reason) {
  switch (reason) {
    case HomeChange::kFailover:
      return "failover";
    case HomeChange::kReturn:
      return "return";
    case HomeChange::kResolve:
      return "resolve";
  }
  return "unknown";
}

ReplicaHoming::ReplicaHoming(ReplicaAddresses service, std::string host_name, AgentMetrics* metrics)
    : service_(std::move(service)), host_name_(std::move(host_name)), metrics_(metrics) {}

absl::Status ReplicaHoming::Resolve() {
  absl::StatusOr<std::vector<std::string>> resolved = service_.Resolve();
  if (!resolved.ok()) return resolved.status();
  if (*resolved == listed_) return absl::OkStatus();
  if (!listed_.empty()) {
    TS_LOG(INFO) << service_.spec() << " now lists " << resolved->size() << " replicas ("
                 << absl::StrJoin(*resolved, ", ") << "; was " << absl::StrJoin(listed_, ", ")
                 << ")";
  }
  listed_ = *std::move(resolved);
  ranking_ = RendezvousRanking(host_name_, listed_);
  return absl::OkStatus();
}

size_t ReplicaHoming::home_rank() const {
  return static_cast<size_t>(std::find(ranking_.begin(), ranking_.end(), home_) - ranking_.begin());
}

void ReplicaHoming::TakeHome(const std::string& replica) {
  home_ = replica;
  listed_at_move_ = std::set<std::string>(listed_.begin(), listed_.end());
  metrics_->SetHome(replica);
  if (ranking_.size() > 1) {
    TS_LOG(INFO) << "home replica " << replica << " (ranking for host " << host_name_ << ": "
                 << absl::StrJoin(ranking_, ", ") << ")";
  }
}

void ReplicaHoming::MoveTo(const std::string& replica, HomeChange reason, absl::string_view why) {
  TS_LOG(WARNING) << "moving home from replica " << home_ << " to " << replica << " ("
                  << HomeChangeName(reason) << "): " << why;
  switch (reason) {
    case HomeChange::kFailover:
      metrics_->home_changes_failover.Increment();
      break;
    case HomeChange::kReturn:
      metrics_->home_changes_return.Increment();
      break;
    case HomeChange::kResolve:
      metrics_->home_changes_resolve.Increment();
      break;
  }
  home_ = replica;
  listed_at_move_ = std::set<std::string>(listed_.begin(), listed_.end());
  cannot_return_logged_.clear();
  metrics_->SetHome(replica);
}

HomeChange ReplicaHoming::ReasonToPrefer(const std::string& better) const {
  return listed_at_move_.count(better) > 0 ? HomeChange::kReturn : HomeChange::kResolve;
}

void ReplicaHoming::NoteCannotReturn(const std::string& replica, absl::string_view why) {
  if (!cannot_return_logged_.insert(replica).second) return;
  TS_LOG(INFO) << "staying on replica " << home_ << ": better-ranked " << replica
               << " is not reachable (" << why << "); checking again until it is";
}

}  // namespace tcpscope::agent
