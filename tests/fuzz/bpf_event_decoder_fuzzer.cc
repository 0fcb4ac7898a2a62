// libFuzzer target for the eBPF ring-buffer record decoder: raw bytes as a record of any size
// into DecodeBpfRecord. Besides no crash or undefined behaviour, it checks what the decoder
// promises the service: a decoded event has a kind, matching 4- or 16-byte addresses, only
// known non-zero enum values where the service requires them, and a printable command.
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "agent/bpf_event_decoder.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// A realistic CLOCK_REALTIME - CLOCK_MONOTONIC (2023, a few days of uptime).
constexpr int64_t kMonotonicToUnixNs = 1700000000LL * 1000000000LL;

bool Printable(const std::string& text) {
  for (char c : text) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace v1 = tcpscope::v1;
  v1::Event event;
  absl::StatusOr<tcpscope::agent::BpfRecord> record =
      tcpscope::agent::DecodeBpfRecord(data, size, kMonotonicToUnixNs, &event);
  if (!record.ok()) return 0;
  if (const auto* fin = std::get_if<tcpscope::agent::FinSent>(&*record)) {
    FUZZ_CHECK(fin->command.size() <= 16 && Printable(fin->command), "command not printable");
  }
  if (!std::holds_alternative<tcpscope::agent::KernelEvent>(*record)) return 0;

  FUZZ_CHECK(event.kind_case() != v1::Event::KIND_NOT_SET, "decoded event without a kind");
  const size_t local = event.endpoints().local_address().size();
  FUZZ_CHECK((local == 4 || local == 16) && event.endpoints().remote_address().size() == local,
             "address sizes %zu and %zu", local, event.endpoints().remote_address().size());
  FUZZ_CHECK(event.endpoints().local_port() <= 65535 && event.endpoints().remote_port() <= 65535,
             "port out of range");
  FUZZ_CHECK(v1::Role_IsValid(event.role()), "role %d", event.role());
  FUZZ_CHECK(event.origin().command().size() <= 16 && Printable(event.origin().command()),
             "command not printable");
  if (event.has_close()) {
    const v1::Close& close = event.close();
    FUZZ_CHECK(v1::CloseInitiator_IsValid(close.initiator()) && close.initiator() != 0,
               "initiator %d", close.initiator());
    FUZZ_CHECK(v1::CloseReason_IsValid(close.reason()) && close.reason() != 0, "reason %d",
               close.reason());
    FUZZ_CHECK(v1::TcpState_IsValid(close.last_state()), "state %d", close.last_state());
  }
  if (event.has_handshake_failed()) {
    const auto reason = event.handshake_failed().reason();
    FUZZ_CHECK(v1::HandshakeFailureReason_IsValid(reason) && reason != 0, "failure %d", reason);
  }
  return 0;
}
