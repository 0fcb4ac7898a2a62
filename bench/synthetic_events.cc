// Deterministic pseudo-random events; the proportions and value ranges are documented in the
// header and in BENCHMARKS.md.
#include "bench/synthetic_events.h"

#include <array>
#include <cmath>
#include <random>
#include <string>

#include "absl/strings/str_format.h"

namespace tcpscope::bench {
namespace {

constexpr std::array<const char*, 6> kCommands = {"nginx",    "curl",  "java",
                                                  "postgres", "envoy", "python3"};
constexpr std::array<uint32_t, 5> kServerPorts = {80, 443, 5432, 8080, 9090};

class EventMaker {
 public:
  EventMaker(uint64_t seed, absl::Time now)
      : random_(seed), now_ns_(static_cast<uint64_t>(absl::ToUnixNanos(now))) {}

  void Fill(v1::Event& event) {
    const int kind = Uniform(0, 99);
    const v1::Role role = Uniform(0, 1) == 0 ? v1::ROLE_CLIENT : v1::ROLE_SERVER;
    Common(event, role);
    if (kind < 40) {
      Handshake(event);
    } else if (kind < 80) {
      Close(event);
    } else if (kind < 85) {
      HandshakeFailed(event);
    } else if (kind < 93) {
      event.mutable_keepalive_probe()->set_probe_number(Uniform(1, 9));
      event.mutable_keepalive_probe()->set_idle_ms(7'200'000 + 75'000 * Uniform(0, 8));
    } else if (kind < 98) {
      event.mutable_keepalive_answered()->set_probes_outstanding(Uniform(1, 3));
    } else {
      v1::KeepaliveTimeout& timeout = *event.mutable_keepalive_timeout();
      timeout.set_probes_sent(9);
      timeout.set_idle_s(7200);
      timeout.set_interval_s(75);
      timeout.set_count(9);
      timeout.set_error(110);  // ETIMEDOUT
    }
  }

 private:
  int Uniform(int low, int high) { return std::uniform_int_distribution<int>(low, high)(random_); }

  // Log-uniform between low and high: latencies and lifetimes span orders of magnitude.
  uint64_t LogUniform(double low, double high) {
    return static_cast<uint64_t>(
        std::exp(std::uniform_real_distribution<double>(std::log(low), std::log(high))(random_)));
  }

  void Common(v1::Event& event, v1::Role role) {
    event.set_time_unix_ns(now_ns_ - LogUniform(1e3, 1e9));
    event.set_connection_id(random_());
    v1::Origin& origin = *event.mutable_origin();
    origin.set_netns_inode(4026531840u + Uniform(0, 3));
    origin.set_cgroup_id(4000 + Uniform(0, 200));
    // A server's handshake runs in softirq: no process, as the eBPF source reports it.
    if (role == v1::ROLE_CLIENT || Uniform(0, 1) == 0) {
      origin.set_pid(1000 + Uniform(0, 30000));
      origin.set_command(kCommands[Uniform(0, static_cast<int>(kCommands.size()) - 1)]);
    }
    const uint32_t service_port =
        kServerPorts[Uniform(0, static_cast<int>(kServerPorts.size()) - 1)];
    const uint32_t ephemeral_port = Uniform(32768, 60999);
    v1::Endpoints& endpoints = *event.mutable_endpoints();
    if (Uniform(0, 9) == 0) {
      std::string local(16, '\0');
      std::string remote(16, '\0');
      local[0] = remote[0] = '\xfd';
      for (int i = 8; i < 16; ++i) {
        local[i] = static_cast<char>(random_());
        remote[i] = static_cast<char>(random_());
      }
      endpoints.set_local_address(local);
      endpoints.set_remote_address(remote);
    } else {
      const uint32_t local = 0x0a000000u | (random_() & 0xffffffu);
      const uint32_t remote = 0x0a000000u | (random_() & 0xffffffu);
      endpoints.set_local_address(std::string(reinterpret_cast<const char*>(&local), 4));
      endpoints.set_remote_address(std::string(reinterpret_cast<const char*>(&remote), 4));
    }
    endpoints.set_local_port(role == v1::ROLE_SERVER ? service_port : ephemeral_port);
    endpoints.set_remote_port(role == v1::ROLE_SERVER ? ephemeral_port : service_port);
    event.set_role(role);
  }

  void Handshake(v1::Event& event) {
    event.mutable_handshake()->set_duration_us(LogUniform(30, 200'000));
  }

  void HandshakeFailed(v1::Event& event) {
    static constexpr int kErrors[] = {0, 111, 110, 104, 113, 22};  // by reason
    const int reason = Uniform(v1::HANDSHAKE_FAILURE_REFUSED, v1::HANDSHAKE_FAILURE_OTHER);
    v1::HandshakeFailed& failed = *event.mutable_handshake_failed();
    failed.set_reason(static_cast<v1::HandshakeFailureReason>(reason));
    failed.set_syn_retransmits(reason == v1::HANDSHAKE_FAILURE_TIMEOUT ? 6 : 0);
    failed.set_error(kErrors[reason]);
    failed.set_duration_us(LogUniform(50, 130'000'000));
  }

  void Close(v1::Event& event) {
    v1::Close& close = *event.mutable_close();
    const int who = Uniform(0, 99);
    close.set_initiator(who < 48   ? v1::CLOSE_INITIATOR_LOCAL
                        : who < 97 ? v1::CLOSE_INITIATOR_REMOTE
                                   : v1::CLOSE_INITIATOR_SIMULTANEOUS);
    const int why = Uniform(0, 99);
    close.set_reason(why < 85   ? v1::CLOSE_REASON_FIN
                     : why < 90 ? v1::CLOSE_REASON_RESET_SENT
                     : why < 95 ? v1::CLOSE_REASON_RESET_RECEIVED
                     : why < 96 ? v1::CLOSE_REASON_KEEPALIVE_TIMEOUT
                     : why < 97 ? v1::CLOSE_REASON_KEEPALIVE_RESET
                     : why < 99 ? v1::CLOSE_REASON_RETRANSMIT_TIMEOUT
                                : v1::CLOSE_REASON_OTHER);
    close.set_lifetime_us(LogUniform(500, 86'400e6));
    close.set_bytes_sent(LogUniform(1, 1e9));
    close.set_bytes_received(LogUniform(1, 1e9));
    close.set_segments_sent(Uniform(3, 100000));
    close.set_segments_received(Uniform(3, 100000));
    close.set_retransmits(Uniform(0, 9) == 0 ? Uniform(1, 20) : 0);
    close.set_srtt_us(LogUniform(20, 300'000));
    close.set_last_state(close.initiator() == v1::CLOSE_INITIATOR_LOCAL ? v1::TCP_STATE_TIME_WAIT
                                                                        : v1::TCP_STATE_LAST_ACK);
    if (close.reason() == v1::CLOSE_REASON_RESET_RECEIVED) close.set_error(104);
    if (close.reason() == v1::CLOSE_REASON_KEEPALIVE_TIMEOUT) close.set_error(110);
  }

  std::mt19937_64 random_;
  const uint64_t now_ns_;
};

}  // namespace

v1::Hello SyntheticHello(absl::string_view host_name, uint64_t instance_id) {
  v1::Hello hello;
  hello.set_host_name(std::string(host_name));
  hello.set_agent_version("bench");
  std::mt19937_64 random(instance_id);
  hello.set_boot_id(absl::StrFormat("%08x-%04x-4%03x-8%03x-%012x", random() & 0xffffffff,
                                    random() & 0xffff, random() & 0xfff, random() & 0xfff,
                                    random() & 0xffffffffffff));
  hello.set_instance_id(instance_id);
  hello.set_source(v1::SOURCE_KIND_EBPF);
  for (const char* capability :
       {"handshake", "handshake_failed", "close", "keepalive_probe", "keepalive_timeout",
        "keepalive_answered", "snapshot", "process"}) {
    hello.add_capabilities(capability);
  }
  return hello;
}

v1::Batch SyntheticBatch(int events, uint64_t seed, absl::Time now) {
  EventMaker maker(seed, now);
  v1::Batch batch;
  batch.mutable_events()->Reserve(events);
  for (int i = 0; i < events; ++i) maker.Fill(*batch.add_events());
  // As the shipper does: the cumulative loss counters ride on every batch (none lost here).
  batch.mutable_losses();
  return batch;
}

}  // namespace tcpscope::bench
