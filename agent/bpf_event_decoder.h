// Turns the eBPF program's ring-buffer records into tcpscope.v1 events or the facts that are not
// events: a pure function, so every kind and odd input is unit-tested without a kernel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/bpf/tcpscope_event.h"
#include "tcpscope/v1/events.pb.h"

namespace tcpscope::agent {

// A lifecycle event, decoded into the event the caller passed. `reset_maybe_sent`: a close the
// kernel may have reset itself; a ResetAnswered for its connection decides
// (agent/abort_on_data.h).
struct KernelEvent {
  uint64_t monotonic_ns = 0;  // the record's time, on the ring's clock
  bool reset_maybe_sent = false;
};

// Not an event: when this end sent its FIN, and the process that closed it (agent/fin_times.h).
struct FinSent {
  uint64_t connection_id = 0;
  absl::Time time;
  uint32_t pid = 0;  // 0: the kernel context did not tell (then no command either)
  uint64_t cgroup_id = 0;
  std::string command;
};

// Not an event: this end, already closed, answered the segment that closed it with an RST.
struct ResetAnswered {
  uint64_t connection_id = 0;
};

using BpfRecord = std::variant<KernelEvent, FinSent, ResetAnswered>;

// Decodes one ring-buffer record. `monotonic_to_unix_ns` converts CLOCK_MONOTONIC (the record's
// clock) to Unix time. An event is written into `*event`, which must be empty: the agent passes
// the next event of its batch, on the batch's arena, so that decoding allocates nothing of its
// own. Records of the wrong size, or with an unknown kind or family, are errors (and may leave
// `*event` half written).
absl::StatusOr<BpfRecord> DecodeBpfRecord(const void* data, size_t size,
                                          int64_t monotonic_to_unix_ns, v1::Event* event);

// The record's process name as the service accepts it: printable ASCII ('?' for any other byte).
std::string CommandOf(const char (&comm)[16]);

// The event kinds the kernel side emits, by their proto names (a source's capabilities).
std::vector<std::string> KernelEventKindNames();

}  // namespace tcpscope::agent
