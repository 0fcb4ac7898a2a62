// What the Summary call reports of a host: its cumulative event counts (read from its
// HostMetrics, which counts each event once for both) and the counts of its latest snapshot
// (computed once per snapshot, for the gauges and the summary alike). Totals of several hosts add
// up field by field. Tables indexed by an enum are sized from the proto.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "tcpscope/v1/events.pb.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::service {

struct HostView;

struct EventTotals {
  uint64_t events = 0;
  uint64_t handshakes = 0;
  std::array<uint64_t, v1::HandshakeFailureReason_ARRAYSIZE> failures{};
  std::array<uint64_t, v1::CloseInitiator_ARRAYSIZE> closes_by_initiator{};
  std::array<uint64_t, v1::CloseReason_ARRAYSIZE> closes_by_reason{};
  uint64_t closes_short = 0;  // lifetime under 1 s
  uint64_t closes_long = 0;
  uint64_t keepalive_probes = 0;
  uint64_t keepalive_timeouts = 0;

  void Add(const EventTotals& other);
};

struct SnapshotCounts {
  std::array<uint32_t, v1::TcpState_ARRAYSIZE> states{};  // LISTEN from the listener count;
                                                          // NEW_SYN_RECV counted as SYN_RECV
  uint32_t keepalive_on = 0;                              // established connections
  uint32_t keepalive_off = 0;
  std::array<uint32_t, v1::AtRiskReason_ARRAYSIZE> at_risk{};
  std::array<uint32_t, v1::HalfOpenReason_ARRAYSIZE> half_open{};  // from the pair index

  void Add(const SnapshotCounts& other);
};

// The counts of a host's view; half_open left at zero.
SnapshotCounts CountSnapshot(const HostView& view);

// Fills every field of `summary` but host, agents and losses.
void FillSummary(const EventTotals& totals, const SnapshotCounts& snapshot,
                 v1::HostSummary* summary);

// Adds every number of `from` (agents and losses included) to `into`, and its Count lists by
// name, kept in the order FillSummary writes them (a name this version does not know, from a
// newer replica, after the known ones, by name). Not the host.
void AddHostSummary(const v1::HostSummary& from, v1::HostSummary* into);

// The fleet total of these hosts: every field summed (so `agents` counts the hosts). One
// function for one replica's answer and for the fleet's merged from every replica.
v1::HostSummary FleetTotal(const google::protobuf::RepeatedPtrField<v1::HostSummary>& hosts);

}  // namespace tcpscope::service
