// Holding and resolving the closes the kernel may have reset itself.
#include "agent/abort_on_data.h"

#include <algorithm>

namespace tcpscope::agent {

void AbortOnDataCloses::Hold(v1::Event close, uint64_t time_ns) {
  held_.push_back({std::move(close), time_ns});
}

void AbortOnDataCloses::ResetAnswered(uint64_t connection_id,
                                      google::protobuf::RepeatedPtrField<v1::Event>* out) {
  auto it = std::find_if(held_.begin(), held_.end(), [connection_id](const Held& held) {
    return held.close.connection_id() == connection_id;
  });
  if (it == held_.end()) return;  // an abort whose close was not in doubt (linger 0, unread data)
  it->close.mutable_close()->set_reason(v1::CLOSE_REASON_RESET_SENT);
  out->Add(std::move(it->close));
  held_.erase(it);
}

void AbortOnDataCloses::Release(uint64_t drained_at_ns,
                                google::protobuf::RepeatedPtrField<v1::Event>* out) {
  const uint64_t within = static_cast<uint64_t>(absl::ToInt64Nanoseconds(kAnswerWithin));
  std::erase_if(held_, [&](Held& held) {
    if (held.time_ns + within > drained_at_ns) return false;
    out->Add(std::move(held.close));
    return true;
  });
}

void AbortOnDataCloses::ReleaseAll(google::protobuf::RepeatedPtrField<v1::Event>* out) {
  for (Held& held : held_) out->Add(std::move(held.close));
  held_.clear();
}

}  // namespace tcpscope::agent
