// The agent's gRPC client: one ClientBidiReactor per stream attempt, driven by a connection
// thread that waits for each stream to end and backs off before the next.
#include "agent/shipper.h"

#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/shared_origins.h"

namespace tcpscope::agent {

// One stream attempt. Writes come from reactions and from Publish() on the source's thread; a
// hold keeps the RPC alive until the reactor decides to close, so no write can start after the
// RPC is done.
class Shipper::StreamReactor
    : public grpc::ClientBidiReactor<v1::AgentMessage, v1::ServiceMessage> {
 public:
  StreamReactor(Shipper* shipper, v1::Ingest::Stub* stub) : shipper_(shipper) {
    context_.set_wait_for_ready(false);
    stub->async()->Stream(&context_, this);
    hello_.mutable_hello()->CopyFrom(shipper_->options_.hello);
    write_in_flight_ = true;
    StartWrite(&hello_);
    StartRead(&in_);
    AddHold();
    StartCall();
  }

  // Blocks until the RPC is over; returns its status and whether the service ever said hello.
  grpc::Status Await(bool* greeted) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    *greeted = greeted_;
    return status_;
  }

  void Cancel() { context_.TryCancel(); }

  // Starts the next write if none is in flight and the service has said hello.
  void MaybeWrite() {
    {
      absl::MutexLock lock(&mu_);
      if (write_in_flight_ || closing_ || !greeted_) return;
      std::shared_ptr<const v1::AgentMessage> next = shipper_->NextToSend(next_seq_);
      if (next == nullptr) return;
      out_ = std::move(next);
      next_seq_ = out_->batch().seq() + 1;
      write_in_flight_ = true;
    }
    shipper_->metrics_->batches_sent.Increment();
    StartWrite(out_.get());
  }

  void OnWriteDone(bool ok) override {
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok) closing_ = true;  // the stream is broken; the read side will see why
      release = closing_ && !hold_released_;
      if (release) hold_released_ = true;
    }
    if (release) {
      RemoveHold();
      return;
    }
    MaybeWrite();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Close();
      return;
    }
    if (in_.has_hello_ack()) {
      const uint64_t next = shipper_->OnHelloAck(in_.hello_ack().last_applied_seq());
      {
        absl::MutexLock lock(&mu_);
        greeted_ = true;
        next_seq_ = next;
      }
      shipper_->metrics_->service_connected.Set(1);
    } else if (in_.has_ack()) {
      shipper_->OnAck(in_.ack().seq());
    }
    StartRead(&in_);
    MaybeWrite();
  }

  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

 private:
  void Close() {
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      closing_ = true;
      release = !write_in_flight_ && !hold_released_;
      if (release) hold_released_ = true;
    }
    if (release) RemoveHold();
  }

  Shipper* const shipper_;
  grpc::ClientContext context_;
  v1::AgentMessage hello_;
  std::shared_ptr<const v1::AgentMessage> out_;  // the batch being written
  v1::ServiceMessage in_;

  absl::Mutex mu_;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
  bool greeted_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

Shipper::Shipper(ShipperOptions options, AgentMetrics* metrics)
    : options_(std::move(options)), metrics_(metrics) {
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

void Shipper::Publish(v1::Batch batch) {
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

void Shipper::Enqueue(v1::Batch batch) {
  // Each distinct origin once per batch and per snapshot: most of what they would weigh.
  ShareBatchOrigins(batch);
  if (batch.has_snapshot()) ShareSnapshotOrigins(*batch.mutable_snapshot());
  {
    absl::MutexLock lock(&buffer_mu_);
    Buffered buffered;
    buffered.seq = next_seq_++;
    buffered.events = batch.events_size();
    batch.set_seq(buffered.seq);
    // Cumulative, so the latest values as of this batch are as good as any later ones.
    *batch.mutable_losses() = losses_;
    *batch.mutable_source_health() = source_health_;
    auto message = std::make_shared<v1::AgentMessage>();
    *message->mutable_batch() = std::move(batch);
    buffered.bytes = message->ByteSizeLong();
    buffered.message = std::move(message);
    buffered_bytes_ += buffered.bytes;
    buffer_.push_back(std::move(buffered));
    // Full: drop the oldest and count what it carried, so the loss is visible downstream.
    while (buffer_.size() > 1 && (buffer_.size() > options_.max_buffered_batches ||
                                  buffered_bytes_ > options_.max_buffered_bytes)) {
      const uint64_t lost = static_cast<uint64_t>(buffer_.front().events);
      losses_.set_agent(losses_.agent() + lost);
      metrics_->events_dropped_agent.Increment(static_cast<double>(lost));
      buffered_bytes_ -= buffer_.front().bytes;
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

std::shared_ptr<const v1::AgentMessage> Shipper::NextToSend(uint64_t min_seq) {
  absl::MutexLock lock(&buffer_mu_);
  for (const Buffered& buffered : buffer_) {
    if (buffered.seq >= min_seq) return buffered.message;
  }
  return nullptr;
}

uint64_t Shipper::OnHelloAck(uint64_t last_applied_seq) {
  OnAck(last_applied_seq);
  absl::MutexLock lock(&buffer_mu_);
  TS_LOG(INFO) << "stream to service " << options_.service_address
               << " open; service has applied up to batch " << last_applied_seq << ", "
               << buffer_.size() << " batches to send";
  // A service that restarted knows nothing (0): everything still buffered is resent.
  return buffer_.empty() ? next_seq_ : std::max(buffer_.front().seq, last_applied_seq + 1);
}

void Shipper::OnAck(uint64_t seq) {
  absl::MutexLock lock(&buffer_mu_);
  while (!buffer_.empty() && buffer_.front().seq <= seq) {
    buffered_bytes_ -= buffer_.front().bytes;
    buffer_.pop_front();
    metrics_->batches_acked.Increment();
  }
  metrics_->buffered_batches.Set(static_cast<double>(buffer_.size()));
  metrics_->buffered_bytes.Set(static_cast<double>(buffered_bytes_));
}

void Shipper::RunConnections() {
  std::mt19937_64 random(options_.hello.instance_id());
  absl::Duration backoff = options_.initial_backoff;
  grpc::ChannelArguments arguments;
  arguments.SetMaxSendMessageSize(64 << 20);
  auto channel =
      grpc::CreateCustomChannel(options_.service_address, options_.credentials, arguments);
  auto stub = v1::Ingest::NewStub(channel);
  bool was_connected = true;  // so the first failure is logged
  bool hint_logged = false;
  while (true) {
    std::unique_ptr<StreamReactor> reactor;
    {
      absl::MutexLock lock(&active_mu_);
      if (stopping_) return;
      reactor = std::make_unique<StreamReactor>(this, stub.get());
      active_ = reactor.get();
    }
    metrics_->stream_attempts.Increment();
    bool greeted = false;
    const grpc::Status status = reactor->Await(&greeted);
    {
      absl::MutexLock lock(&active_mu_);
      active_ = nullptr;
    }
    reactor.reset();
    metrics_->service_connected.Set(0);
    if (greeted) {
      backoff = options_.initial_backoff;
      was_connected = true;
    }
    {
      absl::MutexLock lock(&active_mu_);
      if (stopping_) return;
    }
    metrics_->stream_failures.Increment();
    // Refused connections mean nobody listens: TLS is not the question then.
    const bool hint = !greeted && status.error_code() == grpc::StatusCode::UNAVAILABLE &&
                      !absl::StrContains(status.error_message(), "Connection refused") &&
                      !options_.connect_hint.empty();
    // Logged once per outage, and once more when a failure first calls for the TLS hint (the
    // service may not have been listening at the first attempt).
    if (was_connected || (hint && !hint_logged)) {
      TS_LOG(WARNING) << "stream to service " << options_.service_address
                      << " ended: " << status.error_message() << " (code " << status.error_code()
                      << ")" << (hint ? "; " + options_.connect_hint : "")
                      << "; reconnecting with backoff up to "
                      << absl::FormatDuration(options_.max_backoff);
      was_connected = false;
      hint_logged = hint_logged || hint;
    }
    // Full jitter between half and all of the backoff, so a fleet does not reconnect in step.
    const double factor = std::uniform_real_distribution<double>(0.5, 1.0)(random);
    const absl::Duration wait = backoff * factor;
    backoff = std::min(backoff * 2, options_.max_backoff);
    absl::MutexLock lock(&active_mu_);
    auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(active_mu_) { return stopping_; };
    active_mu_.AwaitWithTimeout(absl::Condition(&stop), wait);
  }
}

}  // namespace tcpscope::agent
