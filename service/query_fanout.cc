// Peer calls of the query fan-out, and the record of who did not answer.
#include "service/query_fanout.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace tcpscope::service {
namespace {

constexpr char kScopeKey[] = "tcpscope-scope";
constexpr char kScopeLocal[] = "local";
// Left of the caller's deadline to merge the parts and answer.
constexpr absl::Duration kAnswerMargin = absl::Milliseconds(100);

}  // namespace

bool AsksLocalPart(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find(kScopeKey);
  return it != metadata.end() &&
         absl::string_view(it->second.data(), it->second.size()) == kScopeLocal;
}

std::string DescribeStatus(const grpc::Status& status) {
  std::string text = absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
  if (!status.error_message().empty()) absl::StrAppend(&text, ": ", status.error_message());
  return text;
}

QueryFanout::QueryFanout(ReplicaSet* replicas, prometheus::Registry& registry,
                         absl::Duration timeout)
    : replicas_(replicas),
      timeout_(timeout),
      partial_answers_(prometheus::BuildCounter()
                           .Name("tcpscope_service_partial_answers_total")
                           .Help("Observer answers missing the part of a replica that did not "
                                 "answer, by RPC.")
                           .Register(registry)) {
  for (const char* rpc : {"ListAgents", "ListConnections", "GetEvents", "Summary"}) {
    partial_answers_.Add({{"rpc", rpc}});
  }
}

std::unique_ptr<v1::Observer::Stub> QueryFanout::Stub(const std::string& peer) {
  return v1::Observer::NewStub(replicas_->Channel(peer));
}

void QueryFanout::Prepare(grpc::ClientContext& context, absl::Time deadline) const {
  context.AddMetadata(kScopeKey, kScopeLocal);
  replicas_->Authorize(context);
  if (deadline != absl::InfiniteFuture()) context.set_deadline(absl::ToChronoTime(deadline));
}

absl::Time QueryFanout::PeerDeadline(const grpc::CallbackServerContext& caller) const {
  const absl::Time bound = absl::Now() + timeout_;
  const auto caller_deadline = caller.deadline();
  if (caller_deadline == std::chrono::system_clock::time_point::max()) return bound;
  return std::min(bound, absl::FromChrono(caller_deadline) - kAnswerMargin);
}

void QueryFanout::Record(absl::string_view rpc, const std::vector<std::string>& answered,
                         const std::vector<v1::UnansweredReplica>& unanswered) {
  if (!unanswered.empty()) CountPartial(rpc);
  NoteAnswered(rpc, answered);
  for (const v1::UnansweredReplica& missing : unanswered) {
    NoteReplica(rpc, missing.replica(), missing.error());
  }
}

void QueryFanout::CountPartial(absl::string_view rpc) {
  partial_answers_.Add({{"rpc", std::string(rpc)}}).Increment();
}

void QueryFanout::NoteAnswered(absl::string_view rpc, const std::vector<std::string>& replicas) {
  absl::MutexLock lock(&mu_);
  for (const std::string& replica : replicas) {
    auto [it, inserted] = answering_.try_emplace(replica, true);
    if (!inserted && !it->second) {
      TS_LOG(INFO) << "replica " << replica << " answered a " << rpc << " fan-out again";
      it->second = true;
    }
  }
}

void QueryFanout::NoteReplica(absl::string_view rpc, const std::string& replica,
                              const std::string& error) {
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = answering_.try_emplace(replica, false);
  if (inserted || it->second) {
    TS_LOG(WARNING) << "replica " << replica << " did not answer a " << rpc << " fan-out (" << error
                    << "): answers are partial until it does";
    it->second = false;
  }
}

}  // namespace tcpscope::service
