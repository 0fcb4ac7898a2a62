// Closes that say reset_received although this end may have sent the RST itself. When data
// reaches an end whose application shut reading down, Linux resets the end through tcp_reset
// (TcpExtTCPAbortOnData), which fires tcp_receive_reset, and only then sends the RST. The eBPF
// program flags such closes (TCPSCOPE_FLAG_RESET_MAYBE_SENT) and, if the end answered with an
// RST, follows them with a RESET_ANSWERED record within the same softirq. This holds the flagged
// closes until that record arrives (reset_sent) or can no longer arrive (reset_received).
// Consumer thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "tcpscope/v1/events.pb.h"

namespace tcpscope::agent {

class AbortOnDataCloses {
 public:
  // The RESET_ANSWERED record is reserved microseconds after the close (same CPU, same softirq,
  // bottom halves off); the margin covers a virtual CPU descheduled in between.
  static constexpr absl::Duration kAnswerWithin = absl::Milliseconds(20);

  // `close` is a close event recorded at `time_ns` (CLOCK_MONOTONIC, the record's clock).
  void Hold(v1::Event close, uint64_t time_ns);
  // The end of `connection_id` answered with an RST: its held close, if any, is released into
  // `out` as reset_sent.
  void ResetAnswered(uint64_t connection_id, google::protobuf::RepeatedPtrField<v1::Event>* out);
  // Releases, as they are (reset_received), the closes whose answer would be visible by now:
  // `drained_at_ns` is when (CLOCK_MONOTONIC) a drain of the ring started.
  void Release(uint64_t drained_at_ns, google::protobuf::RepeatedPtrField<v1::Event>* out);
  void ReleaseAll(google::protobuf::RepeatedPtrField<v1::Event>* out);

  bool empty() const { return held_.empty(); }

 private:
  struct Held {
    v1::Event close;
    uint64_t time_ns;
  };
  std::vector<Held> held_;  // few at a time: flagged closes wait microseconds for their answer
};

}  // namespace tcpscope::agent
