// tcpscope-ingest-load: simulated agents streaming realistic batches into an Ingest service
// (tcpscope-service, or tcpscope-bare-ingest as the baseline) as fast as it acknowledges them.
// Prints one JSON line: events sent, events acknowledged, seconds, acknowledged events/s.
//
// Each agent is one Ingest/Stream on its own channel (its own TCP connection) and speaks the
// agent's protocol (bench/ingest_stream.h): Hello, wait for HelloAck, then batches numbered 1, 2,
// 3... with one write in flight and at most --window batches unacknowledged; acks are
// cumulative. Batches are built and serialized once, up front: a write sends a few header bytes
// carrying the batch's seq followed by the prebuilt bytes (not copied), so the generator costs
// next to nothing per event and the server's cost dominates.
//
//   tcpscope-ingest-load --target=127.0.0.1:7700 --agents=8 --batch_size=256 --duration=10s
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
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/ingest_stream.h"
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

// After sending stops, how long the acks of what is in flight may take.
constexpr absl::Duration kDrainTimeout = absl::Seconds(10);

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
  std::vector<std::vector<OutBatch>> bodies(agents);
  for (int a = 0; a < agents; ++a) {
    for (int d = 0; d < distinct; ++d) {
      OutBatch& batch = bodies[a].emplace_back();
      batch.body = std::make_shared<const std::string>(
          SyntheticBatch(batch_size, (static_cast<uint64_t>(a) << 32) | d, built)
              .SerializeAsString());
      batch.events = static_cast<uint64_t>(batch_size);
    }
  }
  size_t body_bytes = 0;
  for (const auto& agent_bodies : bodies) {
    for (const OutBatch& batch : agent_bodies) body_bytes += batch.body->size();
  }
  const double batch_bytes = static_cast<double>(body_bytes) / (agents * distinct);
  {
    // The hand-built framing must be what protobuf itself would parse.
    v1::AgentMessage check;
    grpc::ByteBuffer message = BatchMessage(300, bodies[0][0].body);
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
  std::vector<std::unique_ptr<IngestStream>> streams;
  for (int a = 0; a < agents; ++a) {
    const std::string host =
        absl::StrFormat("%s-%d-%02d", absl::GetFlag(FLAGS_host_prefix), getpid(), a);
    IngestStream::Options options;
    options.window = static_cast<uint64_t>(window);
    options.max_batches = max_batches;
    options.filler = &bodies[a];
    streams.push_back(std::make_unique<IngestStream>(stubs[a].get(),
                                                     SyntheticHello(host, random() | 1), options));
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
  const double cpu_start = SelfCpuSeconds();
  const absl::Time start = absl::Now();
  for (auto& stream : streams) stream->StartFilling();
  WaitUntil(start + (events > 0 ? absl::Hours(24) : duration), [&] {
    if (!first_failure().empty()) return true;
    return events > 0 &&
           std::all_of(streams.begin(), streams.end(), [](auto& s) { return s->quota_acked(); });
  });
  for (auto& stream : streams) stream->StopFilling();
  const bool drained = WaitUntil(absl::Now() + kDrainTimeout, [&] {
    return std::all_of(streams.begin(), streams.end(), [](auto& s) { return s->drained(); });
  });
  uint64_t batches_written = 0;
  uint64_t batches_acked = 0;
  absl::Time end = start;
  for (auto& stream : streams) {
    const StreamTotals totals = stream->totals();
    batches_written += totals.batches_written;
    batches_acked += totals.batches_acked;
    end = std::max(end, totals.last_ack);
  }
  const double generator_cpu = SelfCpuSeconds() - cpu_start;

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
