// A recording of the eBPF ring buffer's raw records (what --record_ring writes and
// --source=replay:FILE plays), so the agent's handling of kernel records runs again without a
// kernel, root or eBPF, as Falco's savefile source does for its events.
//
// Format: the 8 bytes "TSRING1\n", then little-endian fields: u32 record size (the
// tcpscope_event this agent was built with: a capture from another layout is refused), i64
// CLOCK_REALTIME - CLOCK_MONOTONIC when recording started (so replayed events keep their times),
// then each record as u32 length + bytes.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace tcpscope::agent {

class RingCaptureWriter {
 public:
  static absl::StatusOr<std::unique_ptr<RingCaptureWriter>> Create(const std::string& path,
                                                                   int64_t monotonic_to_unix_ns);
  ~RingCaptureWriter();
  // Buffered; written out at Flush() and when destroyed.
  absl::Status Append(const void* data, size_t size);
  absl::Status Flush();

 private:
  RingCaptureWriter(FILE* file, std::string path) : file_(file), path_(std::move(path)) {}
  FILE* file_;
  const std::string path_;
};

class RingCaptureReader {
 public:
  static absl::StatusOr<std::unique_ptr<RingCaptureReader>> Open(const std::string& path);
  ~RingCaptureReader();

  int64_t monotonic_to_unix_ns() const { return monotonic_to_unix_ns_; }
  // The next record, nullopt at the end; an error for a truncated or corrupt file.
  absl::StatusOr<std::optional<std::string>> Next();

 private:
  RingCaptureReader(FILE* file, std::string path, int64_t offset)
      : file_(file), path_(std::move(path)), monotonic_to_unix_ns_(offset) {}
  FILE* file_;
  const std::string path_;
  const int64_t monotonic_to_unix_ns_;
};

}  // namespace tcpscope::agent
