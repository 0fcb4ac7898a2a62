// Query handlers. GetEvents replays matching history and then follows live batches; its queue
// holds references into the shared batches, and events are copied only into the response being
// written.
#include "service/observer_service.h"

#include <algorithm>
#include <deque>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/names.h"
#include "common/shared_origins.h"
#include "service/fanout_event_stream.h"
#include "service/fleet_merge.h"
#include "service/query_filters.h"
#include "service/query_token.h"

namespace tcpscope::service {

class ObserverService::EventStream : public grpc::ServerWriteReactor<v1::GetEventsResponse>,
                                     public EventSubscriber {
 public:
  // `mark_history_end`: for a replica merging the fleet's streams, the history ends on a
  // response of its own, marked history_end.
  EventStream(ObserverService* service, EventMatcher matcher, const v1::GetEventsRequest& request,
              bool mark_history_end)
      : service_(service),
        matcher_(std::move(matcher)),
        follow_(request.follow()),
        mark_history_end_(mark_history_end && request.follow()) {
    if (follow_) service_->metrics_->watchers.Increment();
    const EventLog::History history = service_->log_->Subscribe(
        follow_ ? this : nullptr,
        /*with_history=*/request.last() != 0 || request.since_unix_ns() != 0);
    bool write = false;
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      truncated_ = Replay(history, request.last(), request.since_unix_ns());
      history_left_ = queue_.size();
      limit_ = queue_.size() + service_->options_.subscriber_queue_events;
      write = PrepareWriteLocked();
      finish = !write && !follow_;
      finished_ = finish;
    }
    if (write) StartWrite(&out_);
    if (finish) Finish(grpc::Status::OK);
  }

  void Offer(const std::shared_ptr<const PublishedBatch>& batch) override {
    if (!matcher_.MatchesHost(*batch->host)) return;
    bool write = false;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      const auto& events = batch->batch->events();
      for (int i = 0; i < events.size(); ++i) {
        if (!matcher_.Matches(events[i], EventOrigin(*batch->batch, events[i]))) continue;
        if (queue_.size() >= limit_) {
          ++missed_;
          service_->metrics_->watch_events_missed.Increment();
          continue;
        }
        queue_.push_back({batch, i});
      }
      write = PrepareWriteLocked();
    }
    if (write) StartWrite(&out_);
  }

  void OnWriteDone(bool ok) override {
    bool write = false;
    bool finish = false;
    grpc::Status status = grpc::Status::OK;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok || cancelled_) {
        status = grpc::Status::CANCELLED;
        finish = !finished_;
        finished_ = true;
      } else {
        write = PrepareWriteLocked();
        if (!write && !follow_ && !finished_) {  // history delivered
          finish = true;
          finished_ = true;
        }
      }
    }
    if (write) StartWrite(&out_);
    if (finish) Finish(status);
  }

  void OnCancel() override {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      if (!write_in_flight_ && !finished_) {
        finished_ = true;
        finish = true;
      }
    }
    if (finish) Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    if (follow_) {
      service_->log_->Unsubscribe(this);
      service_->metrics_->watchers.Decrement();
    }
    delete this;
  }

 private:
  struct EventRef {
    std::shared_ptr<const PublishedBatch> batch;
    int index;
  };

  // Queues the matching history: the newest `last` (0: no limit) of those at or after `since`
  // (0: any time); no history at all when both are 0. Returns whether eviction may have removed
  // events the request asked for.
  bool Replay(const EventLog::History& history, uint32_t last, uint64_t since)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (last == 0 && since == 0) return false;
    std::vector<EventRef> picked;
    uint64_t oldest = UINT64_MAX;
    for (auto batch = history.batches.rbegin(); batch != history.batches.rend(); ++batch) {
      const auto& events = (*batch)->batch->events();
      for (int i = events.size() - 1; i >= 0; --i) {
        oldest = std::min<uint64_t>(oldest, events[i].time_unix_ns());
        if (last != 0 && picked.size() >= last) continue;
        if (events[i].time_unix_ns() < since) continue;
        if (!matcher_.MatchesHost(*(*batch)->host) ||
            !matcher_.Matches(events[i], EventOrigin(*(*batch)->batch, events[i]))) {
          continue;
        }
        picked.push_back({*batch, i});
      }
    }
    queue_.insert(queue_.end(), picked.rbegin(), picked.rend());
    if (!history.evicted) return false;
    return (since != 0 && oldest > since) || (last != 0 && picked.size() < last);
  }

  bool PrepareWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || finished_) return false;
    const bool end_history = mark_history_end_ && !history_ended_;
    if (queue_.empty() && missed_ == 0 && !truncated_ && !end_history) return false;
    out_.Clear();
    size_t count = std::min(queue_.size(), service_->options_.max_events_per_response);
    if (end_history) {
      count = std::min(count, history_left_);
      history_left_ -= count;
      if (history_left_ == 0) {
        out_.set_history_end(true);
        history_ended_ = true;
      }
    }
    for (size_t i = 0; i < count; ++i) {
      const EventRef& ref = queue_.front();
      v1::HostEvent* entry = out_.add_events();
      entry->set_host(*ref.batch->host);
      const v1::Event& event = ref.batch->batch->events(ref.index);
      *entry->mutable_event() = event;
      if (event.origin_ref() != 0) {  // served with its origin inline
        *entry->mutable_event()->mutable_origin() = EventOrigin(*ref.batch->batch, event);
        entry->mutable_event()->clear_origin_ref();
      }
      queue_.pop_front();
    }
    out_.set_missed(missed_);
    out_.set_history_truncated(truncated_);
    missed_ = 0;
    truncated_ = false;
    write_in_flight_ = true;
    return true;
  }

  ObserverService* const service_;
  const EventMatcher matcher_;
  const bool follow_;
  const bool mark_history_end_;
  v1::GetEventsResponse out_;  // written under mu_, read by the one write in flight

  absl::Mutex mu_;
  std::deque<EventRef> queue_ ABSL_GUARDED_BY(mu_);
  size_t limit_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t missed_ ABSL_GUARDED_BY(mu_) = 0;
  bool truncated_ ABSL_GUARDED_BY(mu_) = false;
  size_t history_left_ ABSL_GUARDED_BY(mu_) = 0;  // history events not yet written
  bool history_ended_ ABSL_GUARDED_BY(mu_) = false;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

namespace {

grpc::Status InvalidArgument(const absl::Status& status) {
  return {grpc::StatusCode::INVALID_ARGUMENT, std::string(status.message())};
}

}  // namespace

void ObserverService::set_local_channel(std::shared_ptr<grpc::Channel> channel) {
  absl::MutexLock lock(&mu_);
  local_channel_ = std::move(channel);
}

std::shared_ptr<grpc::Channel> ObserverService::local_channel() const {
  absl::MutexLock lock(&mu_);
  return local_channel_;
}

grpc::Status ObserverService::Authorize(const grpc::CallbackServerContext& context) {
  return AuthorizeCall(context, options_.query_token, metrics_->Rejected("query_token"), "query");
}

grpc::ServerUnaryReactor* ObserverService::ListAgents(grpc::CallbackServerContext* context,
                                                      const v1::ListAgentsRequest* request,
                                                      v1::ListAgentsResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (grpc::Status status = Authorize(*context); !status.ok()) {
    reactor->Finish(status);
    return reactor;
  }
  v1::ListAgentsResponse local;
  for (v1::Agent& agent : queries_->Agents()) *local.add_agents() = std::move(agent);
  if (!FansOut(*context)) {
    *response = std::move(local);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  fanout_->AskPeers<v1::ListAgentsResponse>(
      fanout_->PeerDeadline(*context),
      [request](v1::Observer::Stub& stub, grpc::ClientContext* peer_context,
                v1::ListAgentsResponse* part, std::function<void(grpc::Status)> done) {
        stub.async()->ListAgents(peer_context, request, part, std::move(done));
      },
      [this, local = std::move(local), response, reactor](
          std::vector<ReplicaPart<v1::ListAgentsResponse>> parts,
          std::vector<v1::UnansweredReplica> unanswered) mutable {
        std::vector<std::string> answered;
        *response = MergeAgents(
            InReplicaOrder(fanout_->self(), std::move(local), std::move(parts), &answered));
        for (auto& missing : unanswered) *response->add_unanswered_replicas() = missing;
        fanout_->Record("ListAgents", answered, unanswered);
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

grpc::ServerUnaryReactor* ObserverService::ListConnections(
    grpc::CallbackServerContext* context, const v1::ListConnectionsRequest* request,
    v1::ListConnectionsResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (grpc::Status status = Authorize(*context); !status.ok()) {
    reactor->Finish(status);
    return reactor;
  }
  if (absl::Status s = ConnectionMatcher::Create(*request).status(); !s.ok()) {
    reactor->Finish(InvalidArgument(s));
    return reactor;
  }
  v1::ListConnectionsResponse local = queries_->Connections(*request, absl::Now());
  if (!FansOut(*context)) {
    *response = std::move(local);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  fanout_->AskPeers<v1::ListConnectionsResponse>(
      fanout_->PeerDeadline(*context),
      [request](v1::Observer::Stub& stub, grpc::ClientContext* peer_context,
                v1::ListConnectionsResponse* part, std::function<void(grpc::Status)> done) {
        stub.async()->ListConnections(peer_context, request, part, std::move(done));
      },
      [this, local = std::move(local), response, reactor](
          std::vector<ReplicaPart<v1::ListConnectionsResponse>> parts,
          std::vector<v1::UnansweredReplica> unanswered) mutable {
        std::vector<std::string> answered;
        *response = MergeConnections(
            InReplicaOrder(fanout_->self(), std::move(local), std::move(parts), &answered));
        for (auto& missing : unanswered) *response->add_unanswered_replicas() = missing;
        fanout_->Record("ListConnections", answered, unanswered);
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

grpc::ServerWriteReactor<v1::GetEventsResponse>* ObserverService::GetEvents(
    grpc::CallbackServerContext* context, const v1::GetEventsRequest* request) {
  class Refusal : public grpc::ServerWriteReactor<v1::GetEventsResponse> {
   public:
    explicit Refusal(const grpc::Status& status) { Finish(status); }
    explicit Refusal(const absl::Status& status) : Refusal(InvalidArgument(status)) {}
    void OnDone() override { delete this; }
  };
  if (grpc::Status status = Authorize(*context); !status.ok()) return new Refusal(status);
  absl::StatusOr<EventMatcher> matcher = EventMatcher::Create(request->filter());
  if (!matcher.ok()) return new Refusal(matcher.status());
  if (request->last() == 0 && request->since_unix_ns() == 0 && !request->follow()) {
    return new Refusal(absl::InvalidArgumentError(
        "nothing asked: set last, since_unix_ns or follow (or several)"));
  }
  if (!FansOut(*context)) {
    return new EventStream(this, *std::move(matcher), *request,
                           /*mark_history_end=*/fanout_ != nullptr);
  }
  std::shared_ptr<grpc::Channel> local = local_channel();
  if (local == nullptr) {
    return new Refusal(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the service is starting"));
  }
  FanoutEventOptions fanout_options;
  fanout_options.queue_events = options_.subscriber_queue_events;
  fanout_options.max_events_per_response = options_.max_events_per_response;
  fanout_options.history_deadline = fanout_->PeerDeadline(*context);
  return StartFanoutEventStream(fanout_, std::move(local), metrics_, *request, fanout_options);
}

grpc::ServerUnaryReactor* ObserverService::Summary(grpc::CallbackServerContext* context,
                                                   const v1::SummaryRequest* request,
                                                   v1::SummaryResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (grpc::Status status = Authorize(*context); !status.ok()) {
    reactor->Finish(status);
    return reactor;
  }
  if (!request->host().empty()) {
    if (absl::Status s = ValidateHostName(request->host()); !s.ok()) {
      reactor->Finish(
          InvalidArgument(absl::InvalidArgumentError(absl::StrCat("host: ", s.message()))));
      return reactor;
    }
  }
  v1::SummaryResponse local = queries_->Summary(request->host());
  if (!FansOut(*context)) {
    *response = std::move(local);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  fanout_->AskPeers<v1::SummaryResponse>(
      fanout_->PeerDeadline(*context),
      [request](v1::Observer::Stub& stub, grpc::ClientContext* peer_context,
                v1::SummaryResponse* part, std::function<void(grpc::Status)> done) {
        stub.async()->Summary(peer_context, request, part, std::move(done));
      },
      [this, local = std::move(local), response, reactor](
          std::vector<ReplicaPart<v1::SummaryResponse>> parts,
          std::vector<v1::UnansweredReplica> unanswered) mutable {
        std::vector<std::string> answered;
        *response = MergeSummaries(
            InReplicaOrder(fanout_->self(), std::move(local), std::move(parts), &answered));
        for (auto& missing : unanswered) *response->add_unanswered_replicas() = missing;
        fanout_->Record("Summary", answered, unanswered);
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

}  // namespace tcpscope::service
