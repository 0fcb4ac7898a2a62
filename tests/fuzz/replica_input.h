// The replica fuzzer's input: the messages of a peer replica's Exchange stream, each as a 2-byte
// little-endian length and that many bytes of a serialized v1::ReplicaMessage. A message whose
// `ring` is 1 is sent under the receiver's ring (the fuzzer puts the real id in), so that its
// fragments are applied rather than ignored.
#pragma once

#include <cstdint>
#include <string>

namespace tcpscope::fuzz {

inline constexpr uint64_t kSameRing = 1;

inline void AppendReplicaMessage(std::string* input, const std::string& message) {
  input->push_back(static_cast<char>(message.size() & 0xff));
  input->push_back(static_cast<char>((message.size() >> 8) & 0xff));
  input->append(message.substr(0, 0xffff));
}

}  // namespace tcpscope::fuzz
