// The ingest fuzzer's input format, shared by the fuzzer (reading) and the seed generator
// (writing). An input is a script of steps, each `op` (1 byte), `length` (2 bytes, little
// endian) and `length` bytes of payload (cut short at the end of the input):
//   op % 4 == 0  message on stream (op >> 2) & 1: the payload is a tcpscope.v1.AgentMessage
//   op % 4 == 1  stream (op >> 2) & 1 ends (the agent closed it)
//   op % 4 == 2  the clock moves (op >> 2) * 30 s forward, then hosts expire
//   op % 4 == 3  query: the payload is a tcpscope.v1.ListConnectionsRequest
// A message on a stream that ended (closed, or refused) opens a new one. Two streams let the
// fuzzer reach a second agent claiming a connected host; ends, reconnects and clock steps reach
// resends after a reconnect and host expiry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tcpscope::fuzz {

enum class Op : uint8_t { kMessage = 0, kEndStream = 1, kAdvanceClock = 2, kQuery = 3 };

struct Step {
  Op op;
  int stream;        // kMessage, kEndStream: 0 or 1
  int half_minutes;  // kAdvanceClock: 0..63
  std::string_view payload;
};

inline std::vector<Step> ReadSteps(const uint8_t* data, size_t size) {
  std::vector<Step> steps;
  size_t offset = 0;
  while (offset < size) {
    const uint8_t op = data[offset++];
    size_t length = 0;
    if (offset + 2 <= size) {
      length = static_cast<size_t>(data[offset]) | static_cast<size_t>(data[offset + 1]) << 8;
      offset += 2;
    } else {
      offset = size;
    }
    if (length > size - offset) length = size - offset;
    steps.push_back(Step{static_cast<Op>(op & 3), (op >> 2) & 1, op >> 2,
                         std::string_view(reinterpret_cast<const char*>(data) + offset, length)});
    offset += length;
  }
  return steps;
}

// Appends one step; `arg` is the stream (kMessage, kEndStream) or half-minutes (kAdvanceClock).
inline void AppendStep(std::string* out, Op op, int arg, std::string_view payload = {}) {
  out->push_back(static_cast<char>(static_cast<uint8_t>(op) | static_cast<uint8_t>(arg << 2)));
  out->push_back(static_cast<char>(payload.size() & 0xff));
  out->push_back(static_cast<char>((payload.size() >> 8) & 0xff));
  out->append(payload);
}

}  // namespace tcpscope::fuzz
