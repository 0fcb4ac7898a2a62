// Observer API filters: every field validated with a message naming it, and matched exactly.
#include "service/query_filters.h"

#include <arpa/inet.h>

#include "absl/strings/str_cat.h"
#include "common/address_filter.h"
#include "gtest/gtest.h"

namespace tcpscope::service {
namespace {

std::string V4(const char* text) {
  std::string bytes(4, '\0');
  inet_pton(AF_INET, text, bytes.data());
  return bytes;
}

std::string V6(const char* text) {
  std::string bytes(16, '\0');
  inet_pton(AF_INET6, text, bytes.data());
  return bytes;
}

v1::Event CloseEvent(v1::CloseReason reason, const std::string& local, uint32_t local_port,
                     const std::string& remote, uint32_t remote_port) {
  v1::Event event;
  event.set_role(v1::ROLE_CLIENT);
  event.mutable_close()->set_reason(reason);
  v1::Endpoints* endpoints = event.mutable_endpoints();
  endpoints->set_local_address(local);
  endpoints->set_local_port(local_port);
  endpoints->set_remote_address(remote);
  endpoints->set_remote_port(remote_port);
  return event;
}

TEST(AddressFilterTest, MatchesAddressesAndPrefixes) {
  auto exact = AddressFilter::Parse("10.1.2.3");
  ASSERT_TRUE(exact.ok());
  EXPECT_TRUE(exact->Matches(V4("10.1.2.3")));
  EXPECT_FALSE(exact->Matches(V4("10.1.2.4")));
  auto prefix = AddressFilter::Parse("10.1.0.0/17");
  ASSERT_TRUE(prefix.ok());
  EXPECT_TRUE(prefix->Matches(V4("10.1.127.255")));
  EXPECT_FALSE(prefix->Matches(V4("10.1.128.0")));
  auto v6 = AddressFilter::Parse("fd00:7c::/64");
  ASSERT_TRUE(v6.ok());
  EXPECT_TRUE(v6->Matches(V6("fd00:7c::2")));
  EXPECT_FALSE(v6->Matches(V6("fd00:7d::2")));
  EXPECT_FALSE(v6->Matches(V4("10.1.2.3")));  // families never cross
  auto everything = AddressFilter::Parse("0.0.0.0/0");
  ASSERT_TRUE(everything.ok());
  EXPECT_TRUE(everything->Matches(V4("192.0.2.1")));
}

TEST(AddressFilterTest, RefusesWhatIsNotAnAddress) {
  for (const char* bad : {"", "10.1.2", "10.1.2.3/33", "fd00::/129", "10.0.0.0/-1", "10.0.0.0/",
                          "host.example", "10.0.0.0/8/8", "::1/x"}) {
    EXPECT_FALSE(AddressFilter::Parse(bad).ok()) << bad;
  }
}

TEST(EventMatcherTest, ValidatesEveryField) {
  auto refused = [](const v1::EventFilter& filter, const std::string& field) {
    absl::StatusOr<EventMatcher> matcher = EventMatcher::Create(filter);
    EXPECT_EQ(matcher.status().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_NE(matcher.status().message().find(field), std::string::npos)
        << matcher.status().message();
  };
  v1::EventFilter filter;
  filter.set_host("bad host!");
  refused(filter, "filter.host");
  filter.Clear();
  filter.add_kinds(static_cast<v1::EventKind>(42));
  refused(filter, "filter.kinds");
  filter.Clear();
  filter.set_close_reason(static_cast<v1::CloseReason>(99));
  refused(filter, "filter.close_reason");
  filter.Clear();
  filter.set_failure_reason(static_cast<v1::HandshakeFailureReason>(99));
  refused(filter, "filter.failure_reason");
  filter.Clear();
  filter.set_port(65536);
  refused(filter, "filter.port");
  filter.Clear();
  filter.set_address("10.0.0.0/40");
  refused(filter, "filter.address");
  filter.Clear();
  filter.set_role(static_cast<v1::Role>(7));
  refused(filter, "filter.role");
}

TEST(EventMatcherTest, MatchesKindReasonPortAddressAndRole) {
  const v1::Event fin = CloseEvent(v1::CLOSE_REASON_FIN, V4("10.0.0.1"), 40000, V4("10.0.0.2"), 80);
  const v1::Event timeout =
      CloseEvent(v1::CLOSE_REASON_KEEPALIVE_TIMEOUT, V4("10.0.0.1"), 40001, V4("192.0.2.9"), 443);
  v1::Event refused;
  refused.set_role(v1::ROLE_CLIENT);
  refused.mutable_handshake_failed()->set_reason(v1::HANDSHAKE_FAILURE_REFUSED);
  v1::Event handshake;
  handshake.set_role(v1::ROLE_SERVER);
  handshake.mutable_handshake();

  auto matcher = [](const v1::EventFilter& filter) {
    absl::StatusOr<EventMatcher> m = EventMatcher::Create(filter);
    EXPECT_TRUE(m.ok()) << m.status();
    return *m;
  };
  v1::EventFilter filter;
  EXPECT_TRUE(matcher(filter).Matches(fin));
  filter.add_kinds(v1::EVENT_KIND_HANDSHAKE);
  filter.add_kinds(v1::EVENT_KIND_HANDSHAKE_FAILED);
  EXPECT_FALSE(matcher(filter).Matches(fin));
  EXPECT_TRUE(matcher(filter).Matches(refused));
  EXPECT_TRUE(matcher(filter).Matches(handshake));

  filter.Clear();
  filter.set_close_reason(v1::CLOSE_REASON_KEEPALIVE_TIMEOUT);
  EXPECT_TRUE(matcher(filter).Matches(timeout));
  EXPECT_FALSE(matcher(filter).Matches(fin));
  EXPECT_FALSE(matcher(filter).Matches(handshake));  // a reason filter leaves other kinds out
  filter.Clear();
  filter.set_failure_reason(v1::HANDSHAKE_FAILURE_REFUSED);
  EXPECT_TRUE(matcher(filter).Matches(refused));
  EXPECT_FALSE(matcher(filter).Matches(fin));

  filter.Clear();
  filter.set_port(443);
  EXPECT_TRUE(matcher(filter).Matches(timeout));
  EXPECT_FALSE(matcher(filter).Matches(fin));
  filter.set_port(40000);  // the local port counts too
  EXPECT_TRUE(matcher(filter).Matches(fin));

  filter.Clear();
  filter.set_address("192.0.2.0/24");
  EXPECT_TRUE(matcher(filter).Matches(timeout));
  EXPECT_FALSE(matcher(filter).Matches(fin));

  filter.Clear();
  filter.set_role(v1::ROLE_SERVER);
  EXPECT_TRUE(matcher(filter).Matches(handshake));
  EXPECT_FALSE(matcher(filter).Matches(fin));

  filter.Clear();
  filter.set_host("a");
  EXPECT_TRUE(matcher(filter).MatchesHost("a"));
  EXPECT_FALSE(matcher(filter).MatchesHost("ab"));
}

TEST(ConnectionMatcherTest, ValidatesEveryField) {
  auto refused = [](const v1::ListConnectionsRequest& request, const std::string& field) {
    absl::StatusOr<ConnectionMatcher> matcher = ConnectionMatcher::Create(request);
    EXPECT_EQ(matcher.status().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_NE(matcher.status().message().find(field), std::string::npos)
        << matcher.status().message();
  };
  v1::ListConnectionsRequest request;
  request.set_host("-leading-dash");
  refused(request, "host");
  request.Clear();
  request.set_state(v1::TCP_STATE_LISTEN);
  refused(request, "state");
  request.set_state(static_cast<v1::TcpState>(13));
  refused(request, "state");
  request.Clear();
  request.set_port(70000);
  refused(request, "port");
  request.Clear();
  request.set_keepalive(static_cast<v1::KeepaliveFilter>(3));
  refused(request, "keepalive");
  request.Clear();
  request.set_at_risk_reason(static_cast<v1::AtRiskReason>(4));
  refused(request, "at_risk_reason");
  request.Clear();
  request.set_address("not-an-address");
  refused(request, "address");
}

TEST(ConnectionMatcherTest, MatchesStateKeepaliveRiskAndAddress) {
  v1::Connection connection;
  connection.set_state(v1::TCP_STATE_ESTABLISHED);
  connection.mutable_keepalive()->set_enabled(true);
  connection.mutable_endpoints()->set_local_address(V6("fd00:7c::1"));
  connection.mutable_endpoints()->set_remote_address(V6("fd00:7c::2"));
  connection.mutable_endpoints()->set_remote_port(8080);
  auto matches = [&](const v1::ListConnectionsRequest& request, v1::AtRiskReason risk) {
    absl::StatusOr<ConnectionMatcher> matcher = ConnectionMatcher::Create(request);
    EXPECT_TRUE(matcher.ok()) << matcher.status();
    return matcher->Matches(connection, risk, v1::HALF_OPEN_REASON_UNSPECIFIED);
  };
  v1::ListConnectionsRequest request;
  EXPECT_TRUE(matches(request, v1::AT_RISK_REASON_UNSPECIFIED));
  request.set_state(v1::TCP_STATE_CLOSE_WAIT);
  EXPECT_FALSE(matches(request, v1::AT_RISK_REASON_UNSPECIFIED));
  request.Clear();
  request.set_keepalive(v1::KEEPALIVE_FILTER_OFF);
  EXPECT_FALSE(matches(request, v1::AT_RISK_REASON_UNSPECIFIED));
  request.Clear();
  request.set_at_risk(true);
  EXPECT_FALSE(matches(request, v1::AT_RISK_REASON_UNSPECIFIED));
  EXPECT_TRUE(matches(request, v1::AT_RISK_KEEPALIVE_PROBING));
  request.Clear();
  request.set_at_risk_reason(v1::AT_RISK_CLOSE_WAIT_STALE);
  EXPECT_FALSE(matches(request, v1::AT_RISK_KEEPALIVE_PROBING));
  request.Clear();
  request.set_address("fd00:7c::2");
  request.set_port(8080);
  EXPECT_TRUE(matches(request, v1::AT_RISK_REASON_UNSPECIFIED));
  request.set_port(8081);
  EXPECT_FALSE(matches(request, v1::AT_RISK_REASON_UNSPECIFIED));
}

v1::Origin WorkloadOrigin() {
  v1::Origin origin;
  origin.set_pid(4242);
  origin.set_command("postgres");
  origin.set_container_id("3f2a9c0d1e4b5a6978c0d1e2f3a4b5c6d7e8f90123456789abcdef0123456789");
  origin.set_container_name("db");
  origin.set_pod_namespace("shop");
  origin.set_pod("db-0");
  return origin;
}

TEST(WorkloadFilterTest, ValidatesEveryField) {
  struct Case {
    std::string pod_namespace;
    std::string pod;
    std::string container;
    std::string process;
    std::string needle;
  };
  const Case cases[] = {
      {"sh\"op", "", "", "", "pod_namespace has character 0x22"},
      {"", "db-0\n", "", "", "pod has character 0x0a"},
      {"", "", "db}", "", "container has character 0x7d"},
      {"", "", "caf\xc3\xa9", "", "container has character 0xc3"},
      {"", std::string(300, 'p'), "", "", "pod is 300 characters long"},
      {"", "", "", "0", "process: pid 0 is outside"},
      {"", "", "", "99999999999", "process: pid 99999999999 is outside"},
      {"", "", "", std::string(65, 'c'), "process: a pid (digits) or a command of at most 64"},
      {"", "", "", "ps\x01", "process: a pid"},
  };
  for (const Case& c : cases) {
    v1::ListConnectionsRequest request;
    request.set_pod_namespace(c.pod_namespace);
    request.set_pod(c.pod);
    request.set_container(c.container);
    request.set_process(c.process);
    absl::Status status = ConnectionMatcher::Create(request).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.needle;
    EXPECT_NE(status.message().find(c.needle), absl::string_view::npos) << status;

    v1::EventFilter filter;
    filter.set_pod_namespace(c.pod_namespace);
    filter.set_pod(c.pod);
    filter.set_container(c.container);
    filter.set_process(c.process);
    status = EventMatcher::Create(filter).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.needle;
    EXPECT_NE(status.message().find(absl::StrCat("filter.", c.needle)), absl::string_view::npos)
        << status;
  }
}

TEST(WorkloadFilterTest, MatchesNamespacePodContainerAndProcess) {
  const v1::Origin origin = WorkloadOrigin();
  const std::string id = origin.container_id();
  struct Case {
    const char* pod_namespace;
    const char* pod;
    const char* container;
    const char* process;
    bool matches;
  };
  const Case cases[] = {
      {"", "", "", "", true},
      {"shop", "", "", "", true},
      {"shop2", "", "", "", false},
      {"", "db-0", "", "", true},
      {"", "db-1", "", "", false},
      {"shop", "db-0", "db", "postgres", true},
      {"", "", "db", "", true},                                // name
      {"", "", "3f2a9c0d1e4b", "", true},                      // 12-character id prefix
      {"", "", "3f2a9c0d1e4", "", false},                      // 11: too short to be a prefix
      {"", "", "3f2a9c0d1e4c", "", false},                     // not a prefix
      {"", "", "3f2a9c0d1e4b5a6978c0d1e2f3a4b5c6", "", true},  // longer prefix
      {"", "", id.c_str(), "", true},                          // whole id
      {"", "", "d", "", false},                                // no partial names
      {"", "", "", "4242", true},
      {"", "", "", "04242", true},
      {"", "", "", "4243", false},
      {"", "", "", "postgres", true},
      {"", "", "", "postgre", false},
      {"", "", "", "post gres", false},
  };
  for (const Case& c : cases) {
    v1::ListConnectionsRequest request;
    request.set_pod_namespace(c.pod_namespace);
    request.set_pod(c.pod);
    request.set_container(c.container);
    request.set_process(c.process);
    auto matcher = ConnectionMatcher::Create(request);
    ASSERT_TRUE(matcher.ok()) << matcher.status();
    v1::Connection connection;
    connection.set_state(v1::TCP_STATE_ESTABLISHED);
    *connection.mutable_origin() = origin;
    EXPECT_EQ(matcher->Matches(connection, v1::AT_RISK_REASON_UNSPECIFIED,
                               v1::HALF_OPEN_REASON_UNSPECIFIED),
              c.matches)
        << c.pod_namespace << "/" << c.pod << "/" << c.container << "/" << c.process;
    // A host process (no container, no pod) matches only the process filter.
    connection.mutable_origin()->clear_container_id();
    connection.mutable_origin()->clear_container_name();
    connection.mutable_origin()->clear_pod();
    connection.mutable_origin()->clear_pod_namespace();
    const bool workload_filter = *c.pod_namespace || *c.pod || *c.container;
    EXPECT_EQ(matcher->Matches(connection, v1::AT_RISK_REASON_UNSPECIFIED,
                               v1::HALF_OPEN_REASON_UNSPECIFIED),
              c.matches && !workload_filter);

    v1::EventFilter filter;
    filter.set_pod_namespace(c.pod_namespace);
    filter.set_pod(c.pod);
    filter.set_container(c.container);
    filter.set_process(c.process);
    auto events = EventMatcher::Create(filter);
    ASSERT_TRUE(events.ok()) << events.status();
    v1::Event event = CloseEvent(v1::CLOSE_REASON_FIN, V4("10.0.0.1"), 5432, V4("10.0.0.2"), 40000);
    *event.mutable_origin() = origin;
    EXPECT_EQ(events->Matches(event), c.matches);
    // A half-open event is matched on its own (the survivor's) origin, not its peer's.
    v1::Event half_open = event;
    half_open.mutable_half_open()->set_reason(v1::HALF_OPEN_PEER_CLOSED);
    *half_open.mutable_half_open()->mutable_peer_origin() = origin;
    half_open.clear_origin();
    EXPECT_EQ(events->Matches(half_open), c.matches && !workload_filter && *c.process == '\0');
  }
}

}  // namespace
}  // namespace tcpscope::service
