// Fan-out of Observer queries over the replicas (tcpscope-service --peers), as Hubble Relay does
// over its nodes: the replica asked answers its own part and asks every other replica, in
// parallel and with a deadline, for its local part only (metadata "tcpscope-scope: local"; such
// a call never fans out again). A replica that does not answer is named in the answer, counted
// (tcpscope_service_partial_answers_total{rpc}) and logged when it stops or starts answering.
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"
#include "service/replica_set.h"
#include "tcpscope/v1/observer.grpc.pb.h"

namespace tcpscope::service {

// Whether the call asks for this replica's part only (a peer's fan-out).
bool AsksLocalPart(const grpc::CallbackServerContext& context);

// What one replica gave: its address and its part.
template <typename Response>
struct ReplicaPart {
  std::string replica;
  Response response;
};

class QueryFanout {
 public:
  // `timeout`: how long a peer may take when the caller set no earlier deadline.
  QueryFanout(ReplicaSet* replicas, prometheus::Registry& registry, absl::Duration timeout);

  const std::string& self() const { return replicas_->self(); }
  std::vector<std::string> Peers() const { return replicas_->Peers(); }

  // A stub and a context for asking `peer` for its local part: authenticated, marked, with
  // `deadline` (none when infinite).
  std::unique_ptr<v1::Observer::Stub> Stub(const std::string& peer);
  void Prepare(grpc::ClientContext& context, absl::Time deadline) const;
  // The deadline of the peers' calls for a caller's: the earlier of the caller's (less a
  // margin to merge and answer in) and the timeout from now.
  absl::Time PeerDeadline(const grpc::CallbackServerContext& caller) const;

  // Asks every peer (up or not) in parallel; then `done` gets the parts of those that answered
  // and the others, each sorted by replica. `call` starts one peer's call.
  template <typename Response>
  using StartCall = std::function<void(v1::Observer::Stub&, grpc::ClientContext*, Response*,
                                       std::function<void(grpc::Status)>)>;
  template <typename Response>
  void AskPeers(
      absl::Time deadline, StartCall<Response> call,
      std::function<void(std::vector<ReplicaPart<Response>>, std::vector<v1::UnansweredReplica>)>
          done);

  // Records how a fanned-out `rpc` went: counts a partial answer, and logs each peer that
  // stopped or started answering.
  void Record(absl::string_view rpc, const std::vector<std::string>& answered,
              const std::vector<v1::UnansweredReplica>& unanswered);
  // The same in pieces, for a stream: one more partial answer; replicas that gave their part;
  // one that did not (or no longer does).
  void CountPartial(absl::string_view rpc);
  void NoteAnswered(absl::string_view rpc, const std::vector<std::string>& replicas);
  void NoteReplica(absl::string_view rpc, const std::string& replica, const std::string& error);

 private:
  ReplicaSet* const replicas_;
  const absl::Duration timeout_;
  prometheus::Family<prometheus::Counter>& partial_answers_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, bool> answering_ ABSL_GUARDED_BY(mu_);  // as last seen
};

// "CODE: message", as reported for an unanswered replica.
std::string DescribeStatus(const grpc::Status& status);

// The parts of the replicas that answered, this one's (`local`) among them, in replica order;
// their names in `answered`.
template <typename Response>
std::vector<Response> InReplicaOrder(const std::string& self, Response local,
                                     std::vector<ReplicaPart<Response>> parts,
                                     std::vector<std::string>* answered) {
  parts.push_back({self, std::move(local)});
  std::sort(parts.begin(), parts.end(),
            [](const auto& a, const auto& b) { return a.replica < b.replica; });
  std::vector<Response> ordered;
  for (ReplicaPart<Response>& part : parts) {
    answered->push_back(part.replica);
    ordered.push_back(std::move(part.response));
  }
  return ordered;
}

template <typename Response>
void QueryFanout::AskPeers(
    absl::Time deadline, StartCall<Response> call,
    std::function<void(std::vector<ReplicaPart<Response>>, std::vector<v1::UnansweredReplica>)>
        done) {
  struct Call {
    std::string replica;
    std::unique_ptr<v1::Observer::Stub> stub;
    grpc::ClientContext context;
    Response response;
    grpc::Status status;
  };
  struct Gather {
    std::vector<std::unique_ptr<Call>> calls;
    std::atomic<size_t> pending{0};
    std::function<void(std::vector<ReplicaPart<Response>>, std::vector<v1::UnansweredReplica>)>
        done;

    void Complete() {
      std::vector<ReplicaPart<Response>> parts;
      std::vector<v1::UnansweredReplica> unanswered;
      for (auto& c : calls) {
        if (c->status.ok()) {
          parts.push_back({c->replica, std::move(c->response)});
        } else {
          v1::UnansweredReplica& missing = unanswered.emplace_back();
          missing.set_replica(c->replica);
          missing.set_error(DescribeStatus(c->status));
        }
      }
      done(std::move(parts), std::move(unanswered));
    }
  };
  auto* gather = new Gather;
  gather->done = std::move(done);
  for (const std::string& peer : Peers()) {  // sorted
    auto c = std::make_unique<Call>();
    c->replica = peer;
    c->stub = Stub(peer);
    Prepare(c->context, deadline);
    gather->calls.push_back(std::move(c));
  }
  if (gather->calls.empty()) {
    gather->Complete();
    delete gather;
    return;
  }
  gather->pending = gather->calls.size();
  for (auto& c : gather->calls) {
    Call* raw = c.get();
    call(*raw->stub, &raw->context, &raw->response, [gather, raw](grpc::Status status) {
      raw->status = std::move(status);
      if (gather->pending.fetch_sub(1) != 1) return;
      gather->Complete();
      delete gather;
    });
  }
}

}  // namespace tcpscope::service
