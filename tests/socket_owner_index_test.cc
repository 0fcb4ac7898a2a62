// The owner index with a fake scanner: refreshes, listener lookups and their bounded rescans,
// and how events without a process are given one (the eBPF source's path).
#include "agent/socket_owner_index.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "gtest/gtest.h"

namespace tcpscope::agent {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1800000000);
constexpr uint64_t kNetns = 4026531840u;

OwnerRef Owner(uint32_t pid, const std::string& command, uint64_t cgroup_id = 0) {
  return std::make_shared<const SocketOwner>(
      SocketOwner{.pid = pid, .cgroup_id = cgroup_id, .command = command});
}

// Returns `next` on every scan (or `error` when set), counting scans.
class FakeScanner : public SocketOwners {
 public:
  const char* mode() const override { return "fake"; }
  absl::StatusOr<OwnerTable> Scan() override {
    ++*scans;
    if (!error.ok()) return error;
    return *next;
  }
  std::shared_ptr<int> scans = std::make_shared<int>(0);
  std::shared_ptr<OwnerTable> next = std::make_shared<OwnerTable>();
  absl::Status error;
};

struct Fixture {
  Fixture() {
    auto owned = std::make_unique<FakeScanner>();
    scanner = owned.get();
    index = std::make_unique<SocketOwnerIndex>(std::move(owned), nullptr);
  }
  FakeScanner* scanner;
  std::unique_ptr<SocketOwnerIndex> index;
};

TEST(SocketOwnerIndexTest, FailedScanKeepsTheLastTable) {
  Fixture f;
  f.scanner->next->sockets[1] = Owner(10, "a");
  EXPECT_EQ(f.index->Refresh()->sockets.size(), 1u);
  f.scanner->error = absl::UnavailableError("gone");
  std::shared_ptr<const OwnerTable> table = f.index->Refresh();
  EXPECT_EQ(table->sockets.at(1)->pid, 10u);
  EXPECT_EQ(*f.scanner->scans, 2);
}

TEST(SocketOwnerIndexTest, SnapshotsScanOnlyForNewSocketsAndOnceAMinute) {
  Fixture f;
  SocketRecord owned, unowned, time_wait;
  owned.inode = 1;
  unowned.inode = 2;    // a file no visible process holds
  time_wait.inode = 0;  // no file at all
  std::vector<SocketRecord> dump = {owned, unowned, time_wait};
  f.scanner->next->sockets[1] = Owner(10, "a");
  // The first snapshot scans.
  EXPECT_EQ(f.index->ForSnapshot({&dump}, kNow)->sockets.at(1)->pid, 10u);
  EXPECT_EQ(*f.scanner->scans, 1);
  // Nothing new (the unowned socket was missed already): no scan.
  f.index->ForSnapshot({&dump}, kNow + absl::Seconds(10));
  EXPECT_EQ(*f.scanner->scans, 1);
  // A new socket: a scan.
  SocketRecord fresh;
  fresh.inode = 3;
  dump.push_back(fresh);
  f.scanner->next->sockets[3] = Owner(11, "b");
  EXPECT_EQ(f.index->ForSnapshot({&dump}, kNow + absl::Seconds(20))->sockets.at(3)->pid, 11u);
  EXPECT_EQ(*f.scanner->scans, 2);
  f.index->ForSnapshot({&dump}, kNow + absl::Seconds(30));
  EXPECT_EQ(*f.scanner->scans, 2);
  // A minute after the last scan, one anyway: a socket passed to another process keeps its inode.
  f.scanner->next->sockets[1] = Owner(12, "c");
  EXPECT_EQ(f.index->ForSnapshot({&dump}, kNow + absl::Seconds(80))->sockets.at(1)->pid, 12u);
  EXPECT_EQ(*f.scanner->scans, 3);
}

TEST(SocketOwnerIndexTest, ListenerFromTheScanOrFromTheDumps) {
  Fixture f;
  f.scanner->next->listeners[ListenerKey{kNetns, 80}] = Owner(10, "nginx");
  f.scanner->next->sockets[700] = Owner(11, "postgres");  // the /proc walk knows no ports
  f.index->Refresh();
  absl::flat_hash_map<ListenerKey, uint64_t> dumped;
  SocketRecord listener;
  listener.state = 10;
  listener.local_port = 5432;
  listener.inode = 700;
  SocketRecord established = listener;
  established.state = 1;
  established.local_port = 5433;
  AddDumpListeners(kNetns, {listener, established}, &dumped);
  ASSERT_EQ(dumped.size(), 1u);
  f.index->SetDumpListeners(std::move(dumped));
  EXPECT_EQ(f.index->Listener({kNetns, 80}, kNow + absl::Seconds(5))->pid, 10u);
  EXPECT_EQ(f.index->Listener({kNetns, 5432}, kNow + absl::Seconds(5))->command, "postgres");
  EXPECT_EQ(*f.scanner->scans, 1);  // hits cost no scan
}

TEST(SocketOwnerIndexTest, MissRescansAtMostOncePerIntervalAndOncePerKey) {
  Fixture f;
  f.index->Refresh();
  ASSERT_EQ(*f.scanner->scans, 1);
  // A listener opened since the snapshot: the miss rescans at once and finds it.
  f.scanner->next->listeners[ListenerKey{kNetns, 80}] = Owner(10, "nginx");
  OwnerRef owner = f.index->Listener({kNetns, 80}, kNow);
  ASSERT_NE(owner, nullptr);
  EXPECT_EQ(owner->pid, 10u);
  EXPECT_EQ(*f.scanner->scans, 2);
  // Another miss within the interval (100 ms): no rescan, and not remembered as unknown.
  EXPECT_EQ(f.index->Listener({kNetns, 81}, kNow + absl::Milliseconds(90)), nullptr);
  EXPECT_EQ(*f.scanner->scans, 2);
  // A listener no visible process holds: one rescan, then remembered until the next Refresh.
  EXPECT_EQ(f.index->Listener({kNetns, 81}, kNow + absl::Seconds(1)), nullptr);
  EXPECT_EQ(*f.scanner->scans, 3);
  EXPECT_EQ(f.index->Listener({kNetns, 81}, kNow + absl::Seconds(60)), nullptr);
  EXPECT_EQ(*f.scanner->scans, 3);
  f.index->Refresh();
  EXPECT_EQ(f.index->Listener({kNetns, 81}, kNow + absl::Seconds(61)), nullptr);
  EXPECT_EQ(*f.scanner->scans, 5);
}

class FakeWorkloads : public WorkloadResolver {
 public:
  std::shared_ptr<const Workload> Resolve(uint64_t cgroup_id) override {
    auto it = workloads.find(cgroup_id);
    return it == workloads.end() ? nullptr : it->second;
  }
  absl::flat_hash_map<uint64_t, std::shared_ptr<const Workload>> workloads;
};

v1::Event Event(uint64_t cookie, v1::Role role, uint32_t pid, uint32_t local_port,
                uint64_t cgroup_id = 0) {
  v1::Event event;
  event.set_connection_id(cookie);
  event.set_role(role);
  event.mutable_origin()->set_netns_inode(kNetns);
  event.mutable_origin()->set_pid(pid);
  event.mutable_origin()->set_cgroup_id(cgroup_id);
  if (pid != 0) event.mutable_origin()->set_command("kernel-ctx");
  event.mutable_endpoints()->set_local_port(local_port);
  event.mutable_handshake();
  return event;
}

TEST(AttributeEventsTest, ProcesslessEventsGetTheirSocketsOrListenersOwner) {
  Fixture f;
  f.scanner->next->listeners[ListenerKey{kNetns, 443}] = Owner(10, "envoy", 5);
  f.index->Refresh();
  FakeWorkloads workloads;
  auto envoy = std::make_shared<Workload>();
  envoy->container_id = std::string(64, 'e');
  envoy->pod = "gateway-0";
  workloads.workloads[5] = envoy;
  OwnersByCookie by_cookie;
  by_cookie[2] = Owner(20, "worker", 5);

  google::protobuf::RepeatedPtrField<v1::Event> events;
  *events.Add() = Event(1, v1::ROLE_CLIENT, 33, 40000, 6);  // connect(): its context is right
  *events.Add() = Event(2, v1::ROLE_SERVER, 0, 443);        // known from the last snapshot
  *events.Add() = Event(3, v1::ROLE_SERVER, 0, 443);        // younger: the listener's owner
  *events.Add() = Event(4, v1::ROLE_CLIENT, 0, 40001);      // softirq RST, never seen: none
  AttributeEvents(&events, &by_cookie, {f.index.get(), &workloads}, kNow);

  EXPECT_EQ(events[0].origin().pid(), 33u);
  EXPECT_EQ(events[0].origin().command(), "kernel-ctx");
  EXPECT_EQ(events[0].origin().cgroup_id(), 6u);
  EXPECT_EQ(events[0].origin().container_id(), "");
  EXPECT_EQ(events[1].origin().pid(), 20u);
  EXPECT_EQ(events[1].origin().command(), "worker");
  EXPECT_EQ(events[1].origin().pod(), "gateway-0");
  EXPECT_EQ(events[2].origin().pid(), 10u);
  EXPECT_EQ(events[2].origin().command(), "envoy");
  EXPECT_EQ(events[2].origin().cgroup_id(), 5u);
  EXPECT_EQ(events[2].origin().container_id(), std::string(64, 'e'));
  EXPECT_EQ(events[3].origin().pid(), 0u);
  EXPECT_EQ(events[3].origin().command(), "");
  EXPECT_EQ(*f.scanner->scans, 1);  // the client miss asks for no listener, hence no scan
}

TEST(AttributeEventsTest, WorkloadsWithoutOwnerScans) {
  FakeWorkloads workloads;
  auto web = std::make_shared<Workload>();
  web->container_name = "web";
  workloads.workloads[6] = web;
  google::protobuf::RepeatedPtrField<v1::Event> events;
  *events.Add() = Event(1, v1::ROLE_CLIENT, 33, 40000, 6);
  *events.Add() = Event(2, v1::ROLE_SERVER, 0, 443);
  AttributeEvents(&events, nullptr, {nullptr, &workloads}, kNow);
  EXPECT_EQ(events[0].origin().container_name(), "web");
  EXPECT_EQ(events[1].origin().pid(), 0u);
}

}  // namespace
}  // namespace tcpscope::agent
