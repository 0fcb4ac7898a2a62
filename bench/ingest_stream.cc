// The stream's state machine is ingest_load's original one, with a queue in front of the
// filler; see the header.
#include "bench/ingest_stream.h"

#include <sys/resource.h>

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "bench/proto_wire.h"
#include "grpcpp/impl/codegen/proto_utils.h"

namespace tcpscope::bench {
namespace {

constexpr char kMethod[] = "/tcpscope.v1.Ingest/Stream";

grpc::ByteBuffer Serialize(const v1::AgentMessage& message) {
  grpc::ByteBuffer buffer;
  bool own_buffer = false;
  grpc::SerializationTraits<v1::AgentMessage>::Serialize(message, &buffer, &own_buffer);
  return buffer;
}

void ReleaseBody(void* body) { delete static_cast<std::shared_ptr<const std::string>*>(body); }

}  // namespace

v1::EventKind KindOf(const v1::Event& event) {
  switch (event.kind_case()) {
    case v1::Event::kHandshake:
      return v1::EVENT_KIND_HANDSHAKE;
    case v1::Event::kHandshakeFailed:
      return v1::EVENT_KIND_HANDSHAKE_FAILED;
    case v1::Event::kClose:
      return v1::EVENT_KIND_CLOSE;
    case v1::Event::kKeepaliveProbe:
      return v1::EVENT_KIND_KEEPALIVE_PROBE;
    case v1::Event::kKeepaliveTimeout:
      return v1::EVENT_KIND_KEEPALIVE_TIMEOUT;
    case v1::Event::kKeepaliveAnswered:
      return v1::EVENT_KIND_KEEPALIVE_ANSWERED;
    case v1::Event::kHalfOpen:
      return v1::EVENT_KIND_HALF_OPEN;
    case v1::Event::KIND_NOT_SET:
      break;
  }
  return v1::EVENT_KIND_UNSPECIFIED;
}

bool CountBody(OutBatch& batch) {
  v1::Batch parsed;
  if (batch.body == nullptr || !parsed.ParseFromString(*batch.body)) return false;
  batch.events = static_cast<uint64_t>(parsed.events_size());
  batch.kinds = {};
  for (const v1::Event& event : parsed.events()) ++batch.kinds[KindOf(event)];
  batch.snapshot = parsed.has_snapshot();
  return true;
}

grpc::ByteBuffer BatchMessage(uint64_t seq, std::shared_ptr<const std::string> body) {
  uint8_t header[24];
  size_t n = 0;
  header[n++] = 0x12;  // AgentMessage.batch = 2, length-delimited
  n += wire::PutVarint(1 + wire::VarintSize(seq) + body->size(), header + n);
  header[n++] = 0x08;  // Batch.seq = 1, varint
  n += wire::PutVarint(seq, header + n);
  const std::string& bytes = *body;
  // The slice holds a reference to the body until gRPC is done with it.
  auto* holder = new std::shared_ptr<const std::string>(std::move(body));
  grpc::Slice slices[2] = {grpc::Slice(header, n), grpc::Slice(const_cast<char*>(bytes.data()),
                                                               bytes.size(), &ReleaseBody, holder)};
  return grpc::ByteBuffer(slices, 2);
}

IngestStream::IngestStream(grpc::GenericStub* stub, const v1::Hello& hello, Options options)
    : options_(options) {
  context_.set_wait_for_ready(true);
  stub->PrepareBidiStreamingCall(&context_, kMethod, grpc::StubOptions(), this);
  v1::AgentMessage message;
  *message.mutable_hello() = hello;
  out_ = Serialize(message);
  write_in_flight_ = true;
  StartWrite(&out_);
  StartRead(&in_);
  AddHold();  // released by Close(), or when the stream breaks
  StartCall();
}

bool IngestStream::greeted() {
  absl::MutexLock lock(&mu_);
  return greeted_;
}

bool IngestStream::done() {
  absl::MutexLock lock(&mu_);
  return done_;
}

grpc::Status IngestStream::status() {
  absl::MutexLock lock(&mu_);
  return status_;
}

StreamTotals IngestStream::totals() {
  absl::MutexLock lock(&mu_);
  StreamTotals totals = totals_;
  totals.queued_batches = queue_.size();
  totals.queued_bytes = 0;
  for (const OutBatch& batch : queue_) totals.queued_bytes += batch.body->size();
  return totals;
}

bool IngestStream::drained() {
  absl::MutexLock lock(&mu_);
  return done_ || closing_ || (queue_.empty() && unacked_.empty() && !write_in_flight_);
}

bool IngestStream::quota_acked() {
  absl::MutexLock lock(&mu_);
  return options_.max_batches > 0 && totals_.acked_seq >= options_.max_batches;
}

void IngestStream::Enqueue(OutBatch batch) {
  {
    absl::MutexLock lock(&mu_);
    if (closing_) return;
    queue_.push_back(std::move(batch));
  }
  MaybeWrite();
}

void IngestStream::StartFilling() {
  {
    absl::MutexLock lock(&mu_);
    filling_ = true;
  }
  MaybeWrite();
}

void IngestStream::StopFilling() {
  absl::MutexLock lock(&mu_);
  filling_ = false;
}

void IngestStream::Close() {
  bool release = false;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    release = !write_in_flight_ && !hold_released_;
    if (release) hold_released_ = true;
  }
  if (release) {
    StartWritesDone();
    RemoveHold();
  }
}

std::vector<OutBatch> IngestStream::TakeUndelivered() {
  absl::MutexLock lock(&mu_);
  std::vector<OutBatch> undelivered;
  for (Sent& sent : unacked_) {
    if (!sent.filler) undelivered.push_back(std::move(sent.batch));
  }
  unacked_.clear();
  for (OutBatch& batch : queue_) undelivered.push_back(std::move(batch));
  queue_.clear();
  return undelivered;
}

void IngestStream::OnWriteDone(bool ok) {
  bool release = false;
  {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    if (ok && hello_written_) {
      ++totals_.batches_written;
      totals_.events_written += in_flight_events_;
    }
    hello_written_ = true;
    if (!ok) closing_ = true;  // broken: the read side sees why
    release = closing_ && !hold_released_;
    if (release) hold_released_ = true;
  }
  if (release) {
    StartWritesDone();
    RemoveHold();
    return;
  }
  MaybeWrite();
}

void IngestStream::OnReadDone(bool ok) {
  if (!ok) {
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      closing_ = true;
      release = !write_in_flight_ && !hold_released_;
      if (release) hold_released_ = true;
    }
    if (release) RemoveHold();
    return;
  }
  v1::ServiceMessage message;
  const bool parsed =
      grpc::SerializationTraits<v1::ServiceMessage>::Deserialize(&in_, &message).ok();
  {
    absl::MutexLock lock(&mu_);
    if (!parsed) {
      protocol_error_ = "unparsable service message";
    } else if (message.has_hello_ack()) {
      greeted_ = true;
      next_seq_ = message.hello_ack().last_applied_seq() + 1;
      totals_.acked_seq = message.hello_ack().last_applied_seq();
    } else if (message.has_ack()) {
      const uint64_t seq = message.ack().seq();
      if (seq >= next_seq_) protocol_error_ = "ack of a batch never sent";
      totals_.acked_seq = std::max(totals_.acked_seq, seq);
      totals_.last_ack = absl::Now();
      while (!unacked_.empty() && unacked_.front().seq <= seq) {
        const Sent& sent = unacked_.front();
        ++totals_.batches_acked;
        totals_.events_acked += sent.batch.events;
        if (sent.filler) {
          totals_.filler_events_acked += sent.batch.events;
          --filler_unacked_;
        }
        for (size_t k = 0; k < sent.batch.kinds.size(); ++k) {
          totals_.kinds_acked[k] += sent.batch.kinds[k];
        }
        unacked_.pop_front();
      }
    }
  }
  StartRead(&in_);
  MaybeWrite();
}

void IngestStream::OnDone(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  status_ = protocol_error_.empty() || !status.ok()
                ? status
                : grpc::Status(grpc::StatusCode::INTERNAL, protocol_error_);
  done_ = true;
}

void IngestStream::MaybeWrite() {
  {
    absl::MutexLock lock(&mu_);
    if (write_in_flight_ || !greeted_ || closing_) return;
    const OutBatch* batch = nullptr;
    OutBatch queued;
    bool filler = false;
    if (!queue_.empty()) {
      queued = std::move(queue_.front());
      queue_.pop_front();
      batch = &queued;
    } else if (filling_ && options_.filler != nullptr && !options_.filler->empty() &&
               filler_unacked_ < options_.window &&
               (options_.max_batches == 0 || next_seq_ <= options_.max_batches)) {
      batch = &(*options_.filler)[filler_next_++ % options_.filler->size()];
      filler = true;
      ++filler_unacked_;
    } else {
      return;
    }
    out_ = BatchMessage(next_seq_, batch->body);
    unacked_.push_back({next_seq_, filler, *batch});
    in_flight_events_ = batch->events;
    ++next_seq_;
    write_in_flight_ = true;
  }
  StartWrite(&out_);
}

double SelfCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
      continue;
    }
    out += c;
  }
  return out + "\"";
}

}  // namespace tcpscope::bench
