// A fleet's SPEC series built twice from the same calls: into the service's metrics
// (HostMetrics, WorkloadMetrics, written by FleetMetrics) and into the prometheus-cpp reference
// (bench/prometheus_reference.h), for the scrape benchmark and the test comparing the two.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "bench/prometheus_reference.h"
#include "service/service_metrics.h"
#include "service/workload_metrics.h"

namespace tcpscope::bench {

class TwinFleet {
 public:
  struct Host {
    std::string name;
    std::unique_ptr<service::HostMetrics> metrics;
    std::unique_ptr<service::WorkloadMetrics> workloads;
    std::unique_ptr<reference::HostMetrics> reference;
    std::unique_ptr<reference::HalfOpenSeries> reference_half_open;
    std::unique_ptr<reference::WorkloadMetrics> reference_workloads;
    std::vector<std::string> half_open_keys, reference_half_open_keys;
  };

  explicit TwinFleet(service::WorkloadLimits limits = {}) : limits_(limits) {}

  Host& AddHost(const std::string& name);
  // Destroys the host's series (the host expired).
  void RemoveHost(size_t index);
  std::vector<std::unique_ptr<Host>>& hosts() { return hosts_; }

  // What the aggregator and the pairing index do with a host's batch and findings.
  void Apply(Host& host, const v1::Batch& batch, const std::vector<v1::AtRiskReason>& at_risk,
             absl::Time now);
  void SetUp(Host& host, bool up);
  void SetHalfOpen(Host& host, const service::HostMetrics::HalfOpenCounts& counts);
  void CountHalfOpenDetected(Host& host, v1::HalfOpenReason reason);
  void AddHalfOpen(Host& host, const v1::Origin& origin, v1::HalfOpenReason reason, absl::Time now);
  // Removes the host's first half-open end added with `reason`.
  void RemoveHalfOpen(Host& host, size_t index, v1::HalfOpenReason reason);
  void Disconnect(Host& host);
  void Expire(Host& host, absl::Time now);

  // Fills `hosts` hosts with every series they can have: events of every kind and label value,
  // snapshots with every state, keepalive and at-risk reason, half-open ends of every reason,
  // workloads beyond the pod cap and ports beyond the port cap ("other").
  void FillEverySeries(int hosts, absl::Time now);

  service::ServiceMetrics service;
  reference::ServiceMetrics reference;

 private:
  const service::WorkloadLimits limits_;
  std::vector<std::unique_ptr<Host>> hosts_;
};

}  // namespace tcpscope::bench
