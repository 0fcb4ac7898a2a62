#include "service/replica_link.h"

#include <utility>
#include <vector>

#include "common/log.h"
#include "tcpscope/v1/replica.grpc.pb.h"

namespace tcpscope::service {

class ReplicaLink::Sender {
 public:
  Sender(ReplicaSet* replicas, std::string peer, prometheus::Counter& sent,
         prometheus::Counter& full, prometheus::Counter& unreachable)
      : replicas_(replicas),
        peer_(std::move(peer)),
        sent_(sent),
        full_(full),
        unreachable_(unreachable),
        thread_([this] { Run(); }) {}

  ~Sender() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      if (context_ != nullptr) context_->TryCancel();
    }
    thread_.join();
  }

  void Push(v1::ReplicaMessage message) {
    const size_t bytes = message.ByteSizeLong();
    absl::MutexLock lock(&mu_);
    if (queued_bytes_ + bytes > kMaxQueuedBytes) {
      full_.Increment();
      return;
    }
    queued_bytes_ += bytes;
    queue_.emplace_back(std::move(message), bytes);
  }

 private:
  void Run() {
    absl::Duration backoff = absl::Milliseconds(200);
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]()
                         ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
        mu_.Await(absl::Condition(&ready));
        if (stopping_) return;
      }
      if (Stream()) {
        backoff = absl::Milliseconds(200);
        continue;
      }
      // Broken: what waits is for a stream that is gone; the ring or the next snapshot will
      // rebuild what it carried.
      {
        absl::MutexLock lock(&mu_);
        unreachable_.Increment(static_cast<double>(queue_.size()));
        queue_.clear();
        queued_bytes_ = 0;
      }
      replicas_->MessagesLost(peer_);
      {
        absl::MutexLock lock(&mu_);
        if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), backoff)) return;
      }
      backoff = std::min(backoff * 2, absl::Seconds(2));
    }
  }

  // Writes the queue to one stream until it breaks (false) or the sender stops (true).
  bool Stream() {
    grpc::ClientContext context;
    replicas_->Authorize(context);
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return true;
      context_ = &context;
    }
    v1::ExchangeSummary summary;
    std::unique_ptr<v1::Replica::Stub> stub = v1::Replica::NewStub(replicas_->Channel(peer_));
    std::unique_ptr<grpc::ClientWriter<v1::ReplicaMessage>> writer =
        stub->Exchange(&context, &summary);
    bool first = true;
    bool broken = false;
    while (!broken) {
      std::vector<v1::ReplicaMessage> burst;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]()
                         ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
        mu_.Await(absl::Condition(&ready));
        // What the other streams queue meanwhile goes in the same write: every host's stream
        // forwards its own snapshots and closes, one small message each.
        auto full = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
          return stopping_ || queued_bytes_ >= kBurstBytes;
        };
        mu_.AwaitWithTimeout(absl::Condition(&full), kLinger);
        if (stopping_) break;
        burst.reserve(queue_.size());
        for (auto& [message, bytes] : queue_) burst.push_back(std::move(message));
        queue_.clear();
        queued_bytes_ = 0;
      }
      for (size_t i = 0; i < burst.size() && !broken; ++i) {
        if (first) burst[i].set_from(replicas_->self());
        grpc::WriteOptions options;
        if (i + 1 < burst.size()) options.set_buffer_hint();
        if (writer->Write(burst[i], options)) {
          first = false;
          sent_.Increment();
        } else {
          unreachable_.Increment(static_cast<double>(burst.size() - i));
          broken = true;
        }
      }
    }
    writer->WritesDone();
    const grpc::Status status = writer->Finish();
    {
      absl::MutexLock lock(&mu_);
      context_ = nullptr;
      if (stopping_) return true;
    }
    if (was_up_ || !reported_) {
      TS_LOG(WARNING) << "replica " << peer_ << ": stream ended (" << status.error_message()
                      << "); messages for it are dropped until it is back";
      reported_ = true;
    }
    was_up_ = !first;
    return false;
  }

  ReplicaSet* const replicas_;
  const std::string peer_;
  prometheus::Counter& sent_;
  prometheus::Counter& full_;
  prometheus::Counter& unreachable_;
  bool was_up_ = false;  // the last stream carried something
  bool reported_ = false;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<std::pair<v1::ReplicaMessage, size_t>> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;  // last: starts once the rest is built
};

ReplicaLink::ReplicaLink(ReplicaSet* replicas, prometheus::Registry& registry)
    : replicas_(replicas),
      dropped_(prometheus::BuildCounter()
                   .Name("tcpscope_service_replica_messages_dropped_total")
                   .Help("Messages for other replicas dropped, by reason (pairing state is "
                         "rebuilt from later snapshots)")
                   .Register(registry)),
      sent_(prometheus::BuildCounter()
                .Name("tcpscope_service_replica_messages_sent_total")
                .Help("Messages written to other replicas' Exchange streams")
                .Register(registry)
                .Add({})) {}

ReplicaLink::~ReplicaLink() {
  absl::MutexLock lock(&mu_);
  senders_.clear();
}

void ReplicaLink::Send(const std::string& peer, v1::ReplicaMessage message) {
  Sender* sender = nullptr;
  {
    absl::MutexLock lock(&mu_);
    std::unique_ptr<Sender>& slot = senders_[peer];
    if (slot == nullptr) {
      slot =
          std::make_unique<Sender>(replicas_, peer, sent_, dropped_.Add({{"reason", "queue_full"}}),
                                   dropped_.Add({{"reason", "peer_unreachable"}}));
    }
    sender = slot.get();
  }
  sender->Push(std::move(message));
}

}  // namespace tcpscope::service
