// Protobuf wire format written by hand, for load generators that send millions of messages: a
// message is appended field by field to a std::string, without building proto objects (the
// generators check once, at start, that protobuf parses what they write).
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace tcpscope::bench::wire {

inline size_t PutVarint(uint64_t value, uint8_t* out) {
  size_t n = 0;
  while (value >= 0x80) {
    out[n++] = static_cast<uint8_t>(value | 0x80);
    value >>= 7;
  }
  out[n++] = static_cast<uint8_t>(value);
  return n;
}

inline size_t VarintSize(uint64_t value) {
  size_t n = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++n;
  }
  return n;
}

inline void AppendVarint(std::string& out, uint64_t value) {
  uint8_t buffer[10];
  out.append(reinterpret_cast<const char*>(buffer), PutVarint(value, buffer));
}

// A varint field (wire type 0); proto3 leaves zeros out.
inline void Varint(std::string& out, int field, uint64_t value) {
  if (value == 0) return;
  AppendVarint(out, static_cast<uint64_t>(field) << 3);
  AppendVarint(out, value);
}

// A length-delimited field (wire type 2): bytes, strings and serialized messages. Empty bytes
// are left out, except where `always` (an empty message that must be present).
inline void Bytes(std::string& out, int field, absl::string_view value, bool always = false) {
  if (value.empty() && !always) return;
  AppendVarint(out, (static_cast<uint64_t>(field) << 3) | 2);
  AppendVarint(out, value.size());
  out.append(value.data(), value.size());
}

// A message field whose body `write(std::string&)` appends; the body is built in `scratch`
// (reused across calls, so no allocation once it has grown).
template <typename Write>
void Message(std::string& out, int field, std::string& scratch, Write write) {
  scratch.clear();
  write(scratch);
  Bytes(out, field, scratch, /*always=*/true);
}

}  // namespace tcpscope::bench::wire
