// A strict reader of the service's Prometheus text exposition for the ingest fuzzer: every line
// well formed, every series with exactly its family's labels, every label value plain (nothing
// to escape) and from its label's bounded set (SPEC: no label per connection or address; workload
// labels only what ValidateName allows, or empty; ports 0-65535 or "other"), every value finite
// and non-negative.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tcpscope::fuzz {

struct Sample {
  std::string name;  // as written, with _bucket/_sum/_count
  std::map<std::string, std::string> labels;
  double value = 0;
};

// The samples of `text`, or an error naming the first line that breaks the rules. `host`
// labels are checked only for their characters; the caller knows which hosts may appear.
absl::StatusOr<std::vector<Sample>> ReadExposition(absl::string_view text);

}  // namespace tcpscope::fuzz
