// The read path: the Observer API's answers (agents, connection listings, summaries) over the
// hosts' immutable views and the pair index, never holding a host's lock while building them.
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "service/aggregator.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::service {

class FleetQueries {
 public:
  explicit FleetQueries(const Aggregator* aggregator) : aggregator_(aggregator) {}

  std::vector<v1::Agent> Agents() const;
  // The request must have passed ConnectionMatcher::Create.
  v1::ListConnectionsResponse Connections(const v1::ListConnectionsRequest& request,
                                          absl::Time now) const;
  // Empty `host`: every host, and the fleet total.
  v1::SummaryResponse Summary(const std::string& host) const;

 private:
  // With replicas: the other replicas' hosts with ends in this replica's tuples (or only `only`).
  std::vector<std::shared_ptr<RemoteHost>> Remote(const std::string& only) const;
  const Aggregator* const aggregator_;
};

}  // namespace tcpscope::service
