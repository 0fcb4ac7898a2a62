// The process's memory allocator: jemalloc where the binary links it (the agent: a third less CPU
// per event than glibc's malloc, BENCHMARKS.md), glibc's malloc otherwise (tests, sanitizer
// builds). Either way, what is free can be handed back to the kernel at quiet moments.
#pragma once

#include <string>

namespace tcpscope {

// "jemalloc" or "glibc malloc", for the start-up log.
std::string AllocatorName();

// Returns the allocator's free pages to the kernel: jemalloc purges every arena, glibc trims its
// heaps. Called after each snapshot, so an agent gone idle does not keep what a burst used.
void ReleaseFreeMemory();

}  // namespace tcpscope
