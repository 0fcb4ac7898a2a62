// The /metrics renderer: what it writes must parse to exactly what prometheus-cpp's
// TextSerializer gives (names, labels as strings, values as doubles), be valid text format 0.0.4
// with correct escaping, and pass `promtool check metrics`.
#include "common/exposition.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/summary.h"
#include "prometheus/text_serializer.h"
#include "tests/harness/process.h"

namespace tcpscope {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using ::testing::HasSubstr;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---------------------------------------------------------------- a strict text-format parser

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
  int64_t timestamp_ms = 0;

  // NaN equals NaN here: both renderers must say "not a number" for the same series.
  bool operator==(const Sample& other) const {
    const bool same_value = value == other.value || (std::isnan(value) && std::isnan(other.value));
    return std::tie(name, labels, timestamp_ms) ==
               std::tie(other.name, other.labels, other.timestamp_ms) &&
           same_value;
  }
  bool operator<(const Sample& other) const {
    return std::tie(name, labels) < std::tie(other.name, other.labels);
  }
};

std::ostream& operator<<(std::ostream& out, const Sample& sample) {
  out << sample.name << "{";
  for (const auto& [key, value] : sample.labels) out << key << "=\"" << value << "\",";
  return out << "} " << sample.value << " @" << sample.timestamp_ms;
}

struct Parsed {
  std::vector<Sample> samples;  // sorted by name and labels
  std::map<std::string, std::string> help;
  std::map<std::string, std::string> type;
};

bool IsNameChar(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

// Parses the exposition or fails the test naming the offending line.
Parsed Parse(const std::string& text) {
  Parsed parsed;
  if (!text.empty()) {
    EXPECT_EQ(text.back(), '\n') << "the exposition must end with a newline";
  }
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const std::string where = absl::StrCat("in line \"", line, "\"");
    const bool is_help = line.substr(0, 7) == "# HELP ";
    if (is_help || line.substr(0, 7) == "# TYPE ") {
      const absl::string_view rest = line.substr(7);
      const size_t space = rest.find(' ');
      EXPECT_NE(space, absl::string_view::npos) << where;
      if (space == absl::string_view::npos) continue;
      const std::string name(rest.substr(0, space));
      std::string body;
      for (size_t i = space + 1; i < rest.size(); ++i) {
        if (is_help && rest[i] == '\\' && i + 1 < rest.size()) {
          ++i;
          EXPECT_TRUE(rest[i] == '\\' || rest[i] == 'n') << "bad HELP escape " << where;
          body += rest[i] == 'n' ? '\n' : rest[i];
        } else {
          body += rest[i];
        }
      }
      (is_help ? parsed.help : parsed.type)[name] = body;
      continue;
    }
    if (line[0] == '#') continue;
    Sample sample;
    size_t i = 0;
    while (i < line.size() && IsNameChar(line[i], i == 0)) ++i;
    sample.name = std::string(line.substr(0, i));
    EXPECT_FALSE(sample.name.empty()) << where;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t start = i;
        while (i < line.size() && IsNameChar(line[i], i == start)) ++i;
        const std::string key(line.substr(start, i - start));
        EXPECT_TRUE(!key.empty() && i + 1 < line.size() && line[i] == '=' && line[i + 1] == '"')
            << where;
        i += 2;
        std::string value;
        for (; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\') {
            ++i;
            EXPECT_TRUE(i < line.size() && (line[i] == '\\' || line[i] == '"' || line[i] == 'n'))
                << "bad label escape " << where;
            value += line[i] == 'n' ? '\n' : line[i];
          } else {
            value += line[i];
          }
        }
        EXPECT_LT(i, line.size()) << "unterminated label value " << where;
        EXPECT_EQ(sample.labels.count(key), 0u) << "duplicate label " << where;
        sample.labels[key] = value;
        ++i;
        if (i < line.size() && line[i] == ',') ++i;
      }
      EXPECT_LT(i, line.size()) << where;
      ++i;
    }
    EXPECT_TRUE(i < line.size() && line[i] == ' ') << where;
    const std::vector<std::string> fields = absl::StrSplit(line.substr(i + 1), ' ');
    EXPECT_TRUE(fields.size() == 1 || fields.size() == 2) << where;
    char* end = nullptr;
    sample.value = std::strtod(fields[0].c_str(), &end);
    EXPECT_EQ(*end, '\0') << "bad value " << where;
    if (fields.size() == 2) sample.timestamp_ms = std::strtoll(fields[1].c_str(), nullptr, 10);
    parsed.samples.push_back(std::move(sample));
  }
  std::stable_sort(parsed.samples.begin(), parsed.samples.end());
  return parsed;
}

// ---------------------------------------------------------------- families to render

ClientMetric Metric(std::vector<ClientMetric::Label> labels) {
  ClientMetric metric;
  metric.label = std::move(labels);
  return metric;
}

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  return family;
}

// One family of each type, label values that need escaping, awkward numbers. HELP texts are
// plain: TextSerializer does not escape them (WritesTheFormatExactly covers that).
std::vector<MetricFamily> EveryType() {
  std::vector<MetricFamily> families;

  MetricFamily& counter =
      families.emplace_back(Family("requests_total", "Requests served.", MetricType::Counter));
  const double counter_values[] = {0,       1,      42,   1234567, 1e6,  123456789012,
                                   0.5,     0.0001, 1e-7, 3.25,    1e21, 9007199254740992.0,
                                   1.5e300, -0.0};
  int n = 0;
  for (double value : counter_values) {
    ClientMetric& metric = counter.metric.emplace_back(
        Metric({{"host", absl::StrCat("h", n++)}, {"path", "/x?y=\"z\"\\w\nv"}}));
    metric.counter.value = value;
  }

  MetricFamily& gauge =
      families.emplace_back(Family("temperature_celsius", "Temperature.", MetricType::Gauge));
  for (double value : {-273.15, kInf, -kInf, kNaN, 0.1, -5.0}) {
    gauge.metric.emplace_back(Metric({{"sensor", absl::StrCat("s", n++)}})).gauge.value = value;
  }
  gauge.metric.emplace_back(Metric({})).gauge.value = 7;  // no labels at all

  MetricFamily& untyped = families.emplace_back(Family("legacy", "Untyped.", MetricType::Untyped));
  ClientMetric& untyped_metric = untyped.metric.emplace_back(Metric({{"a", ""}}));
  untyped_metric.untyped.value = 2.5;
  untyped_metric.timestamp_ms = 1700000000123;

  MetricFamily& histogram =
      families.emplace_back(Family("latency_seconds", "Latency.", MetricType::Histogram));
  for (int i = 0; i < 3; ++i) {
    ClientMetric& metric = histogram.metric.emplace_back(
        Metric({{"role", i == 0 ? "client" : "server"}, {"zone", absl::StrCat("z", i)}}));
    metric.histogram.sample_count = 10 + i;
    metric.histogram.sample_sum = 0.123456789 * (i + 1);
    metric.histogram.bucket = {{1, 0.0001}, {3, 0.00025}, {5, 0.1}, {8, 1}, {9, 604800}};
    // prometheus-cpp collects a +Inf bucket; a hand-built family may leave it out.
    if (i != 1) metric.histogram.bucket.push_back({10u + i, kInf});
  }

  MetricFamily& summary =
      families.emplace_back(Family("rpc_seconds", "RPCs.", MetricType::Summary));
  ClientMetric& summary_metric = summary.metric.emplace_back(Metric({{"method", "Get"}}));
  summary_metric.summary.sample_count = 100;
  summary_metric.summary.sample_sum = 12.75;
  summary_metric.summary.quantile = {{0.5, 0.1}, {0.9, 0.2}, {0.99, 0.4}, {0.999, kNaN}};

  families.push_back(Family("nothing_total", "No series yet.", MetricType::Counter));
  return families;
}

// ---------------------------------------------------------------- tests

TEST(ExpositionTest, EveryTypeParsesLikeTextSerializer) {
  const std::vector<MetricFamily> families = EveryType();
  const Parsed ours = Parse(RenderExposition(families));
  const Parsed theirs = Parse(prometheus::TextSerializer().Serialize(families));
  EXPECT_EQ(ours.samples, theirs.samples);
  EXPECT_EQ(ours.type, theirs.type);
  EXPECT_EQ(ours.help, theirs.help);
  EXPECT_EQ(ours.samples.size(), 14u + 7u + 1u + (3 * 6 + 2 * 3) + (4 + 2));
  EXPECT_EQ(ours.type.at("nothing_total"), "counter");
  EXPECT_EQ(ours.type.at("legacy"), "untyped");
}

TEST(ExpositionTest, RealRegistryParsesLikeTextSerializer) {
  prometheus::Registry registry;
  auto& counters = prometheus::BuildCounter()
                       .Name("tcpscope_closes_total")
                       .Help("Ended connections.")
                       .Register(registry);
  counters.Add({{"host", "a"}, {"role", "client"}, {"reason", "fin"}}).Increment(3);
  counters.Add({{"host", "b.example.net"}, {"role", "server"}, {"reason", "reset_sent"}})
      .Increment(1e9);
  auto& gauges = prometheus::BuildGauge().Name("tcpscope_connections").Register(registry);
  gauges.Add({{"host", "a"}, {"state", "time_wait"}}).Set(131072);
  gauges.Add({{"host", "a"}, {"state", "established"}}).Set(0);
  auto& histograms = prometheus::BuildHistogram()
                         .Name("tcpscope_handshake_duration_seconds")
                         .Help("Time from SYN to ESTABLISHED.")
                         .Register(registry);
  auto& histogram = histograms.Add(
      {{"host", "a"}, {"role", "client"}},
      prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                              0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
  for (double value : {0.00003, 0.0002, 0.0011, 0.7, 3.0, 50.0}) histogram.Observe(value);
  auto& summaries = prometheus::BuildSummary().Name("scrape_seconds").Register(registry);
  auto& summary =
      summaries.Add({}, prometheus::Summary::Quantiles{{0.5, 0.05}, {0.9, 0.01}, {0.99, 0.001}});
  for (int i = 1; i <= 100; ++i) summary.Observe(i / 1000.0);

  const std::vector<MetricFamily> families = registry.Collect();
  const Parsed ours = Parse(RenderExposition(families));
  const Parsed theirs = Parse(prometheus::TextSerializer().Serialize(families));
  EXPECT_EQ(ours.samples, theirs.samples);
  EXPECT_EQ(ours.type, theirs.type);
  EXPECT_EQ(ours.help, theirs.help);  // no HELP here that TextSerializer mangles
}

TEST(ExpositionTest, WritesTheFormatExactly) {
  std::vector<MetricFamily> families;
  MetricFamily& counter =
      families.emplace_back(Family("a_total", "Help with \\ and\nnewline.", MetricType::Counter));
  counter.metric.emplace_back(Metric({{"x", "back\\slash"}, {"y", "quo\"te"}, {"z", "new\nline"}}))
      .counter.value = 1;
  counter.metric.emplace_back(Metric({})).counter.value = 1e6;
  MetricFamily& histogram = families.emplace_back(Family("h_seconds", "", MetricType::Histogram));
  ClientMetric& metric = histogram.metric.emplace_back(Metric({{"r", "c"}}));
  metric.histogram.sample_count = 2;
  metric.histogram.sample_sum = 0.25;
  metric.histogram.bucket = {{1, 0.0001}, {2, kInf}};
  metric.timestamp_ms = -5;
  EXPECT_EQ(RenderExposition(families),
            "# HELP a_total Help with \\\\ and\\nnewline.\n"
            "# TYPE a_total counter\n"
            "a_total{x=\"back\\\\slash\",y=\"quo\\\"te\",z=\"new\\nline\"} 1\n"
            "a_total 1000000\n"
            "# TYPE h_seconds histogram\n"
            "h_seconds_bucket{r=\"c\",le=\"0.0001\"} 1 -5\n"
            "h_seconds_bucket{r=\"c\",le=\"+Inf\"} 2 -5\n"
            "h_seconds_sum{r=\"c\"} 0.25 -5\n"
            "h_seconds_count{r=\"c\"} 2 -5\n");
}

TEST(ExpositionTest, SpecialValues) {
  MetricFamily family = Family("g", "", MetricType::Gauge);
  for (double value : {kInf, -kInf, kNaN}) family.metric.emplace_back().gauge.value = value;
  EXPECT_EQ(RenderExposition({family}), "# TYPE g gauge\ng +Inf\ng -Inf\ng NaN\n");
}

TEST(ExpositionTest, ValuesReadBackExactly) {
  MetricFamily family = Family("g", "", MetricType::Gauge);
  const double values[] = {0.1 + 0.2,
                           1.0 / 3,
                           std::numeric_limits<double>::max(),
                           std::numeric_limits<double>::min(),
                           std::numeric_limits<double>::denorm_min(),
                           -1e-300,
                           9007199254740993.0 * 2,
                           123456.789e10};
  for (double value : values) family.metric.emplace_back().gauge.value = value;
  const std::string text = RenderExposition({family});
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), std::size(values) + 1);
  for (size_t i = 0; i < std::size(values); ++i) {
    EXPECT_EQ(std::strtod(lines[i + 1].c_str() + 2, nullptr), values[i]) << lines[i + 1];
  }
}

TEST(ExpositionTest, EmptyInputs) {
  EXPECT_EQ(RenderExposition({}), "");
  EXPECT_EQ(RenderExposition({Family("c_total", "", MetricType::Counter)}),
            "# TYPE c_total counter\n");
  EXPECT_EQ(RenderExposition({Family("s", "S.", MetricType::Summary)}),
            "# HELP s S.\n# TYPE s summary\n");
  // Same as TextSerializer for families without series.
  const std::vector<MetricFamily> empty = {Family("a", "A.", MetricType::Histogram),
                                           Family("b", "", MetricType::Untyped)};
  EXPECT_EQ(RenderExposition(empty), prometheus::TextSerializer().Serialize(empty));
}

TEST(ExpositionTest, AppendsToWhatIsThere) {
  std::string out = "prefix\n";
  MetricFamily family = Family("g", "", MetricType::Gauge);
  family.metric.emplace_back().gauge.value = 2;
  AppendExposition({family}, &out);
  EXPECT_EQ(out, "prefix\n# TYPE g gauge\ng 2\n");
}

TEST(ExpositionTest, PromtoolAcceptsIt) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool not found (Debian package `prometheus`, in scripts/setup): the "
                    "exposition was NOT checked by promtool";
  }
  std::vector<MetricFamily> families = EveryType();
  MetricFamily& escaped = families.emplace_back(
      Family("escaped_total", "Help with \\ and\nnewline.", MetricType::Counter));
  escaped.metric.emplace_back(Metric({{"x", "quo\"te \\ new\nline"}})).counter.value = 1;
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/exposition_test_", getpid(), ".prom");
  {
    std::ofstream file(path);
    file << RenderExposition(families);
  }
  const testing::CommandResult result =
      testing::RunCommand(absl::StrCat("promtool check metrics < '", path, "' 2>&1"));
  std::remove(path.c_str());
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, ::testing::Not(HasSubstr("error")));
}

}  // namespace
}  // namespace tcpscope
