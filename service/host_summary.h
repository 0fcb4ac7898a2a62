// What the Summary call reports of a host: cumulative event counts kept beside the metrics, and
// the counts of its latest snapshot. Totals of several hosts add up field by field.
#pragma once

#include <array>
#include <cstdint>

#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::service {

struct EventTotals {
  uint64_t events = 0;
  uint64_t handshakes = 0;
  std::array<uint64_t, 6> failures{};             // by HandshakeFailureReason
  std::array<uint64_t, 5> closes_by_initiator{};  // by CloseInitiator
  std::array<uint64_t, 8> closes_by_reason{};     // by CloseReason
  uint64_t closes_short = 0;                      // lifetime under 1 s
  uint64_t closes_long = 0;
  uint64_t keepalive_probes = 0;
  uint64_t keepalive_timeouts = 0;

  void Count(const v1::Event& event);  // a validated event
  void Add(const EventTotals& other);
};

struct SnapshotCounts {
  std::array<uint32_t, 13> states{};  // by TcpState; LISTEN from the listener count
  uint32_t keepalive_on = 0;          // established connections
  uint32_t keepalive_off = 0;
  std::array<uint32_t, 4> at_risk{};    // by AtRiskReason
  std::array<uint32_t, 4> half_open{};  // by HalfOpenReason (from ConnectionPairs)

  void Add(const SnapshotCounts& other);
};

// Fills every field of `summary` but host, agents and losses.
void FillSummary(const EventTotals& totals, const SnapshotCounts& snapshot,
                 v1::HostSummary* summary);

}  // namespace tcpscope::service
