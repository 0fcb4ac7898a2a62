// Every kind of bad agent message is refused with an error that names the problem.
#include "service/batch_validator.h"

#include "common/shared_origins.h"
#include "gtest/gtest.h"
#include "service/packed_ends.h"

namespace tcpscope::service {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1800000000);
const uint64_t kNowNs = 1800000000ULL * 1000000000ULL;

v1::Hello GoodHello() {
  v1::Hello hello;
  hello.set_host_name("web-1.example");
  hello.set_agent_version("0.1.0");
  hello.set_boot_id("0b6f1b7e-2c71-4c55-9a0e-2bd4b1a1d0c2");
  hello.set_instance_id(42);
  hello.set_source(v1::SOURCE_KIND_SOCK_DIAG);
  hello.add_capabilities("snapshot");
  return hello;
}

v1::Event GoodClose() {
  v1::Event event;
  event.set_time_unix_ns(kNowNs);
  event.set_connection_id(7);
  event.mutable_endpoints()->set_local_address(std::string("\x7f\0\0\x01", 4));
  event.mutable_endpoints()->set_remote_address(std::string("\x7f\0\0\x01", 4));
  event.mutable_endpoints()->set_local_port(40000);
  event.mutable_endpoints()->set_remote_port(80);
  event.set_role(v1::ROLE_CLIENT);
  event.mutable_close()->set_initiator(v1::CLOSE_INITIATOR_LOCAL);
  event.mutable_close()->set_reason(v1::CLOSE_REASON_FIN);
  event.mutable_close()->set_last_state(v1::TCP_STATE_TIME_WAIT);
  return event;
}

v1::Batch BatchOf(const v1::Event& event) {
  v1::Batch batch;
  batch.set_seq(1);
  *batch.add_events() = event;
  return batch;
}

void ExpectRefused(const absl::Status& status, const std::string& needle) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(needle), absl::string_view::npos) << status;
}

TEST(BatchValidatorTest, AcceptsGoodMessages) {
  EXPECT_TRUE(ValidateHello(GoodHello()).ok());
  EXPECT_TRUE(ValidateBatch(BatchOf(GoodClose()), kNow).ok());
}

TEST(BatchValidatorTest, RefusesBadHellos) {
  v1::Hello hello = GoodHello();
  hello.set_host_name("");
  ExpectRefused(ValidateHello(hello), "host name is empty");
  hello.set_host_name("web\"1");
  ExpectRefused(ValidateHello(hello), "0x22");
  hello.set_host_name(std::string(300, 'a'));
  ExpectRefused(ValidateHello(hello), "300 characters");
  hello.set_host_name("-leading-dash");
  ExpectRefused(ValidateHello(hello), "position 0");
  hello.set_host_name("h\n");
  ExpectRefused(ValidateHello(hello), "0x0a");
  hello = GoodHello();
  hello.set_instance_id(0);
  ExpectRefused(ValidateHello(hello), "instance_id");
  hello = GoodHello();
  hello.set_source(static_cast<v1::SourceKind>(99));
  ExpectRefused(ValidateHello(hello), "source kind 99");
  hello = GoodHello();
  hello.set_boot_id("");
  ExpectRefused(ValidateHello(hello), "boot_id");
}

TEST(BatchValidatorTest, RefusesBadEvents) {
  v1::Event event = GoodClose();
  event.mutable_endpoints()->set_local_port(70000);
  ExpectRefused(ValidateBatch(BatchOf(event), kNow), "port out of range");

  event = GoodClose();
  event.mutable_endpoints()->set_remote_address(std::string(16, '\0'));
  ExpectRefused(ValidateBatch(BatchOf(event), kNow), "4 and 16");

  event = GoodClose();
  event.mutable_endpoints()->set_local_address("abc");
  event.mutable_endpoints()->set_remote_address("abc");
  ExpectRefused(ValidateBatch(BatchOf(event), kNow), "3 and 3");

  event = GoodClose();
  event.mutable_close()->set_reason(static_cast<v1::CloseReason>(42));
  ExpectRefused(ValidateBatch(BatchOf(event), kNow), "close reason 42");

  event = GoodClose();
  event.mutable_close()->set_initiator(v1::CLOSE_INITIATOR_UNSPECIFIED);
  ExpectRefused(ValidateBatch(BatchOf(event), kNow), "initiator");

  event = GoodClose();
  event.set_role(v1::ROLE_UNSPECIFIED);  // not known: reported, not guessed
  EXPECT_TRUE(ValidateBatch(BatchOf(event), kNow).ok());

  event = GoodClose();
  event.set_time_unix_ns(5);
  ExpectRefused(ValidateBatch(BatchOf(event), kNow), "time 5 ns");

  event = GoodClose();
  event.set_time_unix_ns(kNowNs + 48ULL * 3600 * 1000000000ULL);
  ExpectRefused(ValidateBatch(BatchOf(event), kNow), "not between");

  event = GoodClose();
  event.mutable_close()->set_lifetime_us(~0ULL);
  ExpectRefused(ValidateBatch(BatchOf(event), kNow), "impossible");

  event = GoodClose();
  event.mutable_origin()->set_command("bad\x01name");
  ExpectRefused(ValidateBatch(BatchOf(event), kNow), "command");

  event = GoodClose();
  event.clear_close();
  ExpectRefused(ValidateBatch(BatchOf(event), kNow), "no kind");

  // Half-open findings are the service's: an agent claiming one is refused.
  event = GoodClose();
  event.mutable_half_open()->set_reason(v1::HALF_OPEN_PEER_CLOSED);
  ExpectRefused(ValidateBatch(BatchOf(event), kNow), "half_open events are the service's");
}

// A kind without rules of its own (keepalive_answered, or a new one) follows the rules of every
// kind, checked by reflection: a known role and known enum values.
TEST(BatchValidatorTest, KindsWithoutOwnRulesFollowTheCommonOnes) {
  v1::Event event = GoodClose();
  event.mutable_keepalive_answered()->set_probes_outstanding(2);
  EXPECT_TRUE(ValidateBatch(BatchOf(event), kNow).ok());
  event.set_role(static_cast<v1::Role>(9));
  ExpectRefused(ValidateBatch(BatchOf(event), kNow), "unknown role 9");
}

// Every member of Event.kind reaches a rule: none is refused as unknown to the service.
TEST(BatchValidatorTest, EveryKindOfTheProtoIsKnown) {
  const auto* oneof = v1::Event::descriptor()->FindOneofByName("kind");
  for (int i = 0; i < oneof->field_count(); ++i) {
    v1::Event event = GoodClose();
    event.GetReflection()->MutableMessage(&event, oneof->field(i));
    const absl::Status status = ValidateBatch(BatchOf(event), kNow);
    EXPECT_EQ(status.message().find("no kind"), absl::string_view::npos)
        << oneof->field(i)->name() << ": " << status;
  }
}

TEST(BatchValidatorTest, RefusesBadBatchesAndSnapshots) {
  v1::Batch batch = BatchOf(GoodClose());
  batch.set_seq(0);
  ExpectRefused(ValidateBatch(batch, kNow), "seq");

  ValidationLimits limits;
  limits.max_events_per_batch = 2;
  batch = BatchOf(GoodClose());
  *batch.add_events() = GoodClose();
  *batch.add_events() = GoodClose();
  ExpectRefused(ValidateBatch(batch, kNow, limits), "3 events; at most 2");

  batch = v1::Batch();
  batch.set_seq(3);
  v1::Snapshot* snapshot = batch.mutable_snapshot();
  snapshot->set_time_unix_ns(kNowNs);
  v1::Connection* connection = snapshot->add_connections();
  *connection->mutable_endpoints() = GoodClose().endpoints();
  connection->set_state(v1::TCP_STATE_ESTABLISHED);
  EXPECT_TRUE(ValidateBatch(batch, kNow).ok());
  connection->set_state(static_cast<v1::TcpState>(77));
  ExpectRefused(ValidateBatch(batch, kNow), "state 77");
  connection->set_state(v1::TCP_STATE_LISTEN);
  ExpectRefused(ValidateBatch(batch, kNow), "not a connection state");
  connection->set_state(v1::TCP_STATE_ESTABLISHED);
  connection->mutable_endpoints()->set_remote_port(65536);
  ExpectRefused(ValidateBatch(batch, kNow), "snapshot connection 0");
  connection->mutable_endpoints()->set_remote_port(80);

  // Origins sent once in the snapshot's table: a reference must name an entry, and an end has
  // an inline origin or a reference, not both.
  connection->mutable_origin()->set_pod("web-0");
  ShareSnapshotOrigins(*snapshot);
  EXPECT_TRUE(ValidateBatch(batch, kNow).ok());
  connection->set_origin_ref(2);
  ExpectRefused(ValidateBatch(batch, kNow),
                "snapshot connection 0: origin_ref 2 beyond the snapshot's 1 origins");
  connection->set_origin_ref(1);
  connection->mutable_origin()->set_pod("web-0");
  ExpectRefused(ValidateBatch(batch, kNow), "an inline origin and an origin_ref");
  connection->clear_origin();
  *snapshot->add_origins() = snapshot->origins(0);
  ExpectRefused(ValidateBatch(batch, kNow), "2 origins for 1 connections");

  // Likewise for events and their batch's table.
  batch = BatchOf(GoodClose());
  batch.mutable_events(0)->mutable_origin()->set_pod("web-0");
  ShareBatchOrigins(batch);
  EXPECT_TRUE(ValidateBatch(batch, kNow).ok());
  batch.mutable_events(0)->set_origin_ref(3);
  ExpectRefused(ValidateBatch(batch, kNow), "event 0: origin_ref 3 beyond the batch's 1 origins");
  batch.mutable_events(0)->set_origin_ref(1);
  batch.mutable_events(0)->mutable_origin()->set_pod("web-0");
  ExpectRefused(ValidateBatch(batch, kNow), "an inline origin and an origin_ref");
  batch.mutable_events(0)->clear_origin();
  *batch.add_origins() = batch.origins(0);
  ExpectRefused(ValidateBatch(batch, kNow), "2 origins for 1 events");

  batch = BatchOf(GoodClose());
  batch.mutable_source_health()->set_state(v1::SOURCE_STATE_EVENTS_FAILED);
  batch.mutable_source_health()->set_problem("eBPF ring buffer poll: Input/output error");
  EXPECT_TRUE(ValidateBatch(batch, kNow).ok());
  batch.mutable_source_health()->set_state(static_cast<v1::SourceState>(9));
  ExpectRefused(ValidateBatch(batch, kNow), "unknown state 9");
  batch.mutable_source_health()->set_state(v1::SOURCE_STATE_EVENTS_FAILED);
  batch.mutable_source_health()->set_problem("line\nbreak");
  ExpectRefused(ValidateBatch(batch, kNow), "problem must be");
  batch.mutable_source_health()->set_problem(std::string(257, 'x'));
  ExpectRefused(ValidateBatch(batch, kNow), "problem must be");
}

// Every workload name of an Origin, in an event or a snapshot end, is empty or passes the name
// rule; a hostile one is refused with the field's name.
TEST(BatchValidatorTest, RefusesHostileWorkloadNames) {
  using Setter = void (*)(v1::Origin&, const std::string&);
  const std::pair<std::string, Setter> fields[] = {
      {"origin.container_id", [](v1::Origin& o, const std::string& v) { o.set_container_id(v); }},
      {"origin.container_name",
       [](v1::Origin& o, const std::string& v) { o.set_container_name(v); }},
      {"origin.pod_namespace", [](v1::Origin& o, const std::string& v) { o.set_pod_namespace(v); }},
      {"origin.pod", [](v1::Origin& o, const std::string& v) { o.set_pod(v); }},
      {"origin.pod_uid", [](v1::Origin& o, const std::string& v) { o.set_pod_uid(v); }},
  };
  const std::pair<std::string, std::string> hostile[] = {
      {"web\"1", "0x22"},      {"web\n1", "0x0a"},
      {"web}1", "0x7d"},       {std::string(300, 'a'), "300 characters"},
      {"caf\xc3\xa9", "0xc3"}, {"-dash", "position 0"},
      {"a b", "0x20"},         {"ns/pod", "0x2f"},
  };
  for (const auto& [field, set] : fields) {
    for (const auto& [value, needle] : hostile) {
      v1::Event event = GoodClose();
      set(*event.mutable_origin(), value);
      const absl::Status status = ValidateBatch(BatchOf(event), kNow);
      ExpectRefused(status, field);
      ExpectRefused(status, needle);
      ExpectRefused(status, "event 0");

      v1::Batch batch;
      batch.set_seq(1);
      batch.mutable_snapshot()->set_time_unix_ns(kNowNs);
      v1::Connection* connection = batch.mutable_snapshot()->add_connections();
      *connection->mutable_endpoints() = GoodClose().endpoints();
      connection->set_state(v1::TCP_STATE_ESTABLISHED);
      set(*connection->mutable_origin(), value);
      ExpectRefused(ValidateBatch(batch, kNow), field);
      ExpectRefused(ValidateBatch(batch, kNow), "snapshot connection 0");
      // The same origin in the batch's table, referred to by the event.
      v1::Batch shared = BatchOf(event);
      ShareBatchOrigins(shared);
      ASSERT_EQ(shared.events(0).origin_ref(), 1u);
      ExpectRefused(ValidateBatch(shared, kNow), field);
      ExpectRefused(ValidateBatch(shared, kNow), "batch origin 0");
      // The same origin in the snapshot's table, referred to by the end.
      ShareSnapshotOrigins(*batch.mutable_snapshot());
      ASSERT_EQ(connection->origin_ref(), 1u);
      ExpectRefused(ValidateBatch(batch, kNow), field);
      ExpectRefused(ValidateBatch(batch, kNow), "snapshot origin 0");
    }
    // Good names and the longest one pass.
    for (const std::string& value :
         {std::string("web-1"), std::string("kube-system"), std::string(253, 'b'),
          std::string("3f2a9c0d1e4b5a6978c0d1e2f3a4b5c6d7e8f90123456789abcdef0123456789"),
          std::string("a.b_c-d")}) {
      v1::Event event = GoodClose();
      set(*event.mutable_origin(), value);
      EXPECT_TRUE(ValidateBatch(BatchOf(event), kNow).ok()) << field << "=" << value;
    }
  }
  v1::Event event = GoodClose();
  event.mutable_origin()->set_runtime(static_cast<v1::ContainerRuntime>(9));
  ExpectRefused(ValidateBatch(BatchOf(event), kNow), "origin.runtime: unknown container runtime 9");
  event.mutable_origin()->set_runtime(v1::CONTAINER_RUNTIME_PODMAN);
  EXPECT_TRUE(ValidateBatch(BatchOf(event), kNow).ok());

  // A half-open event stays refused, its peer_origin whatever it holds.
  event = GoodClose();
  event.mutable_half_open()->mutable_peer_origin()->set_pod("db-0");
  ExpectRefused(ValidateBatch(BatchOf(event), kNow), "half_open events are the service's");
}

}  // namespace
}  // namespace tcpscope::service

namespace tcpscope::service {
namespace {

// A peer replica's messages are checked as strictly as an agent's.
TEST(BatchValidatorTest, RefusesBadReplicaMessages) {
  v1::HostFragment fragment;
  fragment.set_host("web-1.example");
  fragment.set_boot_id("boot-1");
  v1::FragmentClose* close = fragment.add_closes();
  *close->mutable_endpoints() = GoodClose().endpoints();
  close->set_time_unix_ns(kNowNs);
  v1::PackedEnds& packed = *fragment.mutable_ends();
  packed.set_version(kPackedEndVersion);
  packed.set_time_unix_ns(kNowNs);
  packed.add_origins()->set_command("nginx");
  EndRecord record;
  record.state = v1::TCP_STATE_ESTABLISHED;
  record.role = v1::ROLE_SERVER;
  record.state_since_unix_ns = kNowNs;
  AppendPackedEnd(record, packed.mutable_records());
  EXPECT_TRUE(ValidateFragment(fragment, kNow).ok());
  // One bad end record of the fragment: `change` makes it so.
  auto with_end = [&fragment](auto change) {
    v1::HostFragment bad = fragment;
    EndRecord record = ReadPackedEnd(bad.ends().records().data());
    change(record);
    bad.mutable_ends()->clear_records();
    AppendPackedEnd(record, bad.mutable_ends()->mutable_records());
    return bad;
  };
  v1::HostFragment bad = fragment;
  bad.set_host("web 1");
  ExpectRefused(ValidateFragment(bad, kNow), "host name");
  bad = fragment;
  bad.clear_boot_id();
  ExpectRefused(ValidateFragment(bad, kNow), "boot_id");
  bad = fragment;
  bad.mutable_closes(0)->mutable_endpoints()->set_local_address("abc");
  ExpectRefused(ValidateFragment(bad, kNow), "fragment close 0");
  bad = fragment;
  bad.mutable_closes(0)->set_time_unix_ns(1);
  ExpectRefused(ValidateFragment(bad, kNow), "fragment close 0");
  bad = fragment;
  bad.mutable_ends()->set_version(kPackedEndVersion + 1);
  ExpectRefused(ValidateFragment(bad, kNow), "record layout 2");
  bad = fragment;
  bad.mutable_ends()->mutable_records()->pop_back();
  ExpectRefused(ValidateFragment(bad, kNow), "not whole records");
  bad = fragment;
  bad.mutable_ends()->set_time_unix_ns(1);
  ExpectRefused(ValidateFragment(bad, kNow), "fragment ends: time 1");
  bad = fragment;
  bad.mutable_ends()->mutable_origins(0)->set_pod("no spaces");
  ExpectRefused(ValidateFragment(bad, kNow), "origin.pod");
  ExpectRefused(ValidateFragment(with_end([](EndRecord& e) { e.origin = 1; }), kNow),
                "fragment end 0: origin 1 beyond the 1 origins");
  ExpectRefused(
      ValidateFragment(with_end([](EndRecord& e) { e.state = v1::TCP_STATE_LISTEN; }), kNow),
      "fragment end 0: state");
  ExpectRefused(ValidateFragment(with_end([](EndRecord& e) { e.role = 77; }), kNow),
                "unknown role 77");
  ExpectRefused(ValidateFragment(with_end([](EndRecord& e) { e.at_risk = 99; }), kNow),
                "unknown at-risk reason 99");
  ExpectRefused(ValidateFragment(with_end([](EndRecord& e) { e.ipv6 = true; }), kNow),
                "beyond the 0 in the table");
  ExpectRefused(ValidateFragment(with_end([](EndRecord& e) { e.idle_ms = ~uint64_t{0}; }), kNow),
                "idle time");
  ExpectRefused(ValidateFragment(with_end([](EndRecord& e) { e.state_since_unix_ns = 5; }), kNow),
                "fragment end 0: time 5");

  v1::HostStatus status;
  status.set_host("web-1.example");
  status.set_change(v1::HostStatus::CHANGE_DOWN);
  EXPECT_TRUE(ValidateHostStatus(status).ok());
  status.set_change(static_cast<v1::HostStatus::Change>(9));
  ExpectRefused(ValidateHostStatus(status), "unknown change 9");

  v1::HostFindings findings;
  findings.set_host("web-1.example");
  v1::Event* event = findings.add_half_open();
  *event = GoodClose();
  event->mutable_half_open()->set_reason(v1::HALF_OPEN_PEER_CLOSED);
  event->mutable_half_open()->set_peer_host("web-2.example");
  v1::HalfOpenEnd* end = findings.mutable_half_open_now()->add_ends();
  end->set_reason(v1::HALF_OPEN_PEER_REBOOTED);
  EXPECT_TRUE(ValidateFindings(findings, kNow).ok());
  v1::HostFindings bad_findings = findings;
  *bad_findings.mutable_half_open(0) = GoodClose();
  ExpectRefused(ValidateFindings(bad_findings, kNow), "is not a half_open event");
  bad_findings = findings;
  bad_findings.mutable_half_open(0)->set_origin_ref(1);
  ExpectRefused(ValidateFindings(bad_findings, kNow), "inline");
  bad_findings = findings;
  bad_findings.mutable_half_open(0)->mutable_half_open()->set_peer_host("");
  ExpectRefused(ValidateFindings(bad_findings, kNow), "host name");
  bad_findings = findings;
  bad_findings.mutable_half_open_now()->mutable_ends(0)->set_reason(
      v1::HALF_OPEN_REASON_UNSPECIFIED);
  ExpectRefused(ValidateFindings(bad_findings, kNow), "half-open end 0");
}

}  // namespace
}  // namespace tcpscope::service
