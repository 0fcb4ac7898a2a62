// The agent's gRPC client: one async stream per attempt, driven by a connection
// thread that waits for each stream to end and backs off before the next, and that chooses the
// replica each stream goes to.
#include "agent/shipper.h"

#include <algorithm>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/shared_origins.h"
#include "google/protobuf/io/coded_stream.h"

namespace tcpscope::agent {
namespace {

// Ingest's one method, as the generic stub names it.
const std::string& StreamMethod() {
  static const std::string* const method =
      new std::string(absl::StrCat("/", v1::Ingest::service_full_name(), "/Stream"));
  return *method;
}

// Serialized once, when buffered: every write and rewrite of it shares the bytes.
grpc::ByteBuffer Serialize(const v1::AgentMessage& message) {
  grpc::ByteBuffer wire;
  bool own = false;
  // Fails only past protobuf's 2 GiB limit, far above the service's message limit.
  grpc::SerializationTraits<v1::AgentMessage>::Serialize(message, &wire, &own);
  return wire;
}

// An AgentMessage whose batch is `body` (a serialized Batch without seq, losses and health)
// followed by those three. Losses are cumulative, so the latest values as of this batch are as
// good as any later ones.
grpc::ByteBuffer StampedMessage(const grpc::Slice& body, uint64_t seq,
                                const v1::LossCounters& losses, const v1::SourceHealth& health) {
  v1::Batch stamp;
  stamp.set_seq(seq);
  *stamp.mutable_losses() = losses;
  *stamp.mutable_source_health() = health;
  const size_t stamp_size = stamp.ByteSizeLong();
  // AgentMessage.batch's tag and the batch's length. A tag is (field number << 3 | wire type),
  // and a length-delimited field's wire type is 2 (protobuf's encoding).
  constexpr uint32_t kBatchTag = v1::AgentMessage::kBatchFieldNumber << 3 | 2;
  uint8_t head[5 + 10];  // two varints: a tag and a length
  uint8_t* head_end = google::protobuf::io::CodedOutputStream::WriteTagToArray(kBatchTag, head);
  head_end = google::protobuf::io::CodedOutputStream::WriteVarint64ToArray(body.size() + stamp_size,
                                                                           head_end);
  grpc::Slice tail(stamp_size);
  stamp.SerializeWithCachedSizesToArray(const_cast<uint8_t*>(tail.begin()));
  const grpc::Slice slices[] = {grpc::Slice(head, static_cast<size_t>(head_end - head)), body,
                                tail};
  return grpc::ByteBuffer(slices, 3);
}

}  // namespace

// One stream attempt, on gRPC's async API with a completion queue and a thread of its own:
// the callback API's shared queue has two threads that wake about twice a second each even with
// nothing to do, most of an idle agent's gRPC cost (BENCHMARKS.md, "Idle agent"); this thread
// sleeps until the stream has something for it. Writes come from completions and from Publish()
// on the source's thread (one write in flight at a time); Finish is requested only once the
// read side has ended and no write is in flight, so no write can start after it.
class Shipper::StreamAttempt {
 public:
  StreamAttempt(Shipper* shipper, const Connection& connection)
      : shipper_(shipper), replica_(connection.replica) {
    context_.set_wait_for_ready(false);
    // The call's metadata leaves with the hello: starting the call alone would occupy the
    // write operation that the hello needs.
    context_.set_initial_metadata_corked(true);
    stream_ = connection.stub->PrepareCall(&context_, StreamMethod(), &queue_);
    hello_ = shipper_->hello_wire_;
    write_in_flight_ = true;
    stream_->StartCall(nullptr);
    stream_->Write(hello_, Tag(Op::kWrite));
    stream_->Read(&in_, Tag(Op::kRead));
    thread_ = std::thread([this] { Complete(); });
  }

  ~StreamAttempt() {
    Cancel();
    if (thread_.joinable()) thread_.join();
  }

  // Blocks until the RPC is over; returns its status and whether the service ever said hello.
  grpc::Status Await(bool* greeted) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    *greeted = greeted_;
    return status_;
  }

  // Waits until the RPC is over or `deadline`; true when it is over.
  bool AwaitUntil(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithDeadline(absl::Condition(&done_), deadline);
  }

  bool greeted() {
    absl::MutexLock lock(&mu_);
    return greeted_;
  }

  void Cancel() { context_.TryCancel(); }

  // Ends the stream cleanly before a move: no new batch is written, the writes are closed once
  // the one in flight is done, and the service acknowledges what it applied before it finishes
  // the stream. What was never written stays buffered for the next replica.
  void FinishWrites() {
    {
      absl::MutexLock lock(&mu_);
      if (finishing_ || closing_) return;
      finishing_ = true;
      if (write_in_flight_) return;  // OnWriteDone closes the writes
      write_in_flight_ = true;
    }
    stream_->WritesDone(Tag(Op::kWritesDone));
  }

  // Starts the next write if none is in flight and the service has said hello.
  void MaybeWrite() {
    {
      absl::MutexLock lock(&mu_);
      if (write_in_flight_ || closing_ || finishing_ || !greeted_) return;
      std::optional<Outgoing> next = shipper_->NextToSend(next_seq_);
      if (!next.has_value()) return;
      out_ = std::move(next->wire);
      next_seq_ = next->seq + 1;
      write_in_flight_ = true;
    }
    shipper_->metrics_->batches_sent.Increment();
    stream_->Write(out_, Tag(Op::kWrite));
  }

 private:
  enum class Op : uintptr_t { kWrite = 1, kWritesDone, kRead, kFinish };
  static void* Tag(Op op) { return reinterpret_cast<void*>(static_cast<uintptr_t>(op)); }

  // The completion thread: every operation's end, until Finish's, then the queue drains.
  void Complete() {
    void* tag = nullptr;
    bool ok = false;
    while (queue_.Next(&tag, &ok)) {
      switch (static_cast<Op>(reinterpret_cast<uintptr_t>(tag))) {
        case Op::kWrite:
          OnWriteDone(ok);
          break;
        case Op::kWritesDone:
          OnWritesDoneDone();
          break;
        case Op::kRead:
          OnReadDone(ok);
          break;
        case Op::kFinish: {
          absl::MutexLock lock(&mu_);
          status_ = finish_status_;
          done_ = true;
          queue_.Shutdown();
          break;
        }
      }
    }
  }

  void OnWriteDone(bool ok) {
    bool finish = false;
    bool writes_done = false;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok) closing_ = true;  // the stream is broken; the read side will see why
      finish = closing_ && read_over_ && !finish_requested_;
      if (finish) finish_requested_ = true;
      writes_done = !closing_ && finishing_;
      if (writes_done) write_in_flight_ = true;
    }
    if (finish) {
      stream_->Finish(&finish_status_, Tag(Op::kFinish));
      return;
    }
    if (writes_done) {
      stream_->WritesDone(Tag(Op::kWritesDone));
      return;
    }
    MaybeWrite();
  }

  void OnWritesDoneDone() {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      finish = closing_ && read_over_ && !finish_requested_;
      if (finish) finish_requested_ = true;
    }
    if (finish) stream_->Finish(&finish_status_, Tag(Op::kFinish));
  }

  void OnReadDone(bool ok) {
    if (!ok) {
      Close();
      return;
    }
    v1::ServiceMessage message;
    if (grpc::Status parsed =
            grpc::SerializationTraits<v1::ServiceMessage>::Deserialize(&in_, &message);
        !parsed.ok()) {
      TS_LOG(WARNING) << "replica " << replica_ << " sent an unreadable message ("
                      << parsed.error_message() << "); ending the stream";
      Cancel();  // the read that follows fails, and the stream ends as any broken one
    } else if (message.has_hello_ack()) {
      const uint64_t next = shipper_->OnHelloAck(replica_, message.hello_ack().last_applied_seq());
      {
        absl::MutexLock lock(&mu_);
        greeted_ = true;
        next_seq_ = next;
      }
      shipper_->metrics_->service_connected.Set(1);
    } else if (message.has_ack()) {
      shipper_->OnAck(message.ack().seq());
    }
    stream_->Read(&in_, Tag(Op::kRead));
    MaybeWrite();
  }

  // The read side has ended: the RPC is over once the write in flight, if any, is done.
  void Close() {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      closing_ = true;
      read_over_ = true;
      finish = !write_in_flight_ && !finish_requested_;
      if (finish) finish_requested_ = true;
    }
    if (finish) stream_->Finish(&finish_status_, Tag(Op::kFinish));
  }

  Shipper* const shipper_;
  const std::string replica_;
  grpc::ClientContext context_;
  grpc::CompletionQueue queue_;
  // The stream's messages are written as the bytes the shipper serialized once (Buffered).
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> stream_;
  grpc::ByteBuffer hello_;
  grpc::ByteBuffer out_;  // the batch being written (shares the buffered batch's slices)
  grpc::ByteBuffer in_;
  grpc::Status finish_status_;  // written by the Finish operation, read after its completion
  std::thread thread_;

  absl::Mutex mu_;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool read_over_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;  // FinishWrites() was called
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool greeted_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

Shipper::Shipper(ShipperOptions options, AgentMetrics* metrics)
    : options_(std::move(options)),
      hello_wire_([this] {
        v1::AgentMessage hello;
        *hello.mutable_hello() = options_.hello;
        return Serialize(hello);
      }()),
      metrics_(metrics),
      homing_(options_.service, options_.hello.host_name(), metrics) {
  source_health_.set_state(v1::SOURCE_STATE_HEALTHY);
}

Shipper::~Shipper() { Stop(); }

void Shipper::Start() {
  thread_ = std::thread([this] { RunConnections(); });
}

void Shipper::Stop() {
  {
    absl::MutexLock lock(&active_mu_);
    stopping_ = true;
    if (active_ != nullptr) active_->Cancel();
  }
  if (thread_.joinable()) thread_.join();
}

bool Shipper::Drain(absl::Duration timeout) {
  absl::MutexLock lock(&buffer_mu_);
  auto empty = [this]() ABSL_SHARED_LOCKS_REQUIRED(buffer_mu_) { return buffer_.empty(); };
  return buffer_mu_.AwaitWithTimeout(absl::Condition(&empty), timeout);
}

uint64_t Shipper::events_dropped() const {
  absl::MutexLock lock(&buffer_mu_);
  return losses_.agent();
}

void Shipper::Publish(v1::Batch&& batch) {
  if (batch.events().empty() && !batch.has_snapshot()) return;
  Enqueue(std::move(batch));
}

void Shipper::SetSourceHealth(const v1::SourceHealth& health) {
  {
    absl::MutexLock lock(&buffer_mu_);
    if (health.state() == source_health_.state() && health.problem() == source_health_.problem()) {
      return;
    }
    source_health_ = health;
  }
  Enqueue(v1::Batch());  // the service learns it now, not at the next snapshot
}

void Shipper::Enqueue(v1::Batch&& batch) {
  // Each distinct origin once per batch and per snapshot: most of what they would weigh.
  ShareBatchOrigins(batch);
  if (batch.has_snapshot()) ShareSnapshotOrigins(*batch.mutable_snapshot());
  // The batch's bytes are written before the lock: a large snapshot's take milliseconds, which
  // the ring's reader, publishing on another thread, must not wait for. What is stamped under
  // the lock (seq, losses, health) follows them: protobuf reads a message's fields in any order.
  batch.clear_seq();
  batch.clear_losses();
  batch.clear_source_health();
  const int events = batch.events_size();
  grpc::Slice body(batch.ByteSizeLong());
  batch.SerializeWithCachedSizesToArray(const_cast<uint8_t*>(body.begin()));
  {
    absl::MutexLock lock(&buffer_mu_);
    Buffered buffered;
    buffered.seq = next_seq_++;
    buffered.events = events;
    buffered.wire = StampedMessage(body, buffered.seq, losses_, source_health_);
    buffered_bytes_ += buffered.wire.Length();
    buffer_.push_back(std::move(buffered));
    // Full: drop the oldest and count what it carried, so the loss is visible downstream.
    while (buffer_.size() > 1 && (buffer_.size() > options_.max_buffered_batches ||
                                  buffered_bytes_ > options_.max_buffered_bytes)) {
      const uint64_t lost = static_cast<uint64_t>(buffer_.front().events);
      losses_.set_agent(losses_.agent() + lost);
      metrics_->events_dropped_agent.Increment(static_cast<double>(lost));
      buffered_bytes_ -= buffer_.front().wire.Length();
      buffer_.pop_front();
    }
    metrics_->buffered_batches.Set(static_cast<double>(buffer_.size()));
    metrics_->buffered_bytes.Set(static_cast<double>(buffered_bytes_));
  }
  absl::MutexLock lock(&active_mu_);
  if (active_ != nullptr) active_->MaybeWrite();
}

void Shipper::SetKernelLosses(uint64_t cumulative) {
  absl::MutexLock lock(&buffer_mu_);
  losses_.set_kernel(std::max(losses_.kernel(), cumulative));
}

std::optional<Shipper::Outgoing> Shipper::NextToSend(uint64_t min_seq) {
  absl::MutexLock lock(&buffer_mu_);
  for (const Buffered& buffered : buffer_) {
    if (buffered.seq >= min_seq) return Outgoing{buffered.seq, buffered.wire};
  }
  return std::nullopt;
}

uint64_t Shipper::OnHelloAck(const std::string& replica, uint64_t last_applied_seq) {
  OnAck(last_applied_seq);
  absl::MutexLock lock(&buffer_mu_);
  TS_LOG(INFO) << "stream to service " << replica << " open; service has applied up to batch "
               << last_applied_seq << ", " << buffer_.size() << " batches to send";
  // A service that restarted, or another replica, knows nothing (0): everything still buffered
  // is resent.
  return buffer_.empty() ? next_seq_ : std::max(buffer_.front().seq, last_applied_seq + 1);
}

void Shipper::OnAck(uint64_t seq) {
  absl::MutexLock lock(&buffer_mu_);
  while (!buffer_.empty() && buffer_.front().seq <= seq) {
    buffered_bytes_ -= buffer_.front().wire.Length();
    buffer_.pop_front();
    metrics_->batches_acked.Increment();
  }
  metrics_->buffered_batches.Set(static_cast<double>(buffer_.size()));
  metrics_->buffered_bytes.Set(static_cast<double>(buffered_bytes_));
}

namespace {

// A probe waits this long at most for a replica to accept a connection.
absl::Duration ProbeTimeout(absl::Duration failover_after) {
  return std::min(failover_after, absl::Seconds(2));
}

}  // namespace

bool Shipper::stopping() {
  absl::MutexLock lock(&active_mu_);
  return stopping_;
}

Shipper::Connection Shipper::Connect(const std::string& replica) const {
  grpc::ChannelArguments arguments;
  arguments.SetMaxSendMessageSize(64 << 20);
  // Each channel its own subchannels: a fresh channel to a replica that is back must not wait
  // out the reconnect backoff of an older channel's failed connection to it.
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  Connection connection;
  connection.replica = replica;
  connection.channel = grpc::CreateCustomChannel(replica, options_.credentials, arguments);
  connection.stub = std::make_unique<grpc::GenericStub>(connection.channel);
  return connection;
}

std::optional<Shipper::Connection> Shipper::Probe(const std::string& replica, std::string* why) {
  Connection connection = Connect(replica);
  const absl::Duration timeout = ProbeTimeout(options_.failover_after);
  const auto deadline = absl::ToChronoTime(absl::Now() + timeout);
  grpc_connectivity_state state = connection.channel->GetState(/*try_to_connect=*/true);
  while (state == GRPC_CHANNEL_IDLE || state == GRPC_CHANNEL_CONNECTING) {
    if (!connection.channel->WaitForStateChange(state, deadline)) break;
    state = connection.channel->GetState(/*try_to_connect=*/true);
  }
  if (state == GRPC_CHANNEL_READY) return connection;
  *why = state == GRPC_CHANNEL_TRANSIENT_FAILURE
             ? "its connection failed"
             : absl::StrCat("no connection within ", absl::FormatDuration(timeout));
  return std::nullopt;
}

std::optional<Shipper::Connection> Shipper::FirstReachableOther() {
  for (const std::string& replica : homing_.ranking()) {
    if (replica == homing_.home()) continue;
    if (stopping()) return std::nullopt;
    std::string why;
    if (std::optional<Connection> connection = Probe(replica, &why)) return connection;
    TS_LOG(INFO) << "replica " << replica << " is not reachable either: " << why;
  }
  return std::nullopt;
}

void Shipper::MaybeResolve(bool now_anyway) {
  if (!homing_.is_dns()) return;
  const absl::Time now = absl::Now();
  if (!now_anyway && now < next_resolve_) return;
  next_resolve_ = now + options_.resolve_interval;
  if (absl::Status status = homing_.Resolve(); !status.ok()) {
    TS_LOG(WARNING) << status.message() << "; keeping the last list";
  }
}

std::optional<Shipper::Connection> Shipper::Supervise(StreamAttempt* attempt,
                                                      absl::Time unreachable_since) {
  absl::Time next_probe = absl::Now() + options_.failover_after;
  std::optional<Connection> move;
  absl::Time give_up = absl::InfiniteFuture();  // a half-closed stream is cancelled then
  while (true) {
    absl::Time wake = homing_.is_dns() ? next_resolve_ : absl::InfiniteFuture();
    if (move.has_value()) {
      wake = give_up;
    } else if (homing_.has_alternatives()) {
      // Before the greeting: when the grace runs out; after it, away from the first-ranked
      // replica: the next probe. Otherwise nothing to do but wait (no wakeups).
      if (!attempt->greeted()) {
        wake = std::min(wake, unreachable_since + options_.failover_after);
      } else if (homing_.home_rank() > 0) {
        wake = std::min(wake, next_probe);
      }
    }
    if (attempt->AwaitUntil(wake)) return move;
    if (stopping()) continue;  // Stop() cancelled the stream
    const absl::Time now = absl::Now();
    if (move.has_value()) {
      if (now >= give_up) attempt->Cancel();
      continue;
    }
    MaybeResolve(/*now_anyway=*/false);
    if (!homing_.has_alternatives()) continue;
    if (!attempt->greeted()) {
      // An attempt that has not connected within the grace: give up on it; the failover
      // follows once it has ended.
      if (!homing_.home_listed() || now - unreachable_since >= options_.failover_after) {
        attempt->Cancel();
      }
      continue;
    }
    if (homing_.home_rank() == 0 || (homing_.home_listed() && now < next_probe)) continue;
    next_probe = now + options_.failover_after;
    const size_t better = std::min(homing_.home_rank(), homing_.ranking().size());
    for (size_t i = 0; i < better && !move.has_value(); ++i) {
      const std::string candidate = homing_.ranking()[i];
      std::string why;
      move = Probe(candidate, &why);
      if (move.has_value()) {
        const HomeChange reason =
            homing_.home_listed() ? homing_.ReasonToPrefer(candidate) : HomeChange::kResolve;
        homing_.MoveTo(candidate, reason,
                       homing_.home_listed()
                           ? "it ranks better for this host and is reachable"
                           : "the home left the list and this is the best reachable replica");
        attempt->FinishWrites();
        give_up = absl::Now() + options_.failover_after;
      } else if (homing_.home_listed()) {
        homing_.NoteCannotReturn(candidate, why);
      }
    }
  }
}

void Shipper::RunConnections() {
  std::mt19937_64 random(options_.hello.instance_id());
  absl::Duration backoff = options_.initial_backoff;
  // Full jitter between half and all of the backoff, so a fleet does not reconnect in step.
  auto next_wait = [&] {
    const double factor = std::uniform_real_distribution<double>(0.5, 1.0)(random);
    const absl::Duration wait = backoff * factor;
    backoff = std::min(backoff * 2, options_.max_backoff);
    return wait;
  };
  // Waits, or less when stopping; true when stopping.
  auto wait_or_stop = [this](absl::Duration wait) {
    absl::MutexLock lock(&active_mu_);
    auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(active_mu_) { return stopping_; };
    active_mu_.AwaitWithTimeout(absl::Condition(&stop), wait);
    return stopping_;
  };
  // The first list: a dns:/// name that does not resolve yet is looked up again with backoff.
  for (bool logged = false;;) {
    absl::Status status = homing_.Resolve();
    if (status.ok()) break;
    if (!logged) TS_LOG(WARNING) << status.message() << "; trying again with backoff";
    logged = true;
    if (wait_or_stop(next_wait())) return;
  }
  backoff = options_.initial_backoff;
  next_resolve_ = absl::Now() + options_.resolve_interval;
  homing_.TakeHome(homing_.ranking().front());
  Connection home = Connect(homing_.home());
  // Since when the home has not been connected: the grace before a failover runs from there.
  absl::Time unreachable_since = absl::Now();
  bool was_connected = true;  // so the first failure is logged
  bool hint_logged = false;
  bool stranded_logged = false;  // no other replica reachable either, this outage
  while (true) {
    std::unique_ptr<StreamAttempt> attempt;
    {
      absl::MutexLock lock(&active_mu_);
      if (stopping_) return;
      attempt = std::make_unique<StreamAttempt>(this, home);
      active_ = attempt.get();
    }
    metrics_->stream_attempts.Increment();
    std::optional<Connection> move = Supervise(attempt.get(), unreachable_since);
    bool greeted = false;
    const grpc::Status status = attempt->Await(&greeted);
    {
      absl::MutexLock lock(&active_mu_);
      active_ = nullptr;
    }
    attempt.reset();
    metrics_->service_connected.Set(0);
    absl::Time now = absl::Now();
    if (greeted) {
      backoff = options_.initial_backoff;
      was_connected = true;
      stranded_logged = false;
      unreachable_since = now;
    }
    if (stopping()) return;
    if (move.has_value()) {  // a planned move, logged when decided
      home = std::move(*move);
      unreachable_since = now;
      continue;
    }
    metrics_->stream_failures.Increment();
    // Refused connections mean nobody listens: TLS is not the question then.
    const bool hint = !greeted && status.error_code() == grpc::StatusCode::UNAVAILABLE &&
                      !absl::StrContains(status.error_message(), "Connection refused") &&
                      !options_.connect_hint.empty();
    // Logged once per outage, and once more when a failure first calls for the TLS hint (the
    // service may not have been listening at the first attempt).
    if (was_connected || (hint && !hint_logged)) {
      TS_LOG(WARNING) << "stream to service " << home.replica
                      << " ended: " << status.error_message() << " (code " << status.error_code()
                      << ")" << (hint ? "; " + options_.connect_hint : "")
                      << "; reconnecting with backoff up to "
                      << absl::FormatDuration(options_.max_backoff);
      was_connected = false;
      hint_logged = hint_logged || hint;
    }
    // Failover: the home has been unreachable for the grace (or left the list).
    const bool grace_over = now - unreachable_since >= options_.failover_after;
    if (grace_over || !homing_.home_listed()) MaybeResolve(/*now_anyway=*/true);
    if (homing_.has_alternatives() && (grace_over || !homing_.home_listed())) {
      const HomeChange reason =
          homing_.home_listed() ? HomeChange::kFailover : HomeChange::kResolve;
      const std::string why =
          homing_.home_listed()
              ? absl::StrCat("unreachable for ", absl::FormatDuration(now - unreachable_since),
                             " (", status.error_message(), ")")
              : "it left the list";
      if (std::optional<Connection> other = FirstReachableOther()) {
        homing_.MoveTo(other->replica, reason, why);
        home = std::move(*other);
        unreachable_since = absl::Now();
        backoff = options_.initial_backoff;
        was_connected = true;
        stranded_logged = false;
        continue;
      }
      if (!stranded_logged) {
        TS_LOG(WARNING) << "replica " << home.replica << " is " << why
                        << " but no other replica is reachable; trying them all again every "
                        << absl::FormatDuration(options_.failover_after);
        stranded_logged = true;
      }
      unreachable_since = now = absl::Now();  // the next failover attempt after another grace
    }
    // A channel whose connection failed retries it on gRPC's own schedule (1 s, growing 1.6x),
    // failing calls meanwhile with the old error: a service that starts after the agent would
    // be reached seconds past our backoff. The next attempt gets a fresh channel, so the
    // backoff here decides when it connects.
    if (!greeted) home = Connect(home.replica);
    absl::Duration wait = next_wait();
    if (homing_.has_alternatives()) {
      // Never past the end of the grace: the failover must not wait for a long backoff.
      wait = std::min(wait, std::max(absl::Milliseconds(10),
                                     unreachable_since + options_.failover_after - now));
    }
    if (wait_or_stop(wait)) return;
  }
}

}  // namespace tcpscope::agent
