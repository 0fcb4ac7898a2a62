// tcpscope-ingest-load: simulated agents streaming realistic batches into an Ingest service
// (tcpscope-service, or tcpscope-bare-ingest as the baseline) as fast as it acknowledges them.
// Prints one JSON line: events sent, events acknowledged, seconds, acknowledged events/s.
//
// Each agent is one Ingest/Stream on its own channel (its own TCP connection) and speaks the
// agent's protocol (agent/shipper.cc): Hello, wait for HelloAck, then batches numbered 1, 2, 3...
// with one write in flight and at most --window batches unacknowledged; acks are cumulative.
// Batches are built and serialized once, up front: a write sends a few header bytes carrying the
// batch's seq followed by the prebuilt bytes (a static slice, not copied), so the generator
// costs next to nothing per event and the server's cost dominates.
//
//   tcpscope-ingest-load --target=127.0.0.1:7700 --agents=8 --batch_size=256 --duration=10s
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/synthetic_events.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "tcpscope/v1/ingest.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:7700", "The Ingest service's gRPC address.");
ABSL_FLAG(int, agents, 8, "Simulated agents, each with its own stream and connection.");
ABSL_FLAG(int, batch_size, 256, "Events per batch.");
ABSL_FLAG(int, window, 8, "Most batches an agent has sent and not yet seen acknowledged.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10), "How long to send (unless --events).");
ABSL_FLAG(int64_t, events, 0,
          "Send this many events in total (whole batches, spread over the agents) instead of "
          "running for --duration; 0 means --duration.");
ABSL_FLAG(int, distinct_batches, 16, "Different prebuilt batches per agent, sent in turn.");
ABSL_FLAG(std::string, host_prefix, "load", "Host names are PREFIX-PID-N.");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(10),
          "How long to wait for the connections and every hello-ack.");
ABSL_FLAG(std::string, label, "", "Copied into the JSON line.");

namespace tcpscope::bench {
namespace {

constexpr char kMethod[] = "/tcpscope.v1.Ingest/Stream";
// After sending stops, how long the acks of what is in flight may take.
constexpr absl::Duration kDrainTimeout = absl::Seconds(10);

size_t PutVarint(uint64_t value, uint8_t* out) {
  size_t n = 0;
  while (value >= 0x80) {
    out[n++] = static_cast<uint8_t>(value | 0x80);
    value >>= 7;
  }
  out[n++] = static_cast<uint8_t>(value);
  return n;
}

size_t VarintSize(uint64_t value) {
  uint8_t scratch[10];
  return PutVarint(value, scratch);
}

// AgentMessage{batch: Batch{seq, <body>}} where `body` is a serialized Batch without seq (its
// events and losses): the header is built per write, the body is shared and never copied.
grpc::ByteBuffer BatchMessage(uint64_t seq, const std::string& body) {
  uint8_t header[24];
  size_t n = 0;
  header[n++] = 0x12;  // AgentMessage.batch = 2, length-delimited
  n += PutVarint(1 + VarintSize(seq) + body.size(), header + n);
  header[n++] = 0x08;  // Batch.seq = 1, varint
  n += PutVarint(seq, header + n);
  grpc::Slice slices[2] = {grpc::Slice(header, n),
                           grpc::Slice(body.data(), body.size(), grpc::Slice::STATIC_SLICE)};
  return grpc::ByteBuffer(slices, 2);
}

grpc::ByteBuffer Serialize(const v1::AgentMessage& message) {
  grpc::ByteBuffer buffer;
  bool own_buffer = false;
  grpc::SerializationTraits<v1::AgentMessage>::Serialize(message, &buffer, &own_buffer);
  return buffer;
}

struct AgentTotals {
  uint64_t batches_written = 0;
  uint64_t acked_seq = 0;
  absl::Time last_ack;
};

class Agent : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  Agent(grpc::GenericStub* stub, const v1::Hello& hello, const std::vector<std::string>* bodies,
        uint64_t window, uint64_t max_batches)
      : bodies_(bodies), window_(window), max_batches_(max_batches) {
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

  bool greeted() {
    absl::MutexLock lock(&mu_);
    return greeted_;
  }
  bool done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }
  grpc::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  AgentTotals totals() {
    absl::MutexLock lock(&mu_);
    return {batches_written_, acked_seq_, last_ack_};
  }
  // Every batch written so far is acknowledged, or the stream is over.
  bool drained() {
    absl::MutexLock lock(&mu_);
    return done_ || closing_ || acked_seq_ + 1 >= next_seq_;
  }
  // All of --events is acknowledged (never true without --events).
  bool quota_acked() {
    absl::MutexLock lock(&mu_);
    return max_batches_ > 0 && acked_seq_ >= max_batches_;
  }

  // The measurement starts: batches flow from now on.
  void Go() {
    {
      absl::MutexLock lock(&mu_);
      going_ = true;
    }
    MaybeWrite();
  }

  void StopSending() {
    absl::MutexLock lock(&mu_);
    going_ = false;
  }

  // Half-closes the stream (the service then finishes it) and lets the RPC end.
  void Close() {
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

  void OnWriteDone(bool ok) override {
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (ok && hello_written_) ++batches_written_;
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

  void OnReadDone(bool ok) override {
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
        acked_seq_ = message.hello_ack().last_applied_seq();
      } else if (message.has_ack()) {
        if (message.ack().seq() >= next_seq_) protocol_error_ = "ack of a batch never sent";
        acked_seq_ = std::max(acked_seq_, message.ack().seq());
        last_ack_ = absl::Now();
      }
    }
    StartRead(&in_);
    MaybeWrite();
  }

  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = protocol_error_.empty() || !status.ok()
                  ? status
                  : grpc::Status(grpc::StatusCode::INTERNAL, protocol_error_);
    done_ = true;
  }

 private:
  void MaybeWrite() {
    {
      absl::MutexLock lock(&mu_);
      if (write_in_flight_ || !greeted_ || !going_ || closing_) return;
      if (next_seq_ - 1 - acked_seq_ >= window_) return;
      if (max_batches_ > 0 && next_seq_ > max_batches_) return;
      out_ = BatchMessage(next_seq_, (*bodies_)[next_seq_ % bodies_->size()]);
      ++next_seq_;
      write_in_flight_ = true;
    }
    StartWrite(&out_);
  }

  const std::vector<std::string>* const bodies_;
  const uint64_t window_;
  const uint64_t max_batches_;
  grpc::ClientContext context_;
  grpc::ByteBuffer in_;

  absl::Mutex mu_;
  grpc::ByteBuffer out_;  // written under mu_ before the one write in flight starts
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool hello_written_ ABSL_GUARDED_BY(mu_) = false;
  bool greeted_ ABSL_GUARDED_BY(mu_) = false;
  bool going_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t acked_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t batches_written_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_ack_ ABSL_GUARDED_BY(mu_);
  std::string protocol_error_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// Polls `condition` every millisecond until it holds or `deadline` passes.
template <typename Condition>
bool WaitUntil(absl::Time deadline, Condition condition) {
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
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

int Fail(const std::string& label, const std::string& error) {
  std::printf("{\"label\":%s,\"error\":%s}\n", JsonString(label).c_str(),
              JsonString(error).c_str());
  std::fflush(stdout);
  return 1;
}

int Main() {
  const std::string target = absl::GetFlag(FLAGS_target);
  const int agents = absl::GetFlag(FLAGS_agents);
  const int batch_size = absl::GetFlag(FLAGS_batch_size);
  const int window = absl::GetFlag(FLAGS_window);
  const int distinct = absl::GetFlag(FLAGS_distinct_batches);
  const int64_t events = absl::GetFlag(FLAGS_events);
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const std::string label = absl::GetFlag(FLAGS_label);
  if (agents < 1 || agents > 1000 || batch_size < 1 || batch_size > 100000 || window < 1 ||
      distinct < 1 || distinct > 1024 || events < 0 || duration <= absl::ZeroDuration()) {
    std::fprintf(stderr,
                 "ingest_load: --agents 1..1000, --batch_size 1..100000, --window >= 1, "
                 "--distinct_batches 1..1024, --events >= 0, --duration > 0\n");
    return 2;
  }
  const uint64_t per_agent_events = (static_cast<uint64_t>(events) + agents - 1) / agents;
  const uint64_t max_batches = events == 0 ? 0 : (per_agent_events + batch_size - 1) / batch_size;

  // Everything sent is built here, before any connection.
  const absl::Time built = absl::Now();
  std::vector<std::vector<std::string>> bodies(agents);
  for (int a = 0; a < agents; ++a) {
    for (int d = 0; d < distinct; ++d) {
      bodies[a].push_back(SyntheticBatch(batch_size, (static_cast<uint64_t>(a) << 32) | d, built)
                              .SerializeAsString());
    }
  }
  size_t body_bytes = 0;
  for (const auto& agent_bodies : bodies) {
    for (const std::string& body : agent_bodies) body_bytes += body.size();
  }
  const double batch_bytes = static_cast<double>(body_bytes) / (agents * distinct);
  {
    // The hand-built framing must be what protobuf itself would parse.
    v1::AgentMessage check;
    grpc::ByteBuffer message = BatchMessage(300, bodies[0][0]);
    if (!grpc::SerializationTraits<v1::AgentMessage>::Deserialize(&message, &check).ok() ||
        check.batch().seq() != 300 || check.batch().events_size() != batch_size) {
      return Fail(label, "internal: batch framing does not parse back");
    }
  }

  const absl::Time connect_deadline = absl::Now() + absl::GetFlag(FLAGS_connect_timeout);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  for (int a = 0; a < agents; ++a) {
    grpc::ChannelArguments arguments;
    arguments.SetMaxSendMessageSize(64 << 20);  // as the agent's shipper
    // A pool per channel: one TCP connection per simulated agent, as with real agents.
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channels.push_back(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments));
    if (!channels.back()->WaitForConnected(absl::ToChronoTime(connect_deadline))) {
      return Fail(label, absl::StrCat("cannot connect to ", target));
    }
    stubs.push_back(std::make_unique<grpc::GenericStub>(channels.back()));
  }

  std::mt19937_64 random(static_cast<uint64_t>(absl::ToUnixNanos(built)) ^ getpid());
  std::vector<std::unique_ptr<Agent>> streams;
  for (int a = 0; a < agents; ++a) {
    const std::string host =
        absl::StrFormat("%s-%d-%02d", absl::GetFlag(FLAGS_host_prefix), getpid(), a);
    streams.push_back(std::make_unique<Agent>(stubs[a].get(), SyntheticHello(host, random() | 1),
                                              &bodies[a], window, max_batches));
  }
  auto first_failure = [&]() -> std::string {
    for (auto& stream : streams) {
      if (stream->done()) {
        const grpc::Status status = stream->status();
        return absl::StrCat("stream ended early (code ", status.error_code(),
                            "): ", status.error_message());
      }
    }
    return "";
  };
  const bool greeted = WaitUntil(connect_deadline, [&] {
    if (!first_failure().empty()) return true;
    return std::all_of(streams.begin(), streams.end(), [](auto& s) { return s->greeted(); });
  });
  std::string error = first_failure();
  if (!greeted || !error.empty()) {
    for (auto& stream : streams) stream->Close();
    WaitUntil(absl::Now() + absl::Seconds(5), [&] {
      return std::all_of(streams.begin(), streams.end(), [](auto& s) { return s->done(); });
    });
    return Fail(label, greeted ? error : "no hello-ack in time");
  }

  // Measured: from the first batch to the last acknowledgement.
  const double cpu_start = CpuSeconds();
  const absl::Time start = absl::Now();
  for (auto& stream : streams) stream->Go();
  WaitUntil(start + (events > 0 ? absl::Hours(24) : duration), [&] {
    if (!first_failure().empty()) return true;
    return events > 0 &&
           std::all_of(streams.begin(), streams.end(), [](auto& s) { return s->quota_acked(); });
  });
  for (auto& stream : streams) stream->StopSending();
  const bool drained = WaitUntil(absl::Now() + kDrainTimeout, [&] {
    return std::all_of(streams.begin(), streams.end(), [](auto& s) { return s->drained(); });
  });
  uint64_t batches_written = 0;
  uint64_t batches_acked = 0;
  absl::Time end = start;
  for (auto& stream : streams) {
    const AgentTotals totals = stream->totals();
    batches_written += totals.batches_written;
    batches_acked += totals.acked_seq;
    end = std::max(end, totals.last_ack);
  }
  const double generator_cpu = CpuSeconds() - cpu_start;

  for (auto& stream : streams) stream->Close();
  const bool ended = WaitUntil(absl::Now() + absl::Seconds(10), [&] {
    return std::all_of(streams.begin(), streams.end(), [](auto& s) { return s->done(); });
  });
  int failed_streams = 0;
  for (auto& stream : streams) {
    if (!stream->done() || !stream->status().ok()) {
      ++failed_streams;
      if (error.empty()) {
        error = stream->done() ? stream->status().error_message() : "stream did not end";
      }
    }
  }
  if (!drained && error.empty()) error = "batches still unacknowledged after the drain timeout";

  const double seconds = absl::ToDoubleSeconds(end - start);
  const uint64_t events_acked = batches_acked * batch_size;
  std::printf(
      "{\"label\":%s,\"target\":%s,\"agents\":%d,\"batch_size\":%d,\"batch_bytes\":%.0f,"
      "\"window\":%d,"
      "\"events_sent\":%llu,\"events_acked\":%llu,\"batches_acked\":%llu,\"seconds\":%.6f,"
      "\"events_per_s\":%.1f,\"generator_cpu_s\":%.3f,\"failed_streams\":%d,\"error\":%s}\n",
      JsonString(label).c_str(), JsonString(target).c_str(), agents, batch_size, batch_bytes,
      window, static_cast<unsigned long long>(batches_written * batch_size),
      static_cast<unsigned long long>(events_acked), static_cast<unsigned long long>(batches_acked),
      seconds, seconds > 0 ? static_cast<double>(events_acked) / seconds : 0.0, generator_cpu,
      failed_streams, error.empty() ? "null" : JsonString(error).c_str());
  std::fflush(stdout);
  if (!ended) std::_Exit(1);  // a reactor still owns its stream: do not destroy it under gRPC
  return error.empty() ? 0 : 1;
}

}  // namespace
}  // namespace tcpscope::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Streams synthetic agent batches into an Ingest service and prints the acknowledged "
      "event rate as JSON.\nUsage: tcpscope-ingest-load --target=HOST:PORT [--agents=8] "
      "[--batch_size=256] [--window=8] [--duration=10s | --events=N]");
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "ingest_load: unexpected argument %s\n", positional[1]);
    return 2;
  }
  return tcpscope::bench::Main();
}
