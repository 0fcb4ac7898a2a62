// Messages to the other replicas (replica.proto's Exchange): one queue and one stream per peer,
// written by a thread of its own so that no ingest reaction waits on a peer. What a peer cannot
// take (its queue full, its stream broken) is dropped and counted: pairing state is soft, and
// the next snapshot or the ring's next change rebuilds it.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"
#include "service/aggregator.h"
#include "service/replica_set.h"
#include "tcpscope/v1/replica.pb.h"

namespace tcpscope::service {

class ReplicaLink : public ReplicaSender {
 public:
  // A peer's queue holds at most this many bytes of messages.
  static constexpr size_t kMaxQueuedBytes = 64 << 20;
  // A message waits at most this long for others to share its write (unless they reach
  // kBurstBytes first): per host, one small message per snapshot and per batch with closes
  // would otherwise cost a write each. Small next to the pairing's grace (seconds).
  static constexpr absl::Duration kLinger = absl::Milliseconds(10);
  static constexpr size_t kBurstBytes = 256 << 10;

  ReplicaLink(ReplicaSet* replicas, prometheus::Registry& registry);
  ~ReplicaLink() override;  // stops the senders; what they hold is dropped

  // Queues `message` for `peer`, after everything queued for it before.
  void Send(const std::string& peer, v1::ReplicaMessage message) override;

 private:
  class Sender;
  ReplicaSet* const replicas_;
  prometheus::Family<prometheus::Counter>& dropped_;
  prometheus::Counter& sent_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Sender>> senders_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tcpscope::service
