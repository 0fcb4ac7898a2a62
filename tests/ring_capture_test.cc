// Ring captures: what is written reads back exactly; foreign, truncated or corrupt files are
// errors, not records.
#include "agent/ring_capture.h"

#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "agent/bpf/tcpscope_event.h"
#include "gtest/gtest.h"

namespace tcpscope::agent {
namespace {

class RingCaptureTest : public ::testing::Test {
 protected:
  void TearDown() override { std::remove(path_.c_str()); }

  void WriteRaw(const std::string& bytes) {
    FILE* file = fopen(path_.c_str(), "wb");
    ASSERT_NE(file, nullptr);
    fwrite(bytes.data(), 1, bytes.size(), file);
    fclose(file);
  }

  std::string ReadAll() {
    FILE* file = fopen(path_.c_str(), "rb");
    std::string bytes;
    char buffer[4096];
    for (size_t n; (n = fread(buffer, 1, sizeof(buffer), file)) > 0;) bytes.append(buffer, n);
    fclose(file);
    return bytes;
  }

  const std::string path_ = absl::StrCat(::testing::TempDir(), "/ring_capture_", getpid());
};

TEST_F(RingCaptureTest, RecordsReadBackInOrderWithTheClockOffset) {
  {
    auto writer = RingCaptureWriter::Create(path_, -42);
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->Append("first", 5).ok());
    ASSERT_TRUE((*writer)->Append("", 0).ok());
    ASSERT_TRUE((*writer)->Append("third record", 12).ok());
  }
  auto reader = RingCaptureReader::Open(path_);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->monotonic_to_unix_ns(), -42);
  for (const std::string expected : {"first", "", "third record"}) {
    auto record = (*reader)->Next();
    ASSERT_TRUE(record.ok()) << record.status();
    ASSERT_TRUE(record->has_value());
    EXPECT_EQ(**record, expected);
  }
  auto end = (*reader)->Next();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end->has_value());
}

TEST_F(RingCaptureTest, TruncatedRecordIsDataLoss) {
  {
    auto writer = RingCaptureWriter::Create(path_, 0);
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Append("complete", 8).ok());
    ASSERT_TRUE((*writer)->Append("cut short", 9).ok());
  }
  const std::string bytes = ReadAll();
  WriteRaw(bytes.substr(0, bytes.size() - 3));
  auto reader = RingCaptureReader::Open(path_);
  ASSERT_TRUE(reader.ok());
  EXPECT_TRUE((*reader)->Next().ok());
  EXPECT_EQ((*reader)->Next().status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(RingCaptureTest, ForeignFilesAreRefused) {
  WriteRaw("not a capture at all");
  EXPECT_EQ(RingCaptureReader::Open(path_).status().code(), absl::StatusCode::kInvalidArgument);
  // A capture whose records have another layout (another agent version).
  std::string header("TSRING1\n", 8);
  header += std::string("\x01\x00\x00\x00", 4) + std::string(8, '\0');
  WriteRaw(header);
  auto reader = RingCaptureReader::Open(path_);
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(reader.status().message().find(absl::StrCat(sizeof(tcpscope_event))),
            std::string::npos);
  // An absurd length is corruption, not an allocation.
  auto writer = RingCaptureWriter::Create(path_, 0);
  ASSERT_TRUE(writer.ok());
  writer->reset();
  WriteRaw(ReadAll() + std::string("\xff\xff\xff\x7f", 4));
  reader = RingCaptureReader::Open(path_);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ((*reader)->Next().status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace tcpscope::agent
