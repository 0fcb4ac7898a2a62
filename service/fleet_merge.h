// The fleet's answer from the replicas' local parts (tcpscope-service --peers: each replica
// answers for what it holds, and the one asked merges). Pure functions over the responses, so
// that one replica's answer and the merged one have one order and one set of totals.
#pragma once

#include <cstdint>
#include <vector>

#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::service {

// Parts are given in the replicas' order (sorted by address), so that the merged answer is the
// same whichever replica merges it. The parts' unanswered_replicas are not looked at: a local
// part never has any.

// One Agent per host, sorted by host: a host may be known to two replicas (its old home,
// disconnected, and its new one), so the connected one's, else the one seen last, with the
// events of every part summed (each replica applied a disjoint part of the host's batches).
v1::ListAgentsResponse MergeAgents(std::vector<v1::ListAgentsResponse> parts);

// Every part's connections, by host (FleetQueries' order; a host's connections in part order),
// and the oldest snapshot's age.
v1::ListConnectionsResponse MergeConnections(std::vector<v1::ListConnectionsResponse> parts);

// One HostSummary per host, sorted by host: every counter and Count list summed, `agents` and
// `agents_connected` at most 1, losses the largest each part saw (they are the agent process's
// cumulative counts, which both homes of a host that moved may hold); the fleet total
// recomputed from the merged hosts (FleetTotal); the histories' sizes summed, their oldest
// event the oldest of all.
v1::SummaryResponse MergeSummaries(std::vector<v1::SummaryResponse> parts);

// The replicas' histories (each in its own order) merged by event time, a part's own order kept
// where times tie or go back; with `last` (0: all), the newest `last` kept.
std::vector<v1::HostEvent> MergeEventHistories(std::vector<std::vector<v1::HostEvent>> parts,
                                               uint32_t last);

}  // namespace tcpscope::service
