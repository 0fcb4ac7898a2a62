// A small parser for the text exposition format (enough for tcpscope's own output).
#include "tests/harness/metrics_text.h"

#include <cstdlib>
#include <sstream>
#include <vector>

namespace tcpscope::testing {
namespace {

struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

std::vector<Sample> Parse(const std::string& exposition) {
  std::vector<Sample> samples;
  std::istringstream lines(exposition);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    Sample sample;
    size_t i = line.find_first_of("{ ");
    if (i == std::string::npos) continue;
    sample.name = line.substr(0, i);
    if (line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') break;
        std::string key = line.substr(i, eq - i);
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) ++j;
          value += line[j];
        }
        sample.labels[key] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;
    }
    sample.value = std::strtod(line.c_str() + i, nullptr);
    samples.push_back(std::move(sample));
  }
  return samples;
}

bool Includes(const Labels& have, const Labels& want) {
  for (const auto& [key, value] : want) {
    auto it = have.find(key);
    if (it == have.end() || it->second != value) return false;
  }
  return true;
}

}  // namespace

std::optional<double> MetricValue(const std::string& exposition, const std::string& name,
                                  const Labels& labels) {
  for (const Sample& sample : Parse(exposition)) {
    if (sample.name == name && sample.labels == labels) return sample.value;
  }
  return std::nullopt;
}

double MetricSum(const std::string& exposition, const std::string& name, const Labels& labels) {
  double sum = 0;
  for (const Sample& sample : Parse(exposition)) {
    if (sample.name == name && Includes(sample.labels, labels)) sum += sample.value;
  }
  return sum;
}

}  // namespace tcpscope::testing
