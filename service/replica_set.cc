#include "service/replica_set.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/blocking_counter.h"
#include "common/log.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/channel_arguments.h"

namespace tcpscope::service {

absl::StatusOr<std::unique_ptr<ReplicaSet>> ReplicaSet::Create(ReplicaSetOptions options,
                                                               prometheus::Registry& registry) {
  if (options.advertise.empty()) {
    return absl::InvalidArgumentError(
        "--peers needs --advertise: the address the other replicas reach this one at");
  }
  absl::StatusOr<ReplicaAddresses> advertise =
      ReplicaAddresses::Parse("--advertise", options.advertise);
  if (!advertise.ok()) return advertise.status();
  if (advertise->is_dns() || options.advertise.find(',') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--advertise=", options.advertise, " must be one HOST:PORT"));
  }
  if (!options.peers.is_dns()) {
    absl::StatusOr<std::vector<std::string>> listed = options.peers.Resolve();
    if (!listed.ok()) return listed.status();
    if (!std::binary_search(listed->begin(), listed->end(), options.advertise)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--advertise=", options.advertise, " is not one of --peers=", options.peers.spec(),
          ": list every replica, this one included, as the others reach it"));
    }
  }
  if (options.ping_interval <= absl::ZeroDuration() || options.down_after < options.ping_interval) {
    return absl::InvalidArgumentError("the ping interval must be positive and below down_after");
  }
  return std::unique_ptr<ReplicaSet>(new ReplicaSet(std::move(options), registry));
}

ReplicaSet::ReplicaSet(ReplicaSetOptions options, prometheus::Registry& registry)
    : options_(std::move(options)),
      instance_(absl::Uniform<uint64_t>(absl::BitGen(), 1, UINT64_MAX)),
      peers_up_(prometheus::BuildGauge()
                    .Name("tcpscope_service_replica_peers_up")
                    .Help("Other replicas in the ring in effect (answering this one's pings)")
                    .Register(registry)
                    .Add({})),
      peers_known_(prometheus::BuildGauge()
                       .Name("tcpscope_service_replica_peers")
                       .Help("Other replicas named by --peers (resolved)")
                       .Register(registry)
                       .Add({})),
      ring_changes_(prometheus::BuildCounter()
                        .Name("tcpscope_service_replica_ring_changes_total")
                        .Help("Changes of the replicas counted up (each rebuilds the pairing)")
                        .Register(registry)
                        .Add({})) {
  ring_ = std::make_shared<Ring>(RendezvousSet({options_.advertise}), options_.advertise, 0,
                                 absl::Now());
  // Peers may ping as soon as the server listens, before Start.
  announced_ = ring_;
}

ReplicaSet::~ReplicaSet() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void ReplicaSet::Start(RingListener ring_listener, AgreementListener agreement_listener) {
  ring_listener_ = std::move(ring_listener);
  agreement_listener_ = std::move(agreement_listener);
  {
    absl::MutexLock lock(&mu_);
    announced_ = ring_;
  }
  ring_listener_(ring());
  thread_ = std::thread([this] { Run(); });
}

std::shared_ptr<const Ring> ReplicaSet::ring() const {
  absl::MutexLock lock(&mu_);
  return ring_;
}

std::vector<std::string> ReplicaSet::Peers() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> peers;
  for (const std::string& address : listed_) {
    if (address != options_.advertise) peers.push_back(address);
  }
  return peers;
}

bool ReplicaSet::IsUp(const std::string& peer) const {
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(peer);
  return it != peers_.end() && it->second.up;
}

void ReplicaSet::MessagesLost(const std::string& peer) {
  absl::MutexLock lock(&mu_);
  if (auto it = peers_.find(peer); it != peers_.end()) it->second.agrees = false;
}

std::vector<std::string> ReplicaSet::UpMembers() const {
  absl::MutexLock lock(&mu_);
  return announced_->members.members();
}

std::shared_ptr<grpc::Channel> ReplicaSet::Channel(const std::string& peer) {
  absl::MutexLock lock(&mu_);
  return PeerLocked(peer).channel;
}

void ReplicaSet::Authorize(grpc::ClientContext& context) const {
  if (!options_.token.empty()) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
  }
}

ReplicaSet::Peer& ReplicaSet::PeerLocked(const std::string& address) {
  Peer& peer = peers_[address];
  if (peer.channel == nullptr) {
    grpc::ChannelArguments arguments;
    // gRPC's default backoff grows to 2 minutes: a replica back after a restart would wait
    // that long to be seen.
    arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
    arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    arguments.SetMaxReceiveMessageSize(256 << 20);
    peer.channel = grpc::CreateCustomChannel(address, options_.credentials, arguments);
    peer.stub = v1::Replica::NewStub(peer.channel);
  }
  return peer;
}

void ReplicaSet::Run() {
  absl::Time next_resolve = absl::InfinitePast();
  do {
    const absl::Time now = absl::Now();
    if (now >= next_resolve) {
      Resolve(now);
      next_resolve =
          now + (options_.peers.is_dns() ? options_.resolve_interval : absl::InfiniteDuration());
    }
    PingAll(now);
    std::shared_ptr<const Ring> changed;
    {
      absl::MutexLock lock(&mu_);
      if (ring_ != announced_) changed = ring_;
    }
    if (changed != nullptr) {
      // In effect once the listener has applied it: only then do pings report it (peers send
      // what this ring routes once they see it) and the gauge count its peers.
      ring_listener_(changed);
      absl::MutexLock lock(&mu_);
      announced_ = changed;
      peers_up_.Set(static_cast<double>(changed->size() - 1));
    }
    std::vector<std::string> agreed;
    {
      absl::MutexLock lock(&mu_);
      agreed = NewAgreementsLocked();
    }
    for (const std::string& peer : agreed) agreement_listener_(peer);
  } while (!stop_.WaitForNotificationWithTimeout(options_.ping_interval));
}

void ReplicaSet::Resolve(absl::Time now) {
  absl::StatusOr<std::vector<std::string>> resolved = options_.peers.Resolve();
  absl::MutexLock lock(&mu_);
  if (!resolved.ok()) {
    TS_LOG(WARNING) << "--peers: " << resolved.status().message() << "; keeping the last list ("
                    << listed_.size() << " replicas)";
    return;
  }
  if (*resolved == listed_) return;
  if (options_.peers.is_dns() &&
      !std::binary_search(resolved->begin(), resolved->end(), options_.advertise)) {
    TS_LOG(WARNING) << "--peers=" << options_.peers.spec() << " resolves to "
                    << absl::StrJoin(*resolved, ",")
                    << ", without --advertise=" << options_.advertise
                    << " (not ready yet, or --advertise is wrong)";
  }
  TS_LOG(INFO) << "replicas named by --peers: " << absl::StrJoin(*resolved, ",");
  listed_ = *std::move(resolved);
  for (auto it = peers_.begin(); it != peers_.end();) {
    auto current = it++;
    if (!std::binary_search(listed_.begin(), listed_.end(), current->first)) peers_.erase(current);
  }
  for (const std::string& address : listed_) {
    if (address != options_.advertise) PeerLocked(address);
  }
  peers_known_.Set(static_cast<double>(peers_.size()));
  UpdateRingLocked(now);
}

void ReplicaSet::PingAll(absl::Time now) {
  struct Call {
    std::string address;
    v1::Replica::Stub* stub = nullptr;  // the peer's: peers_ changes only on this thread
    grpc::ClientContext context;
    v1::PingRequest request;
    v1::PingResponse response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [address, peer] : peers_) {
      auto call = std::make_unique<Call>();
      call->address = address;
      call->stub = peer.stub.get();
      call->request.set_from(options_.advertise);
      call->context.set_deadline(absl::ToChronoTime(now + options_.ping_interval));
      Authorize(call->context);
      calls.push_back(std::move(call));
    }
  }
  absl::BlockingCounter pending(static_cast<int>(calls.size()));
  for (auto& call : calls) {
    Call* raw = call.get();
    raw->stub->async()->Ping(&raw->context, &raw->request, &raw->response,
                             [raw, &pending](grpc::Status status) {
                               raw->status = std::move(status);
                               pending.DecrementCount();
                             });
  }
  pending.Wait();
  const absl::Time done = absl::Now();
  absl::MutexLock lock(&mu_);
  for (const auto& call : calls) {
    auto it = peers_.find(call->address);
    if (it == peers_.end()) continue;
    Peer& peer = it->second;
    if (call->status.ok()) {
      if (!peer.up) TS_LOG(INFO) << "replica " << call->address << " is up";
      peer.up = true;
      peer.last_answer = done;
      peer.ring_id = StableHash(absl::StrJoin(call->response.up(), ","));
      if (peer.instance != call->response.instance()) peer.agrees = false;  // restarted
      peer.instance = call->response.instance();
      peer.failing_since = absl::Time();
      continue;
    }
    if (peer.failing_since == absl::Time()) peer.failing_since = now;
    peer.agrees = false;  // what it was sent meanwhile may be lost: it gets all again
    if (peer.up && done - peer.failing_since >= options_.down_after) {
      peer.up = false;
      TS_LOG(WARNING) << "replica " << call->address << " is down: no answer for "
                      << absl::FormatDuration(
                             absl::Trunc(done - peer.failing_since, absl::Milliseconds(100)))
                      << " (" << call->status.error_message() << ")";
    }
  }
  UpdateRingLocked(done);
}

std::vector<std::string> ReplicaSet::NewAgreementsLocked() {
  std::vector<std::string> agreed;
  for (auto& [address, peer] : peers_) {
    const bool agrees = peer.up && peer.ring_id == announced_->id;
    if (agrees && !peer.agrees) agreed.push_back(address);
    peer.agrees = agrees;
  }
  return agreed;
}

void ReplicaSet::UpdateRingLocked(absl::Time now) {
  std::vector<std::string> members = {options_.advertise};
  for (const auto& [address, peer] : peers_) {
    if (peer.up) members.push_back(address);
  }
  RendezvousSet set(std::move(members));
  if (set.members() == ring_->members.members()) return;
  auto ring = std::make_shared<Ring>(std::move(set), options_.advertise, ring_->epoch + 1, now);
  TS_LOG(INFO) << "ring " << ring->epoch << ": " << absl::StrJoin(ring->members.members(), ",");
  ring_changes_.Increment();
  ring_ = std::move(ring);
}

}  // namespace tcpscope::service
