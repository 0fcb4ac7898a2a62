// tcpscope-bare-ingest: the Ingest service reduced to its protocol, the baseline of
// bench/ingest_bench. gRPC parses every AgentMessage into its protobuf as for the real service;
// the reactor answers the hello with hello_ack(0) and each batch with a cumulative ack, exactly
// as service/ingest_service.cc does, and keeps nothing: no validation, no aggregation, no
// metrics. Same gRPC server settings as service/main.cc (message size limit, health service,
// reflection), so the difference to tcpscope-service is what the service does per message.
//
// --arena serves the same stream as raw bytes parsed into a per-stream protobuf arena: not a
// baseline but an experiment, measuring what parsing that way would save the service.
#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "common/shutdown.h"
#include "google/protobuf/arena.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/impl/codegen/proto_buffer_reader.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "tcpscope/v1/ingest.grpc.pb.h"

ABSL_FLAG(std::string, grpc_listen, "127.0.0.1:7700", "Address for gRPC (Ingest only).");
ABSL_FLAG(int, max_message_bytes, 16 << 20,
          "Largest gRPC message accepted, in bytes (as tcpscope-service).");
ABSL_FLAG(bool, arena, false,
          "Parse each message into a protobuf arena instead of the generated service's message "
          "(an experiment: not what tcpscope-service does).");

namespace tcpscope::bench {
namespace {

struct Totals {
  std::atomic<uint64_t> batches{0};
  std::atomic<uint64_t> events{0};
};

// Messages as the generated service gets them: gRPC parses each into the reactor's one
// AgentMessage, which (being a oneof) frees the previous batch first. As tcpscope-service.
struct TypedCodec {
  using In = v1::AgentMessage;
  using Out = v1::ServiceMessage;
  const v1::AgentMessage* Decode(In& in) { return &in; }
  void Encode(const v1::ServiceMessage& message, Out* out) { *out = message; }
};

// --arena: raw bytes parsed into a protobuf arena that is reset for each message, so a batch
// costs a few block allocations instead of several heap allocations per event. Not what the
// service does: it measures what the service could gain (BENCHMARKS.md).
class ArenaCodec {
 public:
  using In = grpc::ByteBuffer;
  using Out = grpc::ByteBuffer;

  ArenaCodec() : block_(new char[kBlockBytes]), arena_(Options(block_.get())) {}

  const v1::AgentMessage* Decode(In& in) {
    arena_.Reset();
    auto* message = google::protobuf::Arena::CreateMessage<v1::AgentMessage>(&arena_);
    grpc::ProtoBufferReader reader(&in);
    return message->ParseFromZeroCopyStream(&reader) ? message : nullptr;
  }
  void Encode(const v1::ServiceMessage& message, Out* out) {
    bool own_buffer = false;
    grpc::SerializationTraits<v1::ServiceMessage>::Serialize(message, out, &own_buffer);
  }

 private:
  static constexpr size_t kBlockBytes = 1 << 20;  // holds a 1024-event batch
  static google::protobuf::ArenaOptions Options(char* block) {
    google::protobuf::ArenaOptions options;
    options.initial_block = block;
    options.initial_block_size = kBlockBytes;
    return options;
  }
  std::unique_ptr<char[]> block_;
  google::protobuf::Arena arena_;
};

// The write/finish handling of service/ingest_service.cc's reactor, without the service.
template <typename Codec>
class Reactor : public grpc::ServerBidiReactor<typename Codec::In, typename Codec::Out> {
 public:
  explicit Reactor(Totals* totals) : totals_(totals) { this->StartRead(&in_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      FinishOnce(grpc::Status::OK);
      return;
    }
    const v1::AgentMessage* message = codec_.Decode(in_);
    bool write = false;
    bool refused = false;
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      if (message == nullptr) {
        finish_status_ = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unparsable message");
      } else if (!greeted_) {
        if (!message->has_hello()) {
          finish_status_ = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                        "the first message must be a hello");
        } else {
          greeted_ = true;
          pending_hello_ack_ = 0;  // remembers nothing
        }
      } else if (!message->has_batch()) {
        finish_status_ = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "expected a batch");
      } else {
        pending_ack_ = std::max(pending_ack_.value_or(0), message->batch().seq());
        totals_->batches.fetch_add(1, std::memory_order_relaxed);
        totals_->events.fetch_add(message->batch().events_size(), std::memory_order_relaxed);
      }
      refused = finish_status_.has_value();
      if (refused && !write_in_flight_) finish = finish_status_;  // else OnWriteDone finishes
      if (!refused) write = PrepareWriteLocked();
    }
    // Ops start outside the lock, so a reaction that runs inline cannot deadlock on mu_.
    if (finish.has_value()) this->Finish(*finish);
    if (refused) return;  // no further read: the stream ends
    if (write) this->StartWrite(&out_);
    this->StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    bool write = false;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (finish_status_.has_value()) {
        finish = finish_status_;
      } else if (ok) {
        write = PrepareWriteLocked();
      }
    }
    if (finish.has_value()) this->Finish(*finish);
    if (write) this->StartWrite(&out_);
  }

  void OnDone() override { delete this; }

 private:
  bool PrepareWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || finish_status_.has_value()) return false;
    v1::ServiceMessage reply;
    if (pending_hello_ack_.has_value()) {
      reply.mutable_hello_ack()->set_last_applied_seq(*pending_hello_ack_);
      pending_hello_ack_.reset();
    } else if (pending_ack_.has_value()) {
      reply.mutable_ack()->set_seq(*pending_ack_);
      pending_ack_.reset();
    } else {
      return false;
    }
    codec_.Encode(reply, &out_);
    write_in_flight_ = true;
    return true;
  }

  void FinishOnce(const grpc::Status& status) {
    bool finish_now = false;
    {
      absl::MutexLock lock(&mu_);
      if (finish_status_.has_value()) return;
      finish_status_ = status;
      finish_now = !write_in_flight_;
    }
    if (finish_now) this->Finish(status);
  }

  Totals* const totals_;
  Codec codec_;  // used by the one read in flight (Decode) and under mu_ (Encode)
  typename Codec::In in_;
  absl::Mutex mu_;
  typename Codec::Out out_;
  bool greeted_ ABSL_GUARDED_BY(mu_) = false;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<uint64_t> pending_hello_ack_ ABSL_GUARDED_BY(mu_);
  std::optional<uint64_t> pending_ack_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> finish_status_ ABSL_GUARDED_BY(mu_);
};

class BareIngest : public v1::Ingest::CallbackService {
 public:
  explicit BareIngest(Totals* totals) : totals_(totals) {}
  grpc::ServerBidiReactor<v1::AgentMessage, v1::ServiceMessage>* Stream(
      grpc::CallbackServerContext* context) override {
    return new Reactor<TypedCodec>(totals_);
  }

 private:
  Totals* const totals_;
};

// --arena: the same stream served as raw bytes, every other method unimplemented.
class ArenaIngest : public grpc::CallbackGenericService {
 public:
  explicit ArenaIngest(Totals* totals) : totals_(totals) {}
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override {
    if (context->method() != "/tcpscope.v1.Ingest/Stream") {
      return grpc::CallbackGenericService::CreateReactor(context);
    }
    return new Reactor<ArenaCodec>(totals_);
  }

 private:
  Totals* const totals_;
};

int Main() {
  const int max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  if (max_message_bytes < 1024 || max_message_bytes > (256 << 20)) {
    TS_LOG(ERROR) << "--max_message_bytes=" << max_message_bytes << " is outside 1024..268435456";
    return 2;
  }
  Totals totals;
  BareIngest ingest(&totals);
  ArenaIngest arena_ingest(&totals);
  const bool arena = absl::GetFlag(FLAGS_arena);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  const std::string grpc_listen = absl::GetFlag(FLAGS_grpc_listen);
  int grpc_port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(grpc_listen, grpc::InsecureServerCredentials(), &grpc_port);
  builder.SetMaxReceiveMessageSize(max_message_bytes);
  if (arena) {
    builder.RegisterCallbackGenericService(&arena_ingest);
  } else {
    builder.RegisterService(&ingest);
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    TS_LOG(ERROR) << "--grpc_listen=" << grpc_listen
                  << ": cannot listen (address in use or invalid)";
    return 1;
  }
  TS_LOG(INFO) << "tcpscope-bare-ingest: gRPC on " << grpc_listen << " (port " << grpc_port << ")";
  const int signal_number = WaitForShutdownSignal();
  TS_LOG(INFO) << "signal " << signal_number << ": stopping";
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  TS_LOG(INFO) << "stopped after " << totals.batches.load() << " batches, " << totals.events.load()
               << " events";
  return 0;
}

}  // namespace
}  // namespace tcpscope::bench

int main(int argc, char** argv) {
  tcpscope::BlockShutdownSignals();
  absl::SetProgramUsageMessage(
      "A bare Ingest service: acknowledges agent batches and drops them (benchmark "
      "baseline).\nUsage: tcpscope-bare-ingest [--grpc_listen=HOST:PORT]");
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    TS_LOG(ERROR) << "unexpected argument '" << positional[1] << "'";
    return 2;
  }
  return tcpscope::bench::Main();
}
