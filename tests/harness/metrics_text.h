// Reads values out of a Prometheus text exposition, for asserting exact metric values.
#pragma once

#include <map>
#include <optional>
#include <string>

namespace tcpscope::testing {

using Labels = std::map<std::string, std::string>;

// The value of the series `name` whose labels are exactly `labels`; nullopt when absent.
std::optional<double> MetricValue(const std::string& exposition, const std::string& name,
                                  const Labels& labels);

// The sum over every series of `name` whose labels include `labels`.
double MetricSum(const std::string& exposition, const std::string& name, const Labels& labels);

}  // namespace tcpscope::testing
