// The process's memory allocator: jemalloc where the binary links it (the agent: a third less CPU
// per event than glibc's malloc, BENCHMARKS.md), glibc's malloc otherwise (tests, sanitizer
// builds). Either way, what is free can be handed back to the kernel at quiet moments.
#pragma once

#include <cstddef>
#include <string>

namespace tcpscope {

// "jemalloc" or "glibc malloc", for the start-up log.
std::string AllocatorName();

// Returns the allocator's free pages to the kernel: jemalloc purges every arena, glibc trims its
// heaps.
void ReleaseFreeMemory();

// When a source hands free memory back: after a small snapshot (what it frees costs little to
// fault in again) or one much smaller than the one before (a burst is over), so an agent gone
// idle does not keep what a burst used. A large snapshot as large as the last keeps its pages for
// the next one: purged, they were faulted in again at every snapshot, under churn a fifth of the
// agent's CPU (BENCHMARKS.md).
class SnapshotMemory {
 public:
  // Snapshots of fewer ends are small.
  static constexpr size_t kSmallSnapshot = 16384;

  // After a snapshot of `ends` ends: whether to ReleaseFreeMemory() now.
  bool ReleaseAfter(size_t ends);

 private:
  size_t last_ends_ = 0;
};

}  // namespace tcpscope
