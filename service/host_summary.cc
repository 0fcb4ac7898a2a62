// Summary counting and the Count lists of HostSummary (label names as in the metrics; zero
// counts left out).
#include "service/host_summary.h"

#include <string>

#include "common/tcp_names.h"
#include "service/host_view.h"

namespace tcpscope::service {
namespace {

template <typename T, size_t N>
void AddArray(std::array<T, N>& to, const std::array<T, N>& from) {
  for (size_t i = 0; i < N; ++i) to[i] += from[i];
}

template <typename T, size_t N, typename NameOf>
void AddCounts(const std::array<T, N>& counts, NameOf name_of,
               google::protobuf::RepeatedPtrField<v1::Count>* out) {
  for (size_t i = 1; i < N; ++i) {
    if (counts[i] == 0) continue;
    v1::Count* count = out->Add();
    count->set_name(std::string(name_of(static_cast<int>(i))));
    count->set_value(counts[i]);
  }
}

}  // namespace

void EventTotals::Add(const EventTotals& other) {
  events += other.events;
  handshakes += other.handshakes;
  AddArray(failures, other.failures);
  AddArray(closes_by_initiator, other.closes_by_initiator);
  AddArray(closes_by_reason, other.closes_by_reason);
  closes_short += other.closes_short;
  closes_long += other.closes_long;
  keepalive_probes += other.keepalive_probes;
  keepalive_timeouts += other.keepalive_timeouts;
}

SnapshotCounts CountSnapshot(const HostView& view) {
  SnapshotCounts counts;
  for (const EndRecord& end : view.ends) {
    // Validation refused unknown states: every index is in range.
    const v1::TcpState state =
        end.tcp_state() == v1::TCP_STATE_NEW_SYN_RECV ? v1::TCP_STATE_SYN_RECV : end.tcp_state();
    ++counts.states[state];
    if (state == v1::TCP_STATE_ESTABLISHED) {
      ++(end.keepalive_enabled ? counts.keepalive_on : counts.keepalive_off);
    }
    ++counts.at_risk[end.at_risk];
  }
  counts.states[v1::TCP_STATE_LISTEN] += view.listeners;
  return counts;
}

void SnapshotCounts::Add(const SnapshotCounts& other) {
  AddArray(states, other.states);
  keepalive_on += other.keepalive_on;
  keepalive_off += other.keepalive_off;
  AddArray(at_risk, other.at_risk);
  AddArray(half_open, other.half_open);
}

void FillSummary(const EventTotals& totals, const SnapshotCounts& snapshot,
                 v1::HostSummary* summary) {
  summary->set_events(totals.events);
  summary->set_handshakes(totals.handshakes);
  AddCounts(
      totals.failures,
      [](int i) { return HandshakeFailureReasonName(static_cast<v1::HandshakeFailureReason>(i)); },
      summary->mutable_handshake_failures());
  AddCounts(
      totals.closes_by_initiator,
      [](int i) { return CloseInitiatorName(static_cast<v1::CloseInitiator>(i)); },
      summary->mutable_closes_by_initiator());
  AddCounts(
      totals.closes_by_reason,
      [](int i) { return CloseReasonName(static_cast<v1::CloseReason>(i)); },
      summary->mutable_closes_by_reason());
  summary->set_closes_short(totals.closes_short);
  summary->set_closes_long(totals.closes_long);
  summary->set_keepalive_probes(totals.keepalive_probes);
  summary->set_keepalive_timeouts(totals.keepalive_timeouts);
  AddCounts(
      snapshot.states, [](int i) { return TcpStateName(static_cast<v1::TcpState>(i)); },
      summary->mutable_connections_by_state());
  summary->set_keepalive_on(snapshot.keepalive_on);
  summary->set_keepalive_off(snapshot.keepalive_off);
  AddCounts(
      snapshot.at_risk, [](int i) { return AtRiskReasonName(static_cast<v1::AtRiskReason>(i)); },
      summary->mutable_at_risk());
  AddCounts(
      snapshot.half_open,
      [](int i) { return HalfOpenReasonName(static_cast<v1::HalfOpenReason>(i)); },
      summary->mutable_half_open());
}

}  // namespace tcpscope::service
