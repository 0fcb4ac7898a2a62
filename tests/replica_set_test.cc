// A replica's view of its tier: flags refused with clear errors, and a replica that answers
// pings before its pings begin (its server listens first) reports itself alone.
#include "service/replica_set.h"

#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"

namespace tcpscope::service {
namespace {

ReplicaSetOptions Options(const std::string& peers, const std::string& advertise) {
  ReplicaSetOptions options;
  options.peers = *ReplicaAddresses::Parse("--peers", peers);
  options.advertise = advertise;
  options.credentials = grpc::InsecureChannelCredentials();
  return options;
}

TEST(ReplicaSetTest, RefusesAnAdvertiseOutsideThePeers) {
  prometheus::Registry registry;
  auto refused =
      ReplicaSet::Create(Options("10.0.0.1:7700,10.0.0.2:7700", "10.0.0.3:7700"), registry);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("is not one of --peers"), std::string::npos)
      << refused.status();
  refused = ReplicaSet::Create(Options("10.0.0.1:7700,10.0.0.2:7700", ""), registry);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("needs --advertise"), std::string::npos)
      << refused.status();
  refused = ReplicaSet::Create(Options("10.0.0.1:7700", "dns:///peers:7700"), registry);
  EXPECT_FALSE(refused.ok());
}

TEST(ReplicaSetTest, BeforeItsPingsBeginItsRingIsItself) {
  prometheus::Registry registry;
  auto replicas = ReplicaSet::Create(Options("127.0.0.1:1,127.0.0.1:2", "127.0.0.1:1"), registry);
  ASSERT_TRUE(replicas.ok()) << replicas.status();
  EXPECT_EQ((*replicas)->UpMembers(), std::vector<std::string>{"127.0.0.1:1"});
  EXPECT_EQ((*replicas)->ring()->size(), 1u);
  EXPECT_NE((*replicas)->instance(), 0u);
}

}  // namespace
}  // namespace tcpscope::service
