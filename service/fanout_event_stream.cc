// The fleet's event stream: a client reactor per replica feeding one server reactor. Every
// reaction takes the stream's lock briefly and never blocks; writes, cancellations and the
// alarm are started outside it.
#include "service/fanout_event_stream.h"

#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/alarm.h"
#include "grpcpp/client_context.h"
#include "service/fleet_merge.h"

namespace tcpscope::service {
namespace {

class FanoutEventStream : public grpc::ServerWriteReactor<v1::GetEventsResponse> {
 public:
  FanoutEventStream(QueryFanout* fanout, ServiceMetrics* metrics,
                    const v1::GetEventsRequest& request, const FanoutEventOptions& options)
      : fanout_(fanout), metrics_(metrics), request_(request), options_(options) {}

  // Opens every replica's stream (this one's over `local_channel`).
  void Start(const std::shared_ptr<grpc::Channel>& local_channel) {
    std::vector<std::string> replicas = fanout_->Peers();
    replicas.push_back(fanout_->self());
    std::sort(replicas.begin(), replicas.end());
    for (const std::string& replica : replicas) {
      auto part = std::make_unique<Part>(this, replica);
      part->stub = replica == fanout_->self() ? v1::Observer::NewStub(local_channel)
                                              : fanout_->Stub(replica);
      fanout_->Prepare(part->context,
                       request_.follow() ? absl::InfiniteFuture() : options_.history_deadline);
      parts_.push_back(std::move(part));
    }
    {
      absl::MutexLock lock(&mu_);
      open_parts_ = parts_.size();
      history_pending_ = parts_.size();
      alarm_set_ = request_.follow();
      holds_ = 1 + parts_.size() + (alarm_set_ ? 1 : 0);
    }
    if (request_.follow()) {
      // A followed stream has no deadline: its history has this one.
      alarm_.Set(absl::ToChronoTime(options_.history_deadline),
                 [this](bool fired) { OnHistoryDeadline(fired); });
    }
    for (auto& part : parts_) part->Begin(request_);
  }

  void OnWriteDone(bool ok) override {
    bool write = false;
    bool finish = false;
    grpc::Status status = grpc::Status::OK;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok || cancelled_) {
        cancelled_ = true;
        status = grpc::Status::CANCELLED;
        finish = !finished_;
        finished_ = true;
      } else {
        write = PrepareWriteLocked();
        finish = !write && FinishedLocked(&status);
      }
    }
    if (!ok) CancelParts();
    if (write) StartWrite(&out_);
    if (finish) Finish(status);
  }

  void OnCancel() override {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      if (!write_in_flight_ && !finished_) finish = finished_ = true;
    }
    CancelParts();
    if (finish) Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    CancelParts();
    Release();
  }

 private:
  // One replica's local-scope stream.
  struct Part : public grpc::ClientReadReactor<v1::GetEventsResponse> {
    Part(FanoutEventStream* owner, std::string replica)
        : owner(owner), replica(std::move(replica)) {}

    void Begin(const v1::GetEventsRequest& request) {
      stub->async()->GetEvents(&context, &request, this);
      StartRead(&in);
      StartCall();
    }
    void OnReadDone(bool ok) override {
      if (!ok) return;  // OnDone follows with the status
      owner->OnPartResponse(*this, in);
      StartRead(&in);
    }
    void OnDone(const grpc::Status& status) override { owner->OnPartDone(*this, status); }

    FanoutEventStream* const owner;
    const std::string replica;
    std::unique_ptr<v1::Observer::Stub> stub;
    grpc::ClientContext context;
    v1::GetEventsResponse in;
    // Guarded by the owner's mu_.
    std::vector<v1::HostEvent> history;
    std::vector<v1::HostEvent> early_live;  // live events before every history was in
    bool history_done = false;
    bool lost = false;       // reported as unanswered
    bool timed_out = false;  // its history did not come in time
  };

  void OnPartResponse(Part& part, v1::GetEventsResponse& response) {
    bool write = false;
    {
      absl::MutexLock lock(&mu_);
      if (part.lost) return;
      missed_ += response.missed();
      truncated_ = truncated_ || response.history_truncated();
      for (v1::HostEvent& event : *response.mutable_events()) {
        if (!part.history_done) {
          part.history.push_back(std::move(event));
        } else if (history_pending_ > 0) {
          part.early_live.push_back(std::move(event));
        } else {
          QueueLiveLocked(std::move(event));
        }
      }
      if (request_.follow() && response.history_end() && !part.history_done) {
        part.history_done = true;
        if (--history_pending_ == 0) MergeHistoriesLocked();
      }
      write = PrepareWriteLocked();
    }
    if (write) StartWrite(&out_);
  }

  void OnPartDone(Part& part, const grpc::Status& status) {
    bool write = false;
    bool finish = false;
    grpc::Status finish_status = grpc::Status::OK;
    {
      absl::MutexLock lock(&mu_);
      --open_parts_;
      // Without follow a replica's history is its whole stream; with follow, any end that is
      // not ours loses the replica's events from then on.
      const bool complete = !request_.follow() && status.ok();
      if (!complete && !part.lost && !cancelled_) {
        part.lost = true;
        v1::UnansweredReplica& missing = unanswered_.emplace_back();
        missing.set_replica(part.replica);
        missing.set_error(part.timed_out ? "DEADLINE_EXCEEDED: no history in time"
                          : status.ok()  ? "its stream ended"
                                         : DescribeStatus(status));
        if (!partial_counted_) {
          partial_counted_ = true;
          fanout_->CountPartial("GetEvents");
        }
        fanout_->NoteReplica("GetEvents", part.replica, missing.error());
      }
      if (!part.history_done) {
        part.history_done = true;
        if (part.lost) part.history.clear();  // a history cut short is not the last N
        if (--history_pending_ == 0) MergeHistoriesLocked();
      }
      if (!finished_ && !cancelled_) {
        write = PrepareWriteLocked();
        finish = !write && FinishedLocked(&finish_status);
      }
    }
    if (write) StartWrite(&out_);
    if (finish) Finish(finish_status);
    Release();
  }

  void OnHistoryDeadline(bool fired) {
    std::vector<Part*> late;
    {
      absl::MutexLock lock(&mu_);
      alarm_set_ = false;
      if (fired) {
        for (auto& part : parts_) {
          if (part->history_done) continue;
          part->timed_out = true;
          late.push_back(part.get());
        }
      }
    }
    for (Part* part : late) part->context.TryCancel();
    Release();
  }

  void MergeHistoriesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::vector<v1::HostEvent>> histories;
    std::vector<std::string> answered;
    for (auto& part : parts_) {
      histories.push_back(std::move(part->history));
      if (!part->lost) answered.push_back(part->replica);
    }
    for (v1::HostEvent& event : MergeEventHistories(std::move(histories), request_.last())) {
      queue_.push_back(std::move(event));
    }
    limit_ = queue_.size() + options_.queue_events;
    for (auto& part : parts_) {
      for (v1::HostEvent& event : part->early_live) QueueLiveLocked(std::move(event));
      part->early_live.clear();
    }
    fanout_->NoteAnswered("GetEvents", answered);
    history_merged_ = true;
  }

  void QueueLiveLocked(v1::HostEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (queue_.size() >= limit_) {
      ++missed_;
      metrics_->watch_events_missed.Increment();
      return;
    }
    queue_.push_back(std::move(event));
  }

  bool PrepareWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || finished_ || !history_merged_) return false;
    if (queue_.empty() && missed_ == 0 && !truncated_ && unanswered_.empty()) return false;
    out_.Clear();
    const size_t count = std::min(queue_.size(), options_.max_events_per_response);
    for (size_t i = 0; i < count; ++i) {
      *out_.add_events() = std::move(queue_.front());
      queue_.pop_front();
    }
    out_.set_missed(missed_);
    out_.set_history_truncated(truncated_);
    for (v1::UnansweredReplica& missing : unanswered_) {
      *out_.add_unanswered_replicas() = std::move(missing);
    }
    missed_ = 0;
    truncated_ = false;
    unanswered_.clear();
    write_in_flight_ = true;
    return true;
  }

  // Whether the stream is over (everything written): without follow once every part ended;
  // with follow once none is left.
  bool FinishedLocked(grpc::Status* status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || write_in_flight_ || !history_merged_ || open_parts_ > 0) return false;
    if (request_.follow()) {
      *status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "every replica's stream ended");
    }
    finished_ = true;
    return true;
  }

  void CancelParts() {
    bool cancel_alarm = false;
    {
      absl::MutexLock lock(&mu_);
      cancel_alarm = alarm_set_;
    }
    for (auto& part : parts_) part->context.TryCancel();
    if (cancel_alarm) alarm_.Cancel();
  }

  // Each reactor (the server's, every part's) and the alarm hold the stream until their last
  // callback: the last one out deletes it.
  void Release() {
    {
      absl::MutexLock lock(&mu_);
      if (--holds_ > 0) return;
    }
    delete this;
  }

  QueryFanout* const fanout_;
  ServiceMetrics* const metrics_;
  const v1::GetEventsRequest request_;
  const FanoutEventOptions options_;
  std::vector<std::unique_ptr<Part>> parts_;  // sorted by replica; fixed once started
  grpc::Alarm alarm_;
  v1::GetEventsResponse out_;  // written under mu_, read by the one write in flight

  absl::Mutex mu_;
  size_t open_parts_ ABSL_GUARDED_BY(mu_) = 0;
  size_t history_pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool history_merged_ ABSL_GUARDED_BY(mu_) = false;
  bool alarm_set_ ABSL_GUARDED_BY(mu_) = false;
  size_t holds_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<v1::HostEvent> queue_ ABSL_GUARDED_BY(mu_);
  size_t limit_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t missed_ ABSL_GUARDED_BY(mu_) = 0;
  bool truncated_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<v1::UnansweredReplica> unanswered_ ABSL_GUARDED_BY(mu_);  // not yet reported
  bool partial_counted_ ABSL_GUARDED_BY(mu_) = false;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerWriteReactor<v1::GetEventsResponse>* StartFanoutEventStream(
    QueryFanout* fanout, std::shared_ptr<grpc::Channel> local_channel, ServiceMetrics* metrics,
    const v1::GetEventsRequest& request, const FanoutEventOptions& options) {
  auto* stream = new FanoutEventStream(fanout, metrics, request, options);
  stream->Start(local_channel);
  return stream;
}

}  // namespace tcpscope::service
