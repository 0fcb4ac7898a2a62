// Watcher registry for live events.
#include "service/event_hub.h"

#include <algorithm>

namespace tcpscope::service {

void EventHub::Add(EventWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  watchers_.push_back(watcher);
}

void EventHub::Remove(EventWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(std::remove(watchers_.begin(), watchers_.end(), watcher), watchers_.end());
}

void EventHub::Publish(const std::string& host,
                       const google::protobuf::RepeatedPtrField<v1::Event>& events) {
  if (events.empty()) return;
  absl::MutexLock lock(&mu_);
  for (EventWatcher* watcher : watchers_) watcher->Offer(host, events);
}

}  // namespace tcpscope::service
