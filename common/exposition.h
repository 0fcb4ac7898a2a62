// The Prometheus text exposition format (version 0.0.4) of prometheus-cpp's collected metric
// families, written straight into one string: what /metrics serves.
//
// prometheus-cpp's TextSerializer formats through an std::ostream, one operator<< per token; at
// thousands of hosts' series that, not collecting them, was most of a scrape (BENCHMARKS.md).
//
// Sample for sample the output parses to what TextSerializer gives (same names, labels and
// values), except where TextSerializer is wrong or lossy:
// - HELP text is escaped (`\\`, `\n`); TextSerializer writes a newline in it raw, which breaks
//   the exposition.
// - Values are written in the shortest form that reads back as the same double (integral values
//   below 2^53 as integers); TextSerializer rounds to 16 significant digits. NaN is "NaN".
// - Histogram and summary lines come in the conventional order: buckets (quantiles), _sum,
//   _count.
// `le` and `quantile` label values are written exactly as TextSerializer writes them (as printf
// "%.16g"), because they are part of a series' identity: switching renderers must not start new
// series.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace tcpscope {

// Appends the exposition of `families`, in their order, to `*out`.
void AppendExposition(const std::vector<prometheus::MetricFamily>& families, std::string* out);

// The exposition of `families` as a new string.
std::string RenderExposition(const std::vector<prometheus::MetricFamily>& families);

// Series computed at scrape time from a program's own state, family by family, without
// prometheus-cpp's per-series objects: the writer either appends the text exposition directly
// (TextSampleWriter, what /metrics uses) or builds MetricFamily values (FamilyCollector, for a
// Collectable's Collect()). Label values are escaped by the writer; label names and family
// names must be valid. A family without any series is left out, as prometheus-cpp does.
class SampleWriter {
 public:
  using Label = std::pair<absl::string_view, absl::string_view>;
  using Labels = absl::Span<const Label>;

  virtual ~SampleWriter() = default;
  // Starts a family. The strings must outlive the writer's use of them (static text).
  virtual void Family(absl::string_view name, absl::string_view help,
                      prometheus::MetricType type) = 0;
  // A counter or gauge series of the current family.
  virtual void Sample(Labels labels, double value) = 0;
  // A histogram series: `buckets[i]` counts the observations in (bounds[i-1], bounds[i]], and
  // the last one (buckets.size() == bounds.size() + 1) those above every bound.
  virtual void Histogram(Labels labels, absl::Span<const double> bounds,
                         absl::Span<const uint64_t> buckets, double sum) = 0;
};

// Appends text format 0.0.4 to a string, formatted exactly like AppendExposition.
class TextSampleWriter final : public SampleWriter {
 public:
  explicit TextSampleWriter(std::string* out);
  ~TextSampleWriter() override;

  void Family(absl::string_view name, absl::string_view help, prometheus::MetricType type) override;
  void Sample(Labels labels, double value) override;
  void Histogram(Labels labels, absl::Span<const double> bounds, absl::Span<const uint64_t> buckets,
                 double sum) override;

 private:
  struct Pending;
  void StartSeries(Labels labels);

  std::string* const out_;
  std::unique_ptr<Pending> pending_;  // the family header, written before its first series
  absl::string_view name_;            // of the family being written
  std::string labels_;                // scratch
  std::vector<std::string> bounds_;   // formatted `le` values of the current bounds
  std::vector<double> bound_values_;
};

// Builds what a prometheus-cpp Collectable returns: the same values its Family would collect.
class FamilyCollector final : public SampleWriter {
 public:
  void Family(absl::string_view name, absl::string_view help, prometheus::MetricType type) override;
  void Sample(Labels labels, double value) override;
  void Histogram(Labels labels, absl::Span<const double> bounds, absl::Span<const uint64_t> buckets,
                 double sum) override;

  std::vector<prometheus::MetricFamily> Take() { return std::move(families_); }

 private:
  prometheus::ClientMetric& NewMetric(Labels labels);

  std::vector<prometheus::MetricFamily> families_;
  bool started_ = false;  // the current family has a series (is in families_)
  std::string name_, help_;
  prometheus::MetricType type_ = prometheus::MetricType::Untyped;
};

// A Collectable that can also write its series straight into a scrape's text (MetricsServer
// calls AppendExposition instead of Collect): what a program exporting many series from its
// own state implements, so a scrape builds no MetricFamily for them.
class ExpositionCollectable : public prometheus::Collectable {
 public:
  virtual void AppendExposition(std::string* out) const = 0;
};

}  // namespace tcpscope
