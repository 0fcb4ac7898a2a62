// Replica address lists (common/replica_addresses.h), as --service and --peers take them: what
// is refused says why, lists come back sorted, and dns:/// resolves every record.
#include "common/replica_addresses.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tcpscope {
namespace {

std::string ParseError(const std::string& value) {
  absl::StatusOr<ReplicaAddresses> parsed = ReplicaAddresses::Parse("--service", value);
  EXPECT_FALSE(parsed.ok()) << value << " was accepted";
  return parsed.ok() ? "" : std::string(parsed.status().message());
}

TEST(ReplicaAddressesTest, RefusesWithAClearMessage) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "--service is empty: give HOST:PORT[,HOST:PORT...] or dns:///NAME:PORT"},
      {"replica-1", "--service: \"replica-1\" is not HOST:PORT"},
      {"replica-1:", "--service: \"replica-1:\" needs a port from 1 to 65535"},
      {"replica-1:0", "--service: \"replica-1:0\" needs a port from 1 to 65535"},
      {"replica-1:70000", "--service: \"replica-1:70000\" needs a port from 1 to 65535"},
      {"replica-1:http", "--service: \"replica-1:http\" needs a port from 1 to 65535"},
      {"::1:7700", "--service: \"::1:7700\": write an IPv6 address in brackets, [ADDRESS]:PORT"},
      {"[::1:7700", "--service: \"[::1:7700\" has an unclosed [IPv6] address"},
      {"a:7700,b:7700,a:7700", "--service: \"a:7700,b:7700,a:7700\" lists an address twice"},
      {"a:7700,,b:7700", "--service: \"\" is not HOST:PORT"},
      {"http://a:7700",
       "--service: \"http://a:7700\": the only scheme understood is "
       "dns:///NAME:PORT"},
      {"dns:///replicas", "--service: \"replicas\" is not HOST:PORT"},
      {"dns:///replicas:0", "--service: \"replicas:0\" needs a port from 1 to 65535"},
  };
  for (const auto& [value, message] : cases) EXPECT_EQ(ParseError(value), message) << value;
}

TEST(ReplicaAddressesTest, AListIsSortedAndNeedsNoLookup) {
  absl::StatusOr<ReplicaAddresses> parsed =
      ReplicaAddresses::Parse("--peers", "replica-2:7700,[fd00::1]:7700,10.0.0.1:7700");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(parsed->is_dns());
  EXPECT_EQ(parsed->spec(), "replica-2:7700,[fd00::1]:7700,10.0.0.1:7700");
  absl::StatusOr<std::vector<std::string>> replicas = parsed->Resolve();
  ASSERT_TRUE(replicas.ok()) << replicas.status();
  EXPECT_EQ(*replicas,
            (std::vector<std::string>{"10.0.0.1:7700", "[fd00::1]:7700", "replica-2:7700"}));
}

TEST(ReplicaAddressesTest, OneAddressIsOneReplica) {
  absl::StatusOr<ReplicaAddresses> parsed = ReplicaAddresses::Parse("--service", "127.0.0.1:7700");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed->Resolve(), (std::vector<std::string>{"127.0.0.1:7700"}));
}

TEST(ReplicaAddressesTest, DnsNameResolvesToEveryRecord) {
  absl::StatusOr<ReplicaAddresses> parsed =
      ReplicaAddresses::Parse("--service", "dns:///localhost:7700");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->is_dns());
  absl::StatusOr<std::vector<std::string>> replicas = parsed->Resolve();
  ASSERT_TRUE(replicas.ok()) << replicas.status();
  // /etc/hosts gives localhost 127.0.0.1, ::1 or both, depending on the machine.
  ASSERT_FALSE(replicas->empty());
  for (const std::string& replica : *replicas) {
    EXPECT_TRUE(replica == "127.0.0.1:7700" || replica == "[::1]:7700") << replica;
  }
}

TEST(ReplicaAddressesTest, UnknownDnsNameIsAnError) {
  absl::StatusOr<ReplicaAddresses> parsed =
      ReplicaAddresses::Parse("--service", "dns:///no-such-replica.invalid:7700");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  absl::StatusOr<std::vector<std::string>> replicas = parsed->Resolve();
  ASSERT_FALSE(replicas.ok());
  EXPECT_NE(replicas.status().message().find("resolving dns:///no-such-replica.invalid:7700"),
            std::string::npos)
      << replicas.status();
}

}  // namespace
}  // namespace tcpscope
