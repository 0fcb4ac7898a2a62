// jemalloc's mallctl is declared weak: it resolves only in a binary that links jemalloc.
#include "common/allocator.h"

#include <malloc.h>

#include <cstddef>

extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

namespace tcpscope {

std::string AllocatorName() { return mallctl != nullptr ? "jemalloc" : "glibc malloc"; }

void ReleaseFreeMemory() {
  if (mallctl != nullptr) {
    // MALLCTL_ARENAS_ALL (4096): every arena.
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    return;
  }
  malloc_trim(0);
}

bool SnapshotMemory::ReleaseAfter(size_t ends) {
  const bool release = ends < kSmallSnapshot || ends < last_ends_ / 2;
  last_ends_ = ends;
  return release;
}

}  // namespace tcpscope
