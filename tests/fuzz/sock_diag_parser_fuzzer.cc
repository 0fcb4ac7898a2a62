// libFuzzer target for the netlink parser: raw bytes, as one recv() on a NETLINK_SOCK_DIAG socket
// would return them (a dump reply or a destroy notification), into ParseDumpBuffer. Besides no
// out-of-bounds read, it checks what the agent relies on: every record is an IPv4 or IPv6
// socket with IPv4 addresses zero-padded, no record comes from nothing, and parsing is repeatable.
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "agent/sock_diag_parser.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using tcpscope::agent::ParseDumpBuffer;
  using tcpscope::agent::SocketRecord;
  const absl::Span<const uint8_t> buffer(data, size);

  std::vector<SocketRecord> records;
  const auto progress = ParseDumpBuffer(buffer, &records);

  // Each record needs its own netlink header and inet_diag_msg.
  FUZZ_CHECK(records.size() <= size / (NLMSG_HDRLEN + sizeof(inet_diag_msg)),
             "%zu records from %zu bytes", records.size(), size);
  for (const SocketRecord& record : records) {
    FUZZ_CHECK(record.family == AF_INET || record.family == AF_INET6, "family %d", record.family);
    if (record.family == AF_INET) {
      for (size_t i = 4; i < 16; ++i) {
        FUZZ_CHECK(record.local_address[i] == 0 && record.remote_address[i] == 0,
                   "IPv4 record with bytes past its address");
      }
    }
  }

  std::vector<SocketRecord> again;
  const auto repeated = ParseDumpBuffer(buffer, &again);
  FUZZ_CHECK(repeated.ok() == progress.ok() && again.size() == records.size(),
             "a second parse of the same bytes differs");
  if (progress.ok()) FUZZ_CHECK(repeated->done == progress->done, "done differs");
  return 0;
}
