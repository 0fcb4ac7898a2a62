// Summary counting and the Count lists of HostSummary (label names as in the metrics; zero
// counts left out).
#include "service/host_summary.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
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

// The position of each Count name in FillSummary's order (the enum's), for one Count list.
class CountOrder {
 public:
  template <typename NameOf>
  CountOrder(int size, NameOf name_of) {
    for (int i = 1; i < size; ++i) rank_.try_emplace(std::string(name_of(i)), i);
  }
  bool Before(const v1::Count& a, const v1::Count& b) const {
    const int rank_a = Rank(a.name());
    const int rank_b = Rank(b.name());
    return rank_a != rank_b ? rank_a < rank_b : a.name() < b.name();
  }

 private:
  int Rank(const std::string& name) const {
    auto it = rank_.find(name);
    return it == rank_.end() ? INT32_MAX : it->second;
  }
  absl::flat_hash_map<std::string, int> rank_;
};

void AddCountList(const google::protobuf::RepeatedPtrField<v1::Count>& from,
                  const CountOrder& order, google::protobuf::RepeatedPtrField<v1::Count>* into) {
  for (const v1::Count& count : from) {
    auto it = std::find_if(into->begin(), into->end(),
                           [&](const v1::Count& c) { return c.name() == count.name(); });
    if (it != into->end()) {
      it->set_value(it->value() + count.value());
      continue;
    }
    *into->Add() = count;
    // Into its place: the lists are a handful of entries.
    for (int i = into->size() - 1; i > 0 && order.Before(into->Get(i), into->Get(i - 1)); --i) {
      into->SwapElements(i, i - 1);
    }
  }
}

const CountOrder& FailureOrder() {
  static const CountOrder order(v1::HandshakeFailureReason_ARRAYSIZE, [](int i) {
    return HandshakeFailureReasonName(static_cast<v1::HandshakeFailureReason>(i));
  });
  return order;
}
const CountOrder& InitiatorOrder() {
  static const CountOrder order(v1::CloseInitiator_ARRAYSIZE, [](int i) {
    return CloseInitiatorName(static_cast<v1::CloseInitiator>(i));
  });
  return order;
}
const CountOrder& CloseReasonOrder() {
  static const CountOrder order(v1::CloseReason_ARRAYSIZE, [](int i) {
    return CloseReasonName(static_cast<v1::CloseReason>(i));
  });
  return order;
}
const CountOrder& StateOrder() {
  static const CountOrder order(v1::TcpState_ARRAYSIZE,
                                [](int i) { return TcpStateName(static_cast<v1::TcpState>(i)); });
  return order;
}
const CountOrder& AtRiskOrder() {
  static const CountOrder order(v1::AtRiskReason_ARRAYSIZE, [](int i) {
    return AtRiskReasonName(static_cast<v1::AtRiskReason>(i));
  });
  return order;
}
const CountOrder& HalfOpenOrder() {
  static const CountOrder order(v1::HalfOpenReason_ARRAYSIZE, [](int i) {
    return HalfOpenReasonName(static_cast<v1::HalfOpenReason>(i));
  });
  return order;
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

void AddHostSummary(const v1::HostSummary& from, v1::HostSummary* into) {
  into->set_agents(into->agents() + from.agents());
  into->set_agents_connected(into->agents_connected() + from.agents_connected());
  into->set_events(into->events() + from.events());
  v1::LossCounters* losses = into->mutable_losses();
  losses->set_kernel(losses->kernel() + from.losses().kernel());
  losses->set_agent(losses->agent() + from.losses().agent());
  into->set_handshakes(into->handshakes() + from.handshakes());
  AddCountList(from.handshake_failures(), FailureOrder(), into->mutable_handshake_failures());
  AddCountList(from.closes_by_initiator(), InitiatorOrder(), into->mutable_closes_by_initiator());
  AddCountList(from.closes_by_reason(), CloseReasonOrder(), into->mutable_closes_by_reason());
  into->set_closes_short(into->closes_short() + from.closes_short());
  into->set_closes_long(into->closes_long() + from.closes_long());
  into->set_keepalive_probes(into->keepalive_probes() + from.keepalive_probes());
  into->set_keepalive_timeouts(into->keepalive_timeouts() + from.keepalive_timeouts());
  AddCountList(from.connections_by_state(), StateOrder(), into->mutable_connections_by_state());
  into->set_keepalive_on(into->keepalive_on() + from.keepalive_on());
  into->set_keepalive_off(into->keepalive_off() + from.keepalive_off());
  AddCountList(from.at_risk(), AtRiskOrder(), into->mutable_at_risk());
  AddCountList(from.half_open(), HalfOpenOrder(), into->mutable_half_open());
}

v1::HostSummary FleetTotal(const google::protobuf::RepeatedPtrField<v1::HostSummary>& hosts) {
  v1::HostSummary fleet;
  fleet.mutable_losses();  // present even without hosts, as it always was
  for (const v1::HostSummary& host : hosts) AddHostSummary(host, &fleet);
  return fleet;
}

}  // namespace tcpscope::service
