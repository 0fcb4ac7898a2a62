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

#include <string>
#include <vector>

#include "prometheus/metric_family.h"

namespace tcpscope {

// Appends the exposition of `families`, in their order, to `*out`.
void AppendExposition(const std::vector<prometheus::MetricFamily>& families, std::string* out);

// The exposition of `families` as a new string.
std::string RenderExposition(const std::vector<prometheus::MetricFamily>& families);

}  // namespace tcpscope
