// The runtime APIs' HTTP client: response parsing (Content-Length, chunked, to end of stream) and
// everything it refuses, then the client against a fake server that answers in pieces, stalls,
// floods or keeps the connection open.
#include "agent/unix_http_client.h"

#include <string>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/fake_unix_http_server.h"

namespace tcpscope::agent {
namespace {

using testing::FakeUnixHttpServer;
using testing::HttpAnswer;

std::optional<HttpResponse> Complete(absl::string_view raw, bool at_eof = false) {
  absl::StatusOr<std::optional<HttpResponse>> response = ParseHttpResponse(raw, at_eof);
  EXPECT_TRUE(response.ok()) << response.status() << " for " << raw;
  return response.ok() ? *response : std::nullopt;
}

bool Refused(absl::string_view raw, bool at_eof = true) {
  return !ParseHttpResponse(raw, at_eof).ok();
}

TEST(ParseHttpResponseTest, ContentLength) {
  std::optional<HttpResponse> response = Complete("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "{}");
  // Header names in any case; bytes past the length are ignored.
  response = Complete("HTTP/1.0 404 Not Found\r\ncontent-LENGTH:  3 \r\n\r\nabcdef");
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 404);
  EXPECT_EQ(response->body, "abc");
  // Incomplete: more to read; at the end of the stream: an error.
  EXPECT_FALSE(Complete("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").has_value());
  EXPECT_FALSE(Complete("HTTP/1.1 200 OK\r\nContent-Len").has_value());
  EXPECT_TRUE(Refused("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"));
  EXPECT_TRUE(Refused("HTTP/1.1 200 OK\r\nContent-Len"));
  EXPECT_TRUE(Refused(""));
}

TEST(ParseHttpResponseTest, Chunked) {
  const std::string raw =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4\r\n{\"a\"\r\n"
      "A;ext=1\r\n:\"0123456\"\r\n"
      "1\r\n}\r\n"
      "0\r\nX-Trailer: y\r\n\r\n";
  std::optional<HttpResponse> response = Complete(raw);
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->body, "{\"a\":\"0123456\"}");
  // Every prefix is incomplete, never an error or a wrong body.
  for (size_t size = 0; size < raw.size(); ++size) {
    absl::StatusOr<std::optional<HttpResponse>> partial =
        ParseHttpResponse(raw.substr(0, size), false);
    ASSERT_TRUE(partial.ok()) << size << ": " << partial.status();
    EXPECT_FALSE(partial->has_value()) << size;
    EXPECT_TRUE(Refused(raw.substr(0, size))) << size;
  }
  response = Complete("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n");
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->body, "");
}

TEST(ParseHttpResponseTest, BodyToEndOfStream) {
  EXPECT_FALSE(Complete("HTTP/1.1 200 OK\r\n\r\n{\"x\"").has_value());
  std::optional<HttpResponse> response = Complete("HTTP/1.1 200 OK\r\n\r\n{\"x\":1}", true);
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->body, "{\"x\":1}");
  response = Complete("HTTP/1.1 204 No Content\r\n\r\n");
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 204);
}

TEST(ParseHttpResponseTest, RefusesWhatItDoesNotSpeak) {
  const std::string refused[] = {
      "HTTP/2 200\r\n\r\n",
      "HTTP/1.1 20 OK\r\n\r\n",
      "HTTP/1.1 2000 OK\r\n\r\n",
      "HTTP/1.1 abc OK\r\n\r\n",
      "SSH-2.0-OpenSSH_9.2\r\n\r\n",
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
      "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
      "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n123456789\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
  };
  for (const std::string& raw : refused) {
    EXPECT_TRUE(Refused(raw, /*at_eof=*/false) || Refused(raw, /*at_eof=*/true)) << raw;
    // And never a response.
    absl::StatusOr<std::optional<HttpResponse>> response = ParseHttpResponse(raw, true);
    EXPECT_FALSE(response.ok() && response->has_value()) << raw;
  }
  // Headers without an end, beyond the bound.
  EXPECT_TRUE(Refused("HTTP/1.1 200 OK\r\nX: " + std::string(100000, 'a'), false));
  // A chunk size line without an end.
  EXPECT_TRUE(Refused(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(1000, '1'), false));
}

TEST(UnixHttpGetTest, AnswersInPieces) {
  FakeUnixHttpServer server([](const std::string& line) {
    return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
  });
  server.set_piece(1);
  absl::StatusOr<HttpResponse> response = UnixHttpGet(server.path(), "/containers/x/json", {});
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "abc");
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_EQ(server.requests()[0], "GET /containers/x/json HTTP/1.1");
}

TEST(UnixHttpGetTest, CompleteAnswerNeedsNoEndOfStream) {
  FakeUnixHttpServer server([](const std::string&) { return HttpAnswer(200, "{}"); });
  server.set_linger(true);
  UnixHttpOptions options;
  options.timeout = absl::Seconds(5);
  const absl::Time start = absl::Now();
  absl::StatusOr<HttpResponse> response = UnixHttpGet(server.path(), "/x", options);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->body, "{}");
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST(UnixHttpGetTest, StalledServerTimesOut) {
  FakeUnixHttpServer server([](const std::string&) { return ""; });
  server.set_mode(FakeUnixHttpServer::Mode::kStall);
  UnixHttpOptions options;
  options.timeout = absl::Milliseconds(200);
  const absl::Time start = absl::Now();
  absl::StatusOr<HttpResponse> response = UnixHttpGet(server.path(), "/x", options);
  EXPECT_TRUE(absl::IsDeadlineExceeded(response.status())) << response.status();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
}

TEST(UnixHttpGetTest, FloodIsCutAtTheBound) {
  FakeUnixHttpServer server([](const std::string&) { return ""; });
  server.set_mode(FakeUnixHttpServer::Mode::kFlood);
  UnixHttpOptions options;
  options.timeout = absl::Seconds(5);
  options.max_response_bytes = 256 << 10;
  absl::StatusOr<HttpResponse> response = UnixHttpGet(server.path(), "/x", options);
  EXPECT_TRUE(absl::IsResourceExhausted(response.status())) << response.status();
}

TEST(UnixHttpGetTest, GarbageIsAnError) {
  FakeUnixHttpServer server(
      [](const std::string&) { return std::string("\x16\x03\x01\x02\0", 5); });
  absl::StatusOr<HttpResponse> response = UnixHttpGet(server.path(), "/x", {});
  EXPECT_TRUE(absl::IsInvalidArgument(response.status())) << response.status();
}

TEST(UnixHttpGetTest, NobodyListening) {
  absl::StatusOr<HttpResponse> response = UnixHttpGet("/nonexistent/api.sock", "/x", {});
  EXPECT_TRUE(absl::IsUnavailable(response.status())) << response.status();
}

TEST(UnixHttpGetTest, RefusesUnsafeTargets) {
  for (const char* target : {"", "x", "/a b", "/a\r\nHost: evil", "/a?b", "/a%0d"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(UnixHttpGet("/nonexistent/api.sock", target, {}).status()))
        << target;
  }
}

}  // namespace
}  // namespace tcpscope::agent
