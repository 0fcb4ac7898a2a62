// FleetMetrics writes the same series as the prometheus-cpp implementation it replaced
// (bench/prometheus_reference.h, fed the same calls by bench/metrics_fleet.h): the same families
// in the same order with the same HELP and TYPE, and sample for sample the same names, labels and
// values, through every transition that makes series appear or go.
#include "service/fleet_metrics.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "bench/metrics_fleet.h"
#include "common/exposition.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "tests/harness/metrics_text.h"

namespace tcpscope::service {
namespace {

using bench::TwinFleet;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

WorkloadLimits Limits() {
  WorkloadLimits limits;
  limits.max_pods_per_host = 2;
  limits.max_ports_per_host = 3;
  limits.slot_expiry = absl::Minutes(10);
  return limits;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  return lines;
}

std::vector<std::string> Headers(const std::string& text) {
  std::vector<std::string> headers;
  for (const std::string& line : Lines(text)) {
    if (line.rfind("# ", 0) == 0) headers.push_back(line);
  }
  return headers;
}

// A family's series by their labels (as a sorted map), with every value of the series.
using Series = std::map<std::map<std::string, std::string>, std::vector<double>>;

Series SeriesOf(const prometheus::MetricFamily& family) {
  Series series;
  for (const prometheus::ClientMetric& metric : family.metric) {
    std::map<std::string, std::string> labels;
    for (const auto& label : metric.label) labels[label.name] = label.value;
    std::vector<double>& values = series[labels];
    EXPECT_TRUE(values.empty()) << family.name << ": a label set twice";
    switch (family.type) {
      case prometheus::MetricType::Counter:
        values.push_back(metric.counter.value);
        break;
      case prometheus::MetricType::Gauge:
        values.push_back(metric.gauge.value);
        break;
      case prometheus::MetricType::Histogram:
        for (const auto& bucket : metric.histogram.bucket) {
          values.push_back(bucket.upper_bound);
          values.push_back(static_cast<double>(bucket.cumulative_count));
        }
        values.push_back(metric.histogram.sample_sum);
        values.push_back(static_cast<double>(metric.histogram.sample_count));
        break;
      default:
        ADD_FAILURE() << "unexpected type";
    }
  }
  return series;
}

// The two implementations agree: as text (every line, headers in the same order) and as
// collected families.
void ExpectSameExposition(TwinFleet& fleet) {
  std::string ours;
  fleet.service.fleet()->AppendExposition(&ours);
  const std::string theirs = RenderExposition(fleet.reference.registry()->Collect());
  EXPECT_EQ(Headers(ours), Headers(theirs));
  std::vector<std::string> our_lines = Lines(ours);
  std::vector<std::string> their_lines = Lines(theirs);
  std::sort(our_lines.begin(), our_lines.end());
  std::sort(their_lines.begin(), their_lines.end());
  EXPECT_EQ(our_lines.size(), their_lines.size());
  std::vector<std::string> only_ours, only_theirs;
  std::set_difference(our_lines.begin(), our_lines.end(), their_lines.begin(), their_lines.end(),
                      std::back_inserter(only_ours));
  std::set_difference(their_lines.begin(), their_lines.end(), our_lines.begin(), our_lines.end(),
                      std::back_inserter(only_theirs));
  for (size_t i = 0; i < std::min<size_t>(only_ours.size(), 20); ++i) {
    ADD_FAILURE() << "only in FleetMetrics: " << only_ours[i];
  }
  for (size_t i = 0; i < std::min<size_t>(only_theirs.size(), 20); ++i) {
    ADD_FAILURE() << "only in prometheus-cpp: " << only_theirs[i];
  }

  const std::vector<prometheus::MetricFamily> collected = fleet.service.fleet()->Collect();
  const std::vector<prometheus::MetricFamily> reference = fleet.reference.registry()->Collect();
  ASSERT_EQ(collected.size(), reference.size());
  for (size_t i = 0; i < collected.size(); ++i) {
    EXPECT_EQ(collected[i].name, reference[i].name);
    EXPECT_EQ(collected[i].help, reference[i].help);
    EXPECT_EQ(collected[i].type, reference[i].type);
    EXPECT_EQ(SeriesOf(collected[i]), SeriesOf(reference[i])) << collected[i].name;
  }
}

TEST(FleetMetricsTest, EverySeriesAsPrometheusCpp) {
  TwinFleet fleet(Limits());
  fleet.FillEverySeries(3, kNow);
  ExpectSameExposition(fleet);
  // Every family is there.
  EXPECT_EQ(fleet.service.fleet()->Collect().size(), static_cast<size_t>(SpecFamily::kCount));
  // The text parses as prometheus-cpp's TextSerializer writes the same series.
  std::string ours;
  fleet.service.fleet()->AppendExposition(&ours);
  const std::string theirs =
      prometheus::TextSerializer().Serialize(fleet.reference.registry()->Collect());
  const std::string& host = fleet.hosts()[1]->name;
  for (const auto& [name, labels] : std::vector<std::pair<std::string, testing::Labels>>{
           {"tcpscope_closes_total",
            {{"host", host}, {"role", "server"}, {"initiator", "remote"}, {"reason", "fin"}}},
           {"tcpscope_handshake_duration_seconds_bucket",
            {{"host", host}, {"role", "client"}, {"le", "0.001"}}},
           {"tcpscope_connection_lifetime_seconds_sum", {{"host", host}, {"role", "client"}}},
           {"tcpscope_connections", {{"host", host}, {"state", "syn_recv"}}},
           {"tcpscope_connections_half_open", {{"host", host}, {"reason", "peer_rebooted"}}},
           {"tcpscope_workload_connections",
            {{"host", host},
             {"namespace", ""},
             {"pod", "other"},
             {"container", ""},
             {"state", "established"}}},
           {"tcpscope_port_closes_total", {{"host", host}, {"port", "other"}, {"reason", "fin"}}},
       }) {
    const std::optional<double> expected = testing::MetricValue(theirs, name, labels);
    const std::optional<double> value = testing::MetricValue(ours, name, labels);
    ASSERT_TRUE(expected.has_value()) << name;
    ASSERT_TRUE(value.has_value()) << name;
    // TextSerializer rounds to 16 significant digits; ours reads back exactly.
    EXPECT_NEAR(*value, *expected, 1e-15 * std::abs(*expected)) << name;
  }
}

TEST(FleetMetricsTest, SeriesComeAndGoAsWithPrometheusCpp) {
  TwinFleet fleet(Limits());
  // A host that has only connected: up, events and losses.
  TwinFleet::Host& fresh = fleet.AddHost("fresh");
  ExpectSameExposition(fleet);
  fleet.SetUp(fresh, true);
  fleet.FillEverySeries(3, kNow);
  auto& hosts = fleet.hosts();

  // A later batch: more events, a snapshot without web-0, agents' losses going up.
  {
    TwinFleet::Host& host = *hosts[1];
    v1::Batch batch;
    v1::Event close;
    close.set_role(v1::ROLE_CLIENT);
    close.mutable_close()->set_initiator(v1::CLOSE_INITIATOR_LOCAL);
    close.mutable_close()->set_reason(v1::CLOSE_REASON_RESET_SENT);
    close.mutable_close()->set_lifetime_us(999'999);
    close.mutable_origin()->set_container_name("redis");
    close.mutable_endpoints()->set_remote_port(8080);
    *batch.add_events() = close;
    batch.mutable_losses()->set_agent(7);
    v1::Connection* end = batch.mutable_snapshot()->add_connections();
    end->set_state(v1::TCP_STATE_CLOSE_WAIT);
    end->mutable_origin()->set_pod_namespace("shop");
    end->mutable_origin()->set_pod("db-0");
    end->mutable_origin()->set_container_name("postgres");
    fleet.Apply(host, batch, {v1::AT_RISK_CLOSE_WAIT_STALE}, kNow + absl::Minutes(1));
    fleet.RemoveHalfOpen(host, 0, v1::HALF_OPEN_PEER_CLOSED);
    fleet.SetHalfOpen(host, {0, 4, 5, 5});
  }
  ExpectSameExposition(fleet);

  // node-0001's agent disconnects: its gauges go, its counters stay; pods idle past the expiry lose
  // their series (those with half-open ends stay).
  fleet.Disconnect(*hosts[2]);
  fleet.Expire(*hosts[2], kNow + absl::Hours(1));
  ExpectSameExposition(fleet);
  // Half-open ends added while disconnected show once a snapshot comes.
  v1::Origin late;
  late.set_container_name("late");
  fleet.AddHalfOpen(*hosts[2], late, v1::HALF_OPEN_PEER_HOST_DOWN, kNow + absl::Hours(1));
  ExpectSameExposition(fleet);
  fleet.SetUp(*hosts[2], true);
  v1::Batch snapshot;
  snapshot.mutable_snapshot()->set_listeners(2);
  fleet.Apply(*hosts[2], snapshot, {}, kNow + absl::Hours(1));
  ExpectSameExposition(fleet);

  // node-0001 expires: every series of it goes.
  fleet.RemoveHost(2);
  ExpectSameExposition(fleet);
  std::string text;
  fleet.service.fleet()->AppendExposition(&text);
  EXPECT_EQ(text.find("node-0001"), std::string::npos);
}

TEST(FleetMetricsTest, HostMetricsTotalsCountEachEventOnce) {
  TwinFleet fleet(Limits());
  fleet.FillEverySeries(1, kNow);
  const EventTotals totals = fleet.hosts()[0]->metrics->totals();
  std::string text;
  fleet.service.fleet()->AppendExposition(&text);
  EXPECT_EQ(totals.events, testing::MetricSum(text, "tcpscope_agent_events_total", {}));
  EXPECT_EQ(totals.handshakes, testing::MetricSum(text, "tcpscope_handshakes_total", {}));
  EXPECT_EQ(totals.keepalive_probes,
            testing::MetricSum(text, "tcpscope_keepalive_probes_total", {}));
  EXPECT_EQ(totals.keepalive_timeouts,
            testing::MetricSum(text, "tcpscope_keepalive_timeouts_total", {}));
  uint64_t closes = 0;
  for (uint64_t count : totals.closes_by_reason) closes += count;
  EXPECT_EQ(closes, testing::MetricSum(text, "tcpscope_closes_total", {}));
  EXPECT_EQ(totals.closes_short + totals.closes_long,
            testing::MetricSum(text, "tcpscope_connection_lifetime_seconds_count", {}));
  EXPECT_EQ(totals.closes_by_initiator[v1::CLOSE_INITIATOR_REMOTE],
            testing::MetricSum(text, "tcpscope_closes_total", {{"initiator", "remote"}}));
  EXPECT_EQ(totals.failures[v1::HANDSHAKE_FAILURE_TIMEOUT],
            testing::MetricSum(text, "tcpscope_handshake_failures_total", {{"reason", "timeout"}}));
}

}  // namespace
}  // namespace tcpscope::service
