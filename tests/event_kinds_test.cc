// The generated tcpscope/v1/event_kinds.h (proto/event_kinds_gen.cc) against the descriptors it
// was made from: every member of Event.kind has its EventKind and back, with one name.
#include "tcpscope/v1/event_kinds.h"

#include "absl/strings/ascii.h"
#include "common/tcp_names.h"
#include "gtest/gtest.h"

namespace tcpscope {
namespace {

TEST(EventKindsTest, EveryMemberOfTheOneofHasItsKind) {
  const google::protobuf::OneofDescriptor* oneof = v1::Event::descriptor()->FindOneofByName("kind");
  ASSERT_NE(oneof, nullptr);
  EXPECT_EQ(v1::kEventKindCount, oneof->field_count());
  for (int i = 0; i < oneof->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = oneof->field(i);
    const auto kind_case = static_cast<v1::Event::KindCase>(field->number());
    const v1::EventKind kind = v1::KindOf(kind_case);
    EXPECT_EQ(v1::EventKind_Name(kind), "EVENT_KIND_" + absl::AsciiStrToUpper(field->name()));
    EXPECT_EQ(v1::KindCaseOf(kind), kind_case) << field->name();
    EXPECT_EQ(EventKindName(kind), field->name());  // labels and --type names
  }
  EXPECT_EQ(v1::KindOf(v1::Event::KIND_NOT_SET), v1::EVENT_KIND_UNSPECIFIED);
  EXPECT_EQ(v1::KindCaseOf(v1::EVENT_KIND_UNSPECIFIED), v1::Event::KIND_NOT_SET);
  EXPECT_EQ(v1::KindCaseOf(static_cast<v1::EventKind>(99)), v1::Event::KIND_NOT_SET);
}

TEST(EventKindsTest, KindOfAnEvent) {
  v1::Event event;
  EXPECT_EQ(v1::KindOf(event), v1::EVENT_KIND_UNSPECIFIED);
  event.mutable_keepalive_answered();
  EXPECT_EQ(v1::KindOf(event), v1::EVENT_KIND_KEEPALIVE_ANSWERED);
  static_assert(v1::KindOf(v1::Event::kClose) == v1::EVENT_KIND_CLOSE);  // constexpr
}

// The macro list, for code that needs one line per kind (X-macros).
TEST(EventKindsTest, MacroListIsTheOneof) {
  int count = 0;
#define TCPSCOPE_COUNT_KIND(name, Name, NAME, field, number) \
  EXPECT_EQ(v1::Event::k##Name, field);                      \
  EXPECT_EQ(v1::EVENT_KIND_##NAME, number);                  \
  EXPECT_EQ(EventKindName(v1::EVENT_KIND_##NAME), #name);    \
  ++count;
  TCPSCOPE_V1_EVENT_KINDS(TCPSCOPE_COUNT_KIND)
#undef TCPSCOPE_COUNT_KIND
  EXPECT_EQ(count, v1::kEventKindCount);
}

}  // namespace
}  // namespace tcpscope
