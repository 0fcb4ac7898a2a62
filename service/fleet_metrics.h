// The SPEC metric families of every host, written at scrape time from the hosts' own series
// (HostMetrics, WorkloadMetrics: plain values, relaxed atomics) instead of from tens of thousands
// of prometheus-cpp series: at 1000 hosts prometheus-cpp's Collect() alone was most of a scrape.
//
// Hosts register a Source for their series and unregister it when the series go. A scrape copies
// the list of sources under a short lock and reads their values without locks: writers never wait
// for a scrape, nor a scrape for a writer (beyond that copy).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/exposition.h"
#include "prometheus/metric_family.h"

namespace tcpscope::service {

// In the order of the exposition: counters, gauges, histograms, as prometheus-cpp's Registry
// collected them.
enum class SpecFamily {
  kHandshakes,
  kHandshakeFailures,
  kCloses,
  kKeepaliveProbes,
  kKeepaliveTimeouts,
  kHalfOpenDetected,
  kWorkloadHandshakeFailures,
  kWorkloadKeepaliveTimeouts,
  kWorkloadCloses,
  kPortHandshakeFailures,
  kPortCloses,
  kAgentEvents,
  kAgentEventsLost,
  kConnections,
  kConnectionsKeepalive,
  kConnectionsAtRisk,
  kConnectionsHalfOpen,
  kWorkloadConnections,
  kWorkloadConnectionsAtRisk,
  kWorkloadConnectionsHalfOpen,
  kAgentUp,
  kHandshakeDuration,
  kLifetime,
  kCount,  // not a family
};

class FleetMetrics final : public ExpositionCollectable {
 public:
  // The series of one host in some of the families.
  class Source {
   public:
    virtual ~Source() = default;
    virtual const std::string& host() const = 0;
    // Writes the host's series of `family` (none if it has none there).
    virtual void Write(SpecFamily family, SampleWriter& writer) const = 0;
  };

  FleetMetrics() = default;
  FleetMetrics(const FleetMetrics&) = delete;
  FleetMetrics& operator=(const FleetMetrics&) = delete;

  void Register(std::shared_ptr<const Source> source);
  // The source's series are gone from the next scrape on.
  void Unregister(const Source* source);

  // Every family, hosts in name order.
  void Write(SampleWriter& writer) const;
  std::vector<prometheus::MetricFamily> Collect() const override;
  void AppendExposition(std::string* out) const override;

 private:
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<const Source>> sources_ ABSL_GUARDED_BY(mu_);
  mutable std::atomic<size_t> last_size_{0};  // of the previous exposition, to reserve
};

}  // namespace tcpscope::service
