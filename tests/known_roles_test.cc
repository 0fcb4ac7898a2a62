// Roles the eBPF program knew, carried to the snapshots whose dumps did not know them.
#include "agent/known_roles.h"

#include "gtest/gtest.h"

namespace tcpscope::agent {
namespace {

v1::Event Handshake(uint64_t id, v1::Role role) {
  v1::Event event;
  event.set_connection_id(id);
  event.set_role(role);
  event.mutable_handshake();
  return event;
}

TEST(KnownRolesTest, FillsOnlyWhatTheDumpDidNotKnowAndForgetsAtClose) {
  KnownRoles roles;
  roles.Observe(Handshake(1, v1::ROLE_CLIENT));
  roles.Observe(Handshake(2, v1::ROLE_CLIENT));
  roles.Observe(Handshake(3, v1::ROLE_UNSPECIFIED));  // an end the program did not see open
  EXPECT_EQ(roles.size(), 2u);

  v1::Snapshot snapshot;
  snapshot.add_connections()->set_connection_id(1);
  v1::Connection* known = snapshot.add_connections();  // the dump's own knowledge stays
  known->set_connection_id(2);
  known->set_role(v1::ROLE_SERVER);
  snapshot.add_connections()->set_connection_id(3);
  roles.Apply(&snapshot);
  EXPECT_EQ(snapshot.connections(0).role(), v1::ROLE_CLIENT);
  EXPECT_EQ(snapshot.connections(1).role(), v1::ROLE_SERVER);
  EXPECT_EQ(snapshot.connections(2).role(), v1::ROLE_UNSPECIFIED);

  v1::Event close;
  close.set_connection_id(1);
  close.mutable_close();
  roles.Observe(close);
  v1::Event failed;
  failed.set_connection_id(2);
  failed.mutable_handshake_failed();
  roles.Observe(failed);
  EXPECT_EQ(roles.size(), 0u);
}

}  // namespace
}  // namespace tcpscope::agent
