// Turns the eBPF program's ring-buffer records into tcpscope.v1 events: a pure function, so
// every kind and odd input is unit-tested without a kernel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "agent/bpf/tcpscope_event.h"
#include "tcpscope/v1/events.pb.h"

namespace tcpscope::agent {

// Fills `event` (which the caller may take from a batch, to avoid a copy) from one record.
// `monotonic_to_unix_ns` converts CLOCK_MONOTONIC (the record's clock) to Unix time. Records of
// the wrong size or with an unknown kind or family are errors.
absl::Status DecodeBpfEvent(const void* data, size_t size, int64_t monotonic_to_unix_ns,
                            v1::Event* event);

// The record's process name as the service accepts it: printable ASCII ('?' for any other byte).
std::string CommandOf(const char (&comm)[16]);

// CLOCK_REALTIME - CLOCK_MONOTONIC now.
int64_t MonotonicToUnixOffsetNs();

}  // namespace tcpscope::agent
