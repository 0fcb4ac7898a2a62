// The closes held until the kernel says whether this end sent the RST.
#include "agent/abort_on_data.h"

#include "gtest/gtest.h"

namespace tcpscope::agent {
namespace {

const uint64_t kWithin = absl::ToInt64Nanoseconds(AbortOnDataCloses::kAnswerWithin);

v1::Event Close(uint64_t connection_id) {
  v1::Event event;
  event.set_connection_id(connection_id);
  event.mutable_close()->set_reason(v1::CLOSE_REASON_RESET_RECEIVED);
  event.mutable_close()->set_initiator(v1::CLOSE_INITIATOR_LOCAL);
  return event;
}

TEST(AbortOnDataClosesTest, AnsweredCloseIsResetSent) {
  AbortOnDataCloses closes;
  google::protobuf::RepeatedPtrField<v1::Event> out;
  closes.Hold(Close(7), 1000);
  closes.Hold(Close(8), 1000);
  closes.ResetAnswered(7, &out);
  ASSERT_EQ(out.size(), 1);
  EXPECT_EQ(out[0].connection_id(), 7u);
  EXPECT_EQ(out[0].close().reason(), v1::CLOSE_REASON_RESET_SENT);
  EXPECT_EQ(out[0].close().initiator(), v1::CLOSE_INITIATOR_LOCAL);
  EXPECT_FALSE(closes.empty());
}

TEST(AbortOnDataClosesTest, UnansweredCloseIsReleasedAsReceivedOnceNoAnswerCanFollow) {
  AbortOnDataCloses closes;
  google::protobuf::RepeatedPtrField<v1::Event> out;
  closes.Hold(Close(7), 1000);
  closes.Release(1000 + kWithin - 1, &out);  // the answer could still be on its way
  EXPECT_TRUE(out.empty());
  closes.Release(1000 + kWithin, &out);
  ASSERT_EQ(out.size(), 1);
  EXPECT_EQ(out[0].close().reason(), v1::CLOSE_REASON_RESET_RECEIVED);
  EXPECT_TRUE(closes.empty());
  closes.ResetAnswered(7, &out);  // too late, or an abort whose close was never in doubt
  EXPECT_EQ(out.size(), 1);
}

TEST(AbortOnDataClosesTest, ReleaseAllAtStop) {
  AbortOnDataCloses closes;
  google::protobuf::RepeatedPtrField<v1::Event> out;
  closes.Hold(Close(7), 1000);
  closes.Hold(Close(8), 5000);
  closes.ReleaseAll(&out);
  EXPECT_EQ(out.size(), 2);
  EXPECT_TRUE(closes.empty());
}

}  // namespace
}  // namespace tcpscope::agent
