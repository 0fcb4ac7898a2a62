// Live fan-out of applied events to watchers. Each watcher has a bounded queue: a slow watcher
// misses events (and is told how many) but never slows ingestion.
#pragma once

#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "tcpscope/v1/events.pb.h"

namespace tcpscope::service {

class EventWatcher {
 public:
  virtual ~EventWatcher() = default;
  // Called for every applied batch; must not block.
  virtual void Offer(const std::string& host,
                     const google::protobuf::RepeatedPtrField<v1::Event>& events) = 0;
};

class EventHub {
 public:
  void Add(EventWatcher* watcher);
  // After Remove returns, the watcher is never offered anything again.
  void Remove(EventWatcher* watcher);
  void Publish(const std::string& host,
               const google::protobuf::RepeatedPtrField<v1::Event>& events);

 private:
  absl::Mutex mu_;
  std::vector<EventWatcher*> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tcpscope::service
