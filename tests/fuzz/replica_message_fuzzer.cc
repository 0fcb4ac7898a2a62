// libFuzzer target for what a peer replica sends (replica.proto's Exchange): raw bytes -> the
// messages of one stream (replica_input.h) -> Aggregator::ApplyReplicaMessage on a replica of a
// two-replica ring that is the home of one host, then its listings, summary and /metrics. Beyond
// "no crash, no sanitizer report": a refused message changes nothing the queries show, and the
// exposition stays well formed.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "absl/time/time.h"
#include "google/protobuf/stubs/logging.h"
#include "prometheus/text_serializer.h"
#include "service/aggregator.h"
#include "service/fleet_queries.h"
#include "tcpscope/v1/replica.pb.h"
#include "tests/fuzz/exposition_check.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/replica_input.h"

namespace tcpscope::fuzz {
namespace {

using service::Aggregator;
using service::AggregatorOptions;
using service::EventLog;
using service::ServiceMetrics;

const absl::Time kStart = absl::FromUnixSeconds(1800000000);
const char kSelf[] = "10.9.0.1:7700";
const char kPeer[] = "10.9.0.2:7700";

// Messages to other replicas go nowhere.
struct NoPeers : service::ReplicaSender {
  void Send(const std::string&, v1::ReplicaMessage) override {}
};

v1::Batch HomeSnapshot() {
  v1::Batch batch;
  batch.set_seq(1);
  v1::Snapshot& snapshot = *batch.mutable_snapshot();
  snapshot.set_time_unix_ns(static_cast<uint64_t>(absl::ToUnixNanos(kStart)));
  for (int i = 0; i < 8; ++i) {
    v1::Connection& end = *snapshot.add_connections();
    end.set_connection_id(static_cast<uint64_t>(100 + i));
    end.set_state(v1::TCP_STATE_ESTABLISHED);
    end.set_role(v1::ROLE_CLIENT);
    end.mutable_endpoints()->set_local_address(std::string({10, 1, 0, 1}));
    end.mutable_endpoints()->set_remote_address(std::string({10, 1, 0, 2}));
    end.mutable_endpoints()->set_local_port(static_cast<uint32_t>(40000 + i));
    end.mutable_endpoints()->set_remote_port(80);
  }
  return batch;
}

std::string Exposition(const ServiceMetrics& metrics) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, metrics.Collect());
  return out.str();
}

}  // namespace
}  // namespace tcpscope::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tcpscope;
  using namespace tcpscope::fuzz;
  static const bool quiet = [] {
    google::protobuf::SetLogHandler(nullptr);
    return true;
  }();
  (void)quiet;
  ServiceMetrics metrics;
  EventLog log(64);
  AggregatorOptions options;
  options.ring_quiet = absl::ZeroDuration();
  Aggregator aggregator(&metrics, &log, options);
  NoPeers peers;
  aggregator.SetReplicaSender(&peers);
  auto ring = std::make_shared<service::Ring>(RendezvousSet({kSelf, kPeer}), kSelf, 1, kStart);
  aggregator.OnRing(ring, kStart);
  v1::Hello hello;
  hello.set_host_name("host-a");
  hello.set_boot_id("boot-a");
  hello.set_instance_id(1);
  hello.set_source(v1::SOURCE_KIND_SOCK_DIAG);
  uint64_t applied = 0;
  auto host = aggregator.Connect(hello, kStart, &applied);
  FUZZ_CHECK(host.ok(), "%s", std::string(host.status().message()).c_str());
  aggregator.Apply(**host, std::make_shared<v1::Batch>(HomeSnapshot()), kStart);
  service::FleetQueries queries(&aggregator);

  absl::Time now = kStart;
  for (size_t at = 0; at + 2 <= size;) {
    const size_t length = data[at] | (static_cast<size_t>(data[at + 1]) << 8);
    at += 2;
    if (length > size - at) break;
    v1::ReplicaMessage message;
    const bool parsed = message.ParseFromArray(data + at, static_cast<int>(length));
    at += length;
    if (!parsed) continue;
    if (message.ring() == kSameRing) message.set_ring(ring->id);
    now += absl::Seconds(1);
    const std::string before =
        queries.Connections(v1::ListConnectionsRequest(), now).SerializeAsString();
    const absl::Status status = aggregator.ApplyReplicaMessage(kPeer, message, now);
    if (!status.ok()) {
      FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument, "%s",
                 std::string(status.message()).c_str());
      FUZZ_CHECK(
          queries.Connections(v1::ListConnectionsRequest(), now).SerializeAsString() == before,
          "a refused message changed the listing");
    }
    v1::ListConnectionsRequest paired;
    paired.set_paired(true);
    queries.Connections(paired, now);
    queries.Summary("");
    aggregator.CheckSilentHosts(now);
  }
  const absl::StatusOr<std::vector<Sample>> samples = ReadExposition(Exposition(metrics));
  FUZZ_CHECK(samples.ok(), "%s", std::string(samples.status().message()).c_str());
  return 0;
}
