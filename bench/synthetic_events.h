// Agent traffic for benchmarks: batches of every event kind in the proportions of a busy host,
// with values the service's validation accepts, built the way the eBPF source fills them.
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tcpscope/v1/ingest.pb.h"

namespace tcpscope::bench {

// A valid hello for `host_name` (source eBPF with the eBPF source's capabilities, a boot id
// derived from `instance_id`).
v1::Hello SyntheticHello(absl::string_view host_name, uint64_t instance_id);

// `events` events without a sequence number: about 40% handshakes, 40% closes, 5% handshake
// failures, 8% keepalive probes, 5% answered probes, 2% keepalive timeouts, from both roles,
// IPv4 and (10%) IPv6, times within the second before `now`. The same seed gives the same
// batch.
v1::Batch SyntheticBatch(int events, uint64_t seed, absl::Time now);

}  // namespace tcpscope::bench
