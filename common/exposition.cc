// Prometheus text format 0.0.4 writer: one size estimate and reserve, then plain appends;
// numbers through std::to_chars, each series' escaped labels rendered once and reused for every
// line of a histogram or summary.
#include "common/exposition.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/string_view.h"

namespace tcpscope {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Integral doubles up to this magnitude convert to int64_t exactly.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

// Characters per line besides the name and labels: suffix, le, value, timestamp, punctuation.
constexpr size_t kLineOverhead = 64;

void Append(std::string* out, absl::string_view text) { out->append(text.data(), text.size()); }

template <typename Integer>
void AppendInteger(std::string* out, Integer value) {
  char buffer[24];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out->append(buffer, static_cast<size_t>(result.ptr - buffer));
}

// A sample value: the shortest text that reads back as the same double.
void AppendValue(std::string* out, double value) {
  if (std::isnan(value)) return Append(out, "NaN");
  if (std::isinf(value)) return Append(out, value > 0 ? "+Inf" : "-Inf");
  // Counters and gauges are mostly integral: "1000000" rather than to_chars' "1e+06", and faster.
  if (value == std::trunc(value) && std::fabs(value) <= kMaxExactInteger &&
      !(value == 0 && std::signbit(value))) {
    return AppendInteger(out, static_cast<int64_t>(value));
  }
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out->append(buffer, static_cast<size_t>(result.ptr - buffer));
}

// An `le` or `quantile` label value, as TextSerializer writes it (printf "%.16g"; NaN, never a
// real bound, is "NaN" where TextSerializer writes "Nan").
std::string FormatBound(double bound) {
  if (std::isnan(bound)) return "NaN";
  if (std::isinf(bound)) return bound > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  const auto result =
      std::to_chars(buffer, buffer + sizeof(buffer), bound, std::chars_format::general, 16);
  return std::string(buffer, static_cast<size_t>(result.ptr - buffer));
}

// Bucket bounds are the same for every series of a family: format each distinct one once.
class BoundCache {
 public:
  const std::string& Get(size_t index, double bound) {
    if (index >= entries_.size()) entries_.resize(index + 1);
    auto& [cached_bound, text, valid] = entries_[index];
    // Compared as bits, so NaN and -0 are cached like any other bound.
    if (!valid || std::bit_cast<uint64_t>(cached_bound) != std::bit_cast<uint64_t>(bound)) {
      cached_bound = bound;
      text = FormatBound(bound);
      valid = true;
    }
    return text;
  }

 private:
  struct Entry {
    double bound = 0;
    std::string text;
    bool valid = false;
  };
  std::vector<Entry> entries_;
};

// Label values escape `\`, `"` and newline; HELP text escapes `\` and newline.
template <bool kQuote>
void AppendEscaped(std::string* out, absl::string_view text) {
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\\' || c == '\n' || (kQuote && c == '"')) {
      out->append(text.data() + start, i - start);
      out->push_back('\\');
      out->push_back(c == '\n' ? 'n' : c);
      start = i + 1;
    }
  }
  out->append(text.data() + start, text.size() - start);
}

// `a="x",b="y"`: the labels of one series, without braces.
void RenderLabels(const ClientMetric& metric, std::string* labels) {
  labels->clear();
  for (const ClientMetric::Label& label : metric.label) {
    if (!labels->empty()) labels->push_back(',');
    Append(labels, label.name);
    Append(labels, "=\"");
    AppendEscaped<true>(labels, label.value);
    labels->push_back('"');
  }
}

// Everything of a sample line up to its value: name, suffix, labels and the trailing space.
void AppendHead(std::string* out, absl::string_view name, absl::string_view suffix,
                absl::string_view labels, absl::string_view extra_name = {},
                absl::string_view extra_value = {}) {
  Append(out, name);
  Append(out, suffix);
  if (!labels.empty() || !extra_name.empty()) {
    out->push_back('{');
    Append(out, labels);
    if (!extra_name.empty()) {
      if (!labels.empty()) out->push_back(',');
      Append(out, extra_name);
      Append(out, "=\"");
      Append(out, extra_value);  // a formatted number: nothing to escape
      out->push_back('"');
    }
    out->push_back('}');
  }
  out->push_back(' ');
}

void AppendTail(std::string* out, const ClientMetric& metric) {
  if (metric.timestamp_ms != 0) {
    out->push_back(' ');
    AppendInteger(out, metric.timestamp_ms);
  }
  out->push_back('\n');
}

absl::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::Counter:
      return "counter";
    case MetricType::Gauge:
      return "gauge";
    case MetricType::Summary:
      return "summary";
    case MetricType::Histogram:
      return "histogram";
    case MetricType::Untyped:
      break;
  }
  return "untyped";
}

size_t LinesOf(const MetricFamily& family, const ClientMetric& metric) {
  switch (family.type) {
    case MetricType::Histogram:
      return metric.histogram.bucket.size() + 3;  // + a +Inf bucket if missing, _sum, _count
    case MetricType::Summary:
      return metric.summary.quantile.size() + 2;
    default:
      return 1;
  }
}

// An upper bound of the output's size, so it is allocated once.
size_t EstimateSize(const std::vector<MetricFamily>& families) {
  size_t size = 0;
  for (const MetricFamily& family : families) {
    size += 2 * family.name.size() + 2 * family.help.size() + 32;
    for (const ClientMetric& metric : family.metric) {
      size_t labels = 2;
      for (const ClientMetric::Label& label : metric.label) {
        // Escaping at most doubles a value.
        labels += label.name.size() + 2 * label.value.size() + 4;
      }
      size += LinesOf(family, metric) * (family.name.size() + labels + kLineOverhead);
    }
  }
  return size;
}

class FamilyWriter {
 public:
  explicit FamilyWriter(std::string* out) : out_(out) {}

  void Write(const MetricFamily& family) {
    if (!family.help.empty()) {
      Append(out_, "# HELP ");
      Append(out_, family.name);
      out_->push_back(' ');
      AppendEscaped<false>(out_, family.help);
      out_->push_back('\n');
    }
    Append(out_, "# TYPE ");
    Append(out_, family.name);
    out_->push_back(' ');
    Append(out_, TypeName(family.type));
    out_->push_back('\n');
    for (const ClientMetric& metric : family.metric) {
      RenderLabels(metric, &labels_);
      switch (family.type) {
        case MetricType::Counter:
          Simple(family.name, metric, metric.counter.value);
          break;
        case MetricType::Gauge:
          Simple(family.name, metric, metric.gauge.value);
          break;
        case MetricType::Untyped:
          Simple(family.name, metric, metric.untyped.value);
          break;
        case MetricType::Summary:
          Summary(family.name, metric);
          break;
        case MetricType::Histogram:
          Histogram(family.name, metric);
          break;
      }
    }
  }

 private:
  void Simple(absl::string_view name, const ClientMetric& metric, double value) {
    AppendHead(out_, name, "", labels_);
    AppendValue(out_, value);
    AppendTail(out_, metric);
  }

  void Summary(absl::string_view name, const ClientMetric& metric) {
    const ClientMetric::Summary& summary = metric.summary;
    for (size_t i = 0; i < summary.quantile.size(); ++i) {
      const ClientMetric::Quantile& quantile = summary.quantile[i];
      AppendHead(out_, name, "", labels_, "quantile", bounds_.Get(i, quantile.quantile));
      AppendValue(out_, quantile.value);
      AppendTail(out_, metric);
    }
    SumAndCount(name, metric, summary.sample_sum, summary.sample_count);
  }

  void Histogram(absl::string_view name, const ClientMetric& metric) {
    const ClientMetric::Histogram& histogram = metric.histogram;
    double last = -std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < histogram.bucket.size(); ++i) {
      const ClientMetric::Bucket& bucket = histogram.bucket[i];
      AppendHead(out_, name, "_bucket", labels_, "le", bounds_.Get(i, bucket.upper_bound));
      AppendInteger(out_, bucket.cumulative_count);
      AppendTail(out_, metric);
      last = bucket.upper_bound;
    }
    // The format requires a +Inf bucket; it counts every sample.
    if (last != std::numeric_limits<double>::infinity()) {
      AppendHead(out_, name, "_bucket", labels_, "le", "+Inf");
      AppendInteger(out_, histogram.sample_count);
      AppendTail(out_, metric);
    }
    SumAndCount(name, metric, histogram.sample_sum, histogram.sample_count);
  }

  void SumAndCount(absl::string_view name, const ClientMetric& metric, double sum, uint64_t count) {
    AppendHead(out_, name, "_sum", labels_);
    AppendValue(out_, sum);
    AppendTail(out_, metric);
    AppendHead(out_, name, "_count", labels_);
    AppendInteger(out_, count);
    AppendTail(out_, metric);
  }

  std::string* const out_;
  std::string labels_;  // scratch: the current series' labels, reused for each of its lines
  BoundCache bounds_;
};

}  // namespace

void AppendExposition(const std::vector<MetricFamily>& families, std::string* out) {
  out->reserve(out->size() + EstimateSize(families));
  FamilyWriter writer(out);
  for (const MetricFamily& family : families) writer.Write(family);
}

std::string RenderExposition(const std::vector<MetricFamily>& families) {
  std::string out;
  AppendExposition(families, &out);
  return out;
}

struct TextSampleWriter::Pending {
  absl::string_view name, help;
  MetricType type;
};

TextSampleWriter::TextSampleWriter(std::string* out) : out_(out) {}
TextSampleWriter::~TextSampleWriter() = default;

void TextSampleWriter::Family(absl::string_view name, absl::string_view help, MetricType type) {
  pending_ = std::make_unique<Pending>(Pending{name, help, type});
}

void TextSampleWriter::StartSeries(Labels labels) {
  if (pending_ != nullptr) {
    // The header of a family with a series, as FamilyWriter::Write writes it.
    if (!pending_->help.empty()) {
      Append(out_, "# HELP ");
      Append(out_, pending_->name);
      out_->push_back(' ');
      AppendEscaped<false>(out_, pending_->help);
      out_->push_back('\n');
    }
    Append(out_, "# TYPE ");
    Append(out_, pending_->name);
    out_->push_back(' ');
    Append(out_, TypeName(pending_->type));
    out_->push_back('\n');
    name_ = pending_->name;
    pending_.reset();
  }
  labels_.clear();
  for (const Label& label : labels) {
    if (!labels_.empty()) labels_.push_back(',');
    Append(&labels_, label.first);
    Append(&labels_, "=\"");
    AppendEscaped<true>(&labels_, label.second);
    labels_.push_back('"');
  }
}

void TextSampleWriter::Sample(Labels labels, double value) {
  StartSeries(labels);
  AppendHead(out_, name_, "", labels_);
  AppendValue(out_, value);
  out_->push_back('\n');
}

void TextSampleWriter::Histogram(Labels labels, absl::Span<const double> bounds,
                                 absl::Span<const uint64_t> buckets, double sum) {
  StartSeries(labels);
  // Bounds are the same for every series of a family: formatted once.
  if (bound_values_.size() != bounds.size() ||
      !std::equal(bounds.begin(), bounds.end(), bound_values_.begin(), [](double a, double b) {
        return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
      })) {
    bound_values_.assign(bounds.begin(), bounds.end());
    bounds_.clear();
    for (double bound : bounds) bounds_.push_back(FormatBound(bound));
  }
  uint64_t cumulative = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    cumulative += buckets[i];
    AppendHead(out_, name_, "_bucket", labels_, "le",
               i < bounds_.size() ? absl::string_view(bounds_[i]) : absl::string_view("+Inf"));
    AppendInteger(out_, cumulative);
    out_->push_back('\n');
  }
  AppendHead(out_, name_, "_sum", labels_);
  AppendValue(out_, sum);
  out_->push_back('\n');
  AppendHead(out_, name_, "_count", labels_);
  AppendInteger(out_, cumulative);
  out_->push_back('\n');
}

void FamilyCollector::Family(absl::string_view name, absl::string_view help, MetricType type) {
  started_ = false;
  name_ = std::string(name);
  help_ = std::string(help);
  type_ = type;
}

ClientMetric& FamilyCollector::NewMetric(Labels labels) {
  if (!started_) {
    started_ = true;
    MetricFamily& family = families_.emplace_back();
    family.name = name_;
    family.help = help_;
    family.type = type_;
  }
  ClientMetric& metric = families_.back().metric.emplace_back();
  for (const Label& label : labels) {
    metric.label.push_back({std::string(label.first), std::string(label.second)});
  }
  return metric;
}

void FamilyCollector::Sample(Labels labels, double value) {
  ClientMetric& metric = NewMetric(labels);
  switch (type_) {
    case MetricType::Counter:
      metric.counter.value = value;
      break;
    case MetricType::Gauge:
      metric.gauge.value = value;
      break;
    default:
      metric.untyped.value = value;
      break;
  }
}

void FamilyCollector::Histogram(Labels labels, absl::Span<const double> bounds,
                                absl::Span<const uint64_t> buckets, double sum) {
  ClientMetric::Histogram& histogram = NewMetric(labels).histogram;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    cumulative += buckets[i];
    ClientMetric::Bucket& bucket = histogram.bucket.emplace_back();
    bucket.cumulative_count = cumulative;
    bucket.upper_bound = i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity();
  }
  histogram.sample_count = cumulative;
  histogram.sample_sum = sum;
}

}  // namespace tcpscope
