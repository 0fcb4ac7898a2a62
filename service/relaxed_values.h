// The series values of the service's hosts: relaxed atomics (each value stands alone; a scrape
// reads them while streams write them), and enum values as table indexes.
#pragma once

#include <atomic>
#include <cstdint>

namespace tcpscope::service {

// An enum value as a table index; values the proto does not know count as 0 (unspecified).
inline int Index(int value, int size) { return value >= 0 && value < size ? value : 0; }

inline void Add(std::atomic<uint64_t>& counter, uint64_t count = 1) {
  counter.fetch_add(count, std::memory_order_relaxed);
}

template <typename T>
T Load(const std::atomic<T>& value) {
  return value.load(std::memory_order_relaxed);
}

template <typename T>
void Store(std::atomic<T>& value, T to) {
  value.store(to, std::memory_order_relaxed);
}

}  // namespace tcpscope::service
