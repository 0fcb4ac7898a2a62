// Both implementations fed the same calls, and a fleet state with every series present.
#include "bench/metrics_fleet.h"

#include "absl/strings/str_format.h"
#include "service/host_summary.h"
#include "service/host_view.h"

namespace tcpscope::bench {
namespace {

// A deterministic spread of small counts, so values differ from series to series.
int Repeats(uint64_t seed) { return 1 + static_cast<int>((seed * 2654435761u) % 7); }

// Two pods of two containers, a Docker container and a container known by its id (with a pod
// cap of 2 the last two are summed into pod="other"), and a host process (no workload).
v1::Origin OriginOf(uint64_t i) {
  v1::Origin origin;
  switch (i % 6) {
    case 0:
    case 1:
      origin.set_pod_namespace("shop");
      origin.set_pod("web-0");
      origin.set_container_name(i % 6 == 0 ? "web" : "envoy");
      break;
    case 2:
      origin.set_pod_namespace("shop");
      origin.set_pod("db-0");
      origin.set_container_name("postgres");
      break;
    case 3:
      origin.set_container_name("redis");
      break;
    case 4:
      origin.set_container_id("0123456789abcdef0123");
      break;
    default:
      origin.set_pid(100);
      origin.set_command("sshd");
      break;
  }
  return origin;
}

v1::Event BaseEvent(v1::Role role, uint64_t id) {
  v1::Event event;
  event.set_time_unix_ns(1'700'000'000'000'000'000ULL + id);
  event.set_connection_id(id);
  event.set_role(role);
  *event.mutable_origin() = OriginOf(id);
  // Four server ports: beyond a port cap of 3, port="other".
  const uint32_t server_port = std::array<uint32_t, 4>{443, 80, 5432, 6379}[id % 4];
  v1::Endpoints& endpoints = *event.mutable_endpoints();
  endpoints.set_local_address(std::string("\x0a\x00\x00\x01", 4));
  endpoints.set_remote_address(std::string("\x0a\x00\x00\x02", 4));
  endpoints.set_local_port(role == v1::ROLE_SERVER ? server_port : 40000 + id % 20000);
  endpoints.set_remote_port(role == v1::ROLE_SERVER ? 40000 + id % 20000 : server_port);
  return event;
}

// Every kind of event the metrics count, each with all of its label values.
v1::Batch HostEvents(int host) {
  v1::Batch batch;
  uint64_t id = static_cast<uint64_t>(host) << 20;
  auto add = [&](v1::Role role) -> v1::Event& {
    return *batch.add_events() = BaseEvent(role, ++id);
  };
  for (v1::Role role : {v1::ROLE_CLIENT, v1::ROLE_SERVER}) {
    // Handshakes from 50 us to 3 s, spread over the duration buckets.
    for (uint64_t duration_us : {50, 180, 400, 900, 2'000, 7'000, 30'000, 1'100'000, 3'000'000}) {
      for (int i = 0; i < Repeats(id); ++i) {
        add(role).mutable_handshake()->set_duration_us(duration_us + i);
      }
    }
    for (int initiator = v1::CLOSE_INITIATOR_LOCAL; initiator < v1::CloseInitiator_ARRAYSIZE;
         ++initiator) {
      for (int reason = v1::CLOSE_REASON_FIN; reason < v1::CloseReason_ARRAYSIZE; ++reason) {
        for (int i = 0; i < Repeats(id); ++i) {
          v1::Close& close = *add(role).mutable_close();
          close.set_initiator(static_cast<v1::CloseInitiator>(initiator));
          close.set_reason(static_cast<v1::CloseReason>(reason));
          // 2 ms to about a day: short HTTP/1.0 exchanges to long keep-alive connections.
          close.set_lifetime_us(2'000ULL << (2 * ((id + i) % 13)));
          close.set_bytes_sent(1000 * id);
        }
      }
    }
    for (int i = 0; i < Repeats(id); ++i) add(role).mutable_keepalive_timeout()->set_probes_sent(9);
  }
  for (int reason = v1::HANDSHAKE_FAILURE_REFUSED; reason < v1::HandshakeFailureReason_ARRAYSIZE;
       ++reason) {
    for (int i = 0; i < 6 * Repeats(id); ++i) {  // every workload and port sees each reason
      add(v1::ROLE_CLIENT)
          .mutable_handshake_failed()
          ->set_reason(static_cast<v1::HandshakeFailureReason>(reason));
    }
  }
  for (int i = 0; i < 3 * Repeats(id); ++i) {
    add(v1::ROLE_SERVER).mutable_keepalive_probe()->set_probe_number(1 + i % 9);
  }
  batch.mutable_losses()->set_kernel(static_cast<uint64_t>(host % 3));
  batch.mutable_losses()->set_agent(static_cast<uint64_t>(host % 5));
  return batch;
}

// Connections in every TCP state and every workload, keepalive on and off, every at-risk reason.
void AddSnapshot(int host, v1::Batch* batch, std::vector<v1::AtRiskReason>* at_risk) {
  v1::Snapshot& snapshot = *batch->mutable_snapshot();
  snapshot.set_listeners(4);
  uint64_t id = 0;
  for (int state = v1::TCP_STATE_ESTABLISHED; state < v1::TcpState_ARRAYSIZE; ++state) {
    if (state == v1::TCP_STATE_LISTEN) continue;
    const int count = state == v1::TCP_STATE_ESTABLISHED ? 20 + host % 50 : 6 + (host + state) % 5;
    for (int i = 0; i < count; ++i) {
      v1::Connection& connection = *snapshot.add_connections();
      connection.set_state(static_cast<v1::TcpState>(state));
      connection.mutable_keepalive()->set_enabled(i % 3 == 0);
      *connection.mutable_origin() = OriginOf(++id);
      at_risk->push_back(static_cast<v1::AtRiskReason>(id % v1::AtRiskReason_ARRAYSIZE));
    }
  }
}

}  // namespace

TwinFleet::Host& TwinFleet::AddHost(const std::string& name) {
  auto host = std::make_unique<Host>();
  host->name = name;
  host->metrics = std::make_unique<service::HostMetrics>(&service, name);
  host->workloads = std::make_unique<service::WorkloadMetrics>(&service, name, limits_);
  host->reference = std::make_unique<reference::HostMetrics>(&reference, name);
  host->reference_half_open = std::make_unique<reference::HalfOpenSeries>(&reference, name);
  host->reference_workloads =
      std::make_unique<reference::WorkloadMetrics>(&reference, name, limits_);
  hosts_.push_back(std::move(host));
  return *hosts_.back();
}

void TwinFleet::RemoveHost(size_t index) {
  hosts_.erase(hosts_.begin() + static_cast<long>(index));
}

void TwinFleet::Apply(Host& host, const v1::Batch& batch,
                      const std::vector<v1::AtRiskReason>& at_risk, absl::Time now) {
  for (const v1::Event& event : batch.events()) {
    host.metrics->CountEvent(event);
    host.reference->CountEvent(event);
  }
  host.workloads->CountEvents(batch, now);
  host.reference_workloads->CountEvents(batch.events(), now);
  host.metrics->AddEvents(static_cast<uint64_t>(batch.events_size()));
  host.reference->AddEvents(static_cast<uint64_t>(batch.events_size()));
  host.metrics->SetLosses(batch.losses());
  host.reference->SetLosses(batch.losses());
  if (!batch.has_snapshot()) return;
  service::OriginTable origins;
  const service::SnapshotCounts counts = service::CountSnapshot(
      *service::HostView::Build(batch.snapshot(), at_risk, nullptr, 1, now, &origins));
  host.metrics->SetSnapshot(counts);
  host.reference->SetSnapshot(batch.snapshot());
  host.reference->SetAtRisk(counts.at_risk);
  host.workloads->SetSnapshot(batch.snapshot(), at_risk, now);
  host.reference_workloads->SetSnapshot(batch.snapshot(), at_risk, now);
}

void TwinFleet::SetUp(Host& host, bool up) {
  host.metrics->SetUp(up);
  host.reference->SetUp(up);
}

void TwinFleet::SetHalfOpen(Host& host, const service::HostMetrics::HalfOpenCounts& counts) {
  host.metrics->SetHalfOpen(counts);
  host.reference_half_open->Set(counts);
}

void TwinFleet::CountHalfOpenDetected(Host& host, v1::HalfOpenReason reason) {
  host.metrics->CountHalfOpenDetected(reason);
  host.reference_half_open->CountDetected(reason);
}

void TwinFleet::AddHalfOpen(Host& host, const v1::Origin& origin, v1::HalfOpenReason reason,
                            absl::Time now) {
  host.half_open_keys.push_back(host.workloads->AddHalfOpen(origin, reason, now));
  host.reference_half_open_keys.push_back(
      host.reference_workloads->AddHalfOpen(origin, reason, now));
}

void TwinFleet::RemoveHalfOpen(Host& host, size_t index, v1::HalfOpenReason reason) {
  host.workloads->RemoveHalfOpen(host.half_open_keys[index], reason);
  host.reference_workloads->RemoveHalfOpen(host.reference_half_open_keys[index], reason);
}

void TwinFleet::Disconnect(Host& host) {
  SetUp(host, false);
  host.metrics->ClearSnapshot();
  host.reference->ClearSnapshot();
  host.workloads->ClearGauges();
  host.reference_workloads->ClearGauges();
  host.metrics->ClearHalfOpen();
  host.reference_half_open->Clear();
}

void TwinFleet::Expire(Host& host, absl::Time now) {
  host.workloads->Expire(now);
  host.reference_workloads->Expire(now);
}

void TwinFleet::FillEverySeries(int hosts, absl::Time now) {
  for (int i = 0; i < hosts; ++i) {
    Host& host = AddHost(absl::StrFormat("node-%04d.rack%02d.dc1.example.net", i, i % 40));
    SetUp(host, true);
    v1::Batch batch = HostEvents(i);
    std::vector<v1::AtRiskReason> at_risk;
    AddSnapshot(i, &batch, &at_risk);
    Apply(host, batch, at_risk, now);
    // Half-open ends of every reason, on workloads and on the host.
    service::HostMetrics::HalfOpenCounts counts{};
    for (int reason = 1; reason < v1::HalfOpenReason_ARRAYSIZE; ++reason) {
      const auto why = static_cast<v1::HalfOpenReason>(reason);
      for (uint64_t end = 0; end < 5; ++end) {
        AddHalfOpen(host, OriginOf(end + static_cast<uint64_t>(reason)), why, now);
        CountHalfOpenDetected(host, why);
        ++counts[reason];
      }
    }
    SetHalfOpen(host, counts);
  }
}

}  // namespace tcpscope::bench
