// Writes the fuzzers' seed corpus: tcpscope_fuzz_seeds CORPUS_DIR (tests/fuzz/corpus).
//   ingest_fuzzer/            hello + batches scripts (ingest_input.h) a real agent would send
//   replica_message_fuzzer/   a peer replica's Exchange messages (replica_input.h)
//   sock_diag_parser_fuzzer/  sock_diag dump replies captured from this machine's kernel, cut
//                             down to the loopback sockets this program opens for the purpose
//   bpf_event_decoder_fuzzer/ ring-buffer records as the eBPF program writes them
// Deterministic except for the captured replies (ports, cookies, tcp_info differ per run).
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "agent/bpf/tcpscope_event.h"
#include "service/packed_ends.h"
#include "tcpscope/v1/ingest.pb.h"
#include "tcpscope/v1/observer.pb.h"
#include "tcpscope/v1/replica.pb.h"
#include "tests/fuzz/ingest_input.h"
#include "tests/fuzz/replica_input.h"

namespace tcpscope::fuzz {
namespace {

constexpr uint64_t kNowNs = 1800000000ULL * 1000000000ULL;  // the ingest fuzzer's clock

void Write(const std::filesystem::path& path, const std::string& bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
  std::printf("%s (%zu bytes)\n", path.c_str(), bytes.size());
}

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "seed generator: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

// --- ingest ---

v1::AgentMessage Hello(const std::string& host, uint64_t instance) {
  v1::AgentMessage message;
  v1::Hello* hello = message.mutable_hello();
  hello->set_host_name(host);
  hello->set_agent_version("0.1.0");
  hello->set_boot_id("0b6f1b7e-2c71-4c55-9a0e-2bd4b1a1d0c2");
  hello->set_instance_id(instance);
  hello->set_source(v1::SOURCE_KIND_EBPF);
  hello->add_capabilities("snapshot");
  hello->add_capabilities("close");
  return message;
}

v1::Event Event(uint64_t offset_ns, bool ipv6, uint32_t local_port) {
  v1::Event event;
  event.set_time_unix_ns(kNowNs + offset_ns);
  event.set_connection_id(4096 + local_port);
  event.set_role(v1::ROLE_CLIENT);
  v1::Origin* origin = event.mutable_origin();
  origin->set_netns_inode(4026531840u);
  origin->set_pid(4242);
  origin->set_command("curl");
  v1::Endpoints* endpoints = event.mutable_endpoints();
  if (ipv6) {
    endpoints->set_local_address(std::string("\xfd\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16));
    endpoints->set_remote_address(std::string("\xfd\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x02", 16));
  } else {
    endpoints->set_local_address(std::string("\x0a\0\0\x01", 4));
    endpoints->set_remote_address(std::string("\x0a\0\0\x02", 4));
  }
  endpoints->set_local_port(local_port);
  endpoints->set_remote_port(443);
  return event;
}

v1::AgentMessage Batch(uint64_t seq, bool with_snapshot) {
  v1::AgentMessage message;
  v1::Batch* batch = message.mutable_batch();
  batch->set_seq(seq);
  v1::Event* handshake = batch->add_events();
  *handshake = Event(seq * 1000, false, 40000 + static_cast<uint32_t>(seq));
  handshake->mutable_handshake()->set_duration_us(180);

  v1::Event* close = batch->add_events();
  *close = Event(seq * 1000 + 500, seq % 2 == 0, 40000 + static_cast<uint32_t>(seq));
  close->mutable_close()->set_initiator(v1::CLOSE_INITIATOR_REMOTE);
  close->mutable_close()->set_reason(v1::CLOSE_REASON_KEEPALIVE_RESET);
  close->mutable_close()->set_lifetime_us(2500000);
  close->mutable_close()->set_bytes_sent(6);
  close->mutable_close()->set_last_state(v1::TCP_STATE_ESTABLISHED);

  v1::Event* failed = batch->add_events();
  *failed = Event(seq * 1000 + 700, false, 41000);
  failed->mutable_handshake_failed()->set_reason(v1::HANDSHAKE_FAILURE_REFUSED);
  failed->mutable_handshake_failed()->set_error(111);

  v1::Event* probe = batch->add_events();
  *probe = Event(seq * 1000 + 800, true, 42000);
  probe->mutable_keepalive_probe()->set_probe_number(1);
  probe->mutable_keepalive_probe()->set_idle_ms(7200000);

  v1::Event* timeout = batch->add_events();
  *timeout = Event(seq * 1000 + 900, true, 42000);
  timeout->set_role(v1::ROLE_SERVER);
  timeout->mutable_keepalive_timeout()->set_probes_sent(9);
  timeout->mutable_keepalive_timeout()->set_idle_s(7200);
  timeout->mutable_keepalive_timeout()->set_interval_s(75);
  timeout->mutable_keepalive_timeout()->set_count(9);
  timeout->mutable_keepalive_timeout()->set_error(110);

  if (with_snapshot) {
    v1::Snapshot* snapshot = batch->mutable_snapshot();
    snapshot->set_time_unix_ns(kNowNs + seq * 1000);
    snapshot->set_listeners(2);
    const v1::TcpState states[] = {v1::TCP_STATE_ESTABLISHED, v1::TCP_STATE_ESTABLISHED,
                                   v1::TCP_STATE_CLOSE_WAIT, v1::TCP_STATE_TIME_WAIT};
    for (int i = 0; i < 4; ++i) {
      v1::Connection* connection = snapshot->add_connections();
      const v1::Event endpoint = Event(0, i == 1, 43000 + static_cast<uint32_t>(i));
      connection->set_connection_id(endpoint.connection_id());
      *connection->mutable_endpoints() = endpoint.endpoints();
      *connection->mutable_origin() = endpoint.origin();
      connection->set_role(i == 2 ? v1::ROLE_SERVER : v1::ROLE_CLIENT);
      connection->set_state(states[i]);
      connection->mutable_keepalive()->set_enabled(i == 1);
      connection->mutable_keepalive()->set_probes_out(i == 1 ? 2 : 0);
      connection->set_idle_ms(i == 0 ? 3600000 : 10);
      connection->set_srtt_us(50);
      connection->set_first_seen_unix_ns(kNowNs - 600000000000ULL);
      connection->set_state_since_unix_ns(kNowNs - 300000000000ULL);
    }
  }
  batch->mutable_losses()->set_kernel(seq);
  return message;
}

std::string Bytes(const google::protobuf::Message& message) { return message.SerializeAsString(); }

// Batch(seq) with its events and ends owned by workloads: Kubernetes pods (more than the
// fuzzer's per-host cap, so some land in pod="other"), a Docker container, a container known
// by its id only, and the host's own processes; server ports past the port cap.
v1::AgentMessage WorkloadBatch(uint64_t seq) {
  v1::AgentMessage message = Batch(seq, /*with_snapshot=*/true);
  auto own = [](v1::Origin* origin, int i) {
    switch (i % 6) {
      case 5:
        return;  // a host process
      case 4:
        origin->set_container_id(
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        origin->set_runtime(v1::CONTAINER_RUNTIME_CONTAINERD);
        return;
      case 3:
        origin->set_container_name("redis");
        origin->set_container_id(
            "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210");
        origin->set_runtime(v1::CONTAINER_RUNTIME_DOCKER);
        return;
      default:
        origin->set_pod_namespace(i % 2 == 0 ? "shop" : "kube-system");
        origin->set_pod("web-" + std::to_string(i));
        origin->set_pod_uid("5c1f3a2e-8d4b-4f6a-9e7c-0b1d2e3f4a5b");
        origin->set_container_name(i == 0 ? "web" : "envoy");
        origin->set_container_id(
            "3f2a9c0d1e4b5a6978c0d1e2f3a4b5c6d7e8f90123456789abcdef0123456789");
        origin->set_runtime(v1::CONTAINER_RUNTIME_CONTAINERD);
        return;
    }
  };
  v1::Batch* batch = message.mutable_batch();
  for (int i = 0; i < batch->events_size(); ++i) {
    own(batch->mutable_events(i)->mutable_origin(), i);
    batch->mutable_events(i)->mutable_endpoints()->set_remote_port(5432 + static_cast<uint32_t>(i));
  }
  for (int i = 0; i < batch->snapshot().connections_size(); ++i) {
    own(batch->mutable_snapshot()->mutable_connections(i)->mutable_origin(), i + 1);
  }
  return message;
}

void IngestSeeds(const std::filesystem::path& dir) {
  std::string script;
  // An agent connects and sends batches, the second with a snapshot; a query.
  AppendStep(&script, Op::kMessage, 0, Bytes(Hello("web-1.example", 7)));
  AppendStep(&script, Op::kMessage, 0, Bytes(Batch(1, false)));
  AppendStep(&script, Op::kMessage, 0, Bytes(Batch(2, true)));
  v1::ListConnectionsRequest query;
  query.set_at_risk(true);
  query.set_address("10.0.0.0/8");
  AppendStep(&script, Op::kQuery, 0, Bytes(query));
  Write(dir / "hello_batches", script);

  // Reconnect with the same instance: the service says where to resume; a resend is ignored.
  script.clear();
  AppendStep(&script, Op::kMessage, 0, Bytes(Hello("web-1.example", 7)));
  AppendStep(&script, Op::kMessage, 0, Bytes(Batch(1, true)));
  AppendStep(&script, Op::kMessage, 0, Bytes(Batch(2, false)));
  AppendStep(&script, Op::kEndStream, 0);
  AppendStep(&script, Op::kMessage, 0, Bytes(Hello("web-1.example", 7)));
  AppendStep(&script, Op::kMessage, 0, Bytes(Batch(2, false)));
  AppendStep(&script, Op::kMessage, 0, Bytes(Batch(3, true)));
  Write(dir / "resume_after_reconnect", script);

  // A second agent claims a connected host; another host connects beside it.
  script.clear();
  AppendStep(&script, Op::kMessage, 0, Bytes(Hello("db-1", 1)));
  AppendStep(&script, Op::kMessage, 1, Bytes(Hello("db-1", 2)));
  AppendStep(&script, Op::kMessage, 1, Bytes(Hello("db-2", 3)));
  AppendStep(&script, Op::kMessage, 1, Bytes(Batch(1, true)));
  AppendStep(&script, Op::kMessage, 0, Bytes(Batch(1, true)));
  Write(dir / "two_agents_one_host", script);

  // A host disconnects and expires; it comes back later as a new agent instance.
  script.clear();
  AppendStep(&script, Op::kMessage, 0, Bytes(Hello("cache-1", 5)));
  AppendStep(&script, Op::kMessage, 0, Bytes(Batch(1, true)));
  AppendStep(&script, Op::kEndStream, 0);
  AppendStep(&script, Op::kAdvanceClock, 21);
  AppendStep(&script, Op::kMessage, 0, Bytes(Hello("cache-1", 6)));
  AppendStep(&script, Op::kMessage, 0, Bytes(Batch(1, false)));
  Write(dir / "expiry", script);

  // Refusals: a batch before the hello, a hello with a label-breaking host name.
  script.clear();
  AppendStep(&script, Op::kMessage, 0, Bytes(Batch(1, false)));
  v1::AgentMessage bad = Hello("web-1", 9);
  bad.mutable_hello()->set_host_name("web\"1\n");
  AppendStep(&script, Op::kMessage, 0, Bytes(bad));
  Write(dir / "refusals", script);

  // Workloads: pods past the cap, a Docker container, a container known by id only; a pod
  // filter; then a hostile pod name, refused; the pods go idle and their slots expire.
  script.clear();
  AppendStep(&script, Op::kMessage, 0, Bytes(Hello("node-1", 11)));
  AppendStep(&script, Op::kMessage, 0, Bytes(WorkloadBatch(1)));
  AppendStep(&script, Op::kMessage, 1, Bytes(Hello("node-2", 12)));
  AppendStep(&script, Op::kMessage, 1, Bytes(WorkloadBatch(1)));
  v1::ListConnectionsRequest by_pod;
  by_pod.set_pod_namespace("shop");
  by_pod.set_pod("web-2");
  by_pod.set_paired(true);
  AppendStep(&script, Op::kQuery, 0, Bytes(by_pod));
  v1::AgentMessage hostile = WorkloadBatch(2);
  hostile.mutable_batch()->mutable_events(0)->mutable_origin()->set_pod("web\"} 1\nfake 2");
  AppendStep(&script, Op::kMessage, 0, Bytes(hostile));
  AppendStep(&script, Op::kMessage, 0, Bytes(Hello("node-1", 11)));
  AppendStep(&script, Op::kMessage, 0, Bytes(WorkloadBatch(2)));
  AppendStep(&script, Op::kAdvanceClock, 21);
  AppendStep(&script, Op::kMessage, 0, Bytes(WorkloadBatch(3)));
  Write(dir / "workloads", script);
}

// --- sock_diag ---

int Check(int result, const char* what) {
  if (result < 0) Fail(what);
  return result;
}

struct Pair {
  int listener, client, server;
  uint16_t port;
};

// A listener on loopback with one accepted connection that has exchanged a few bytes.
Pair Connect(int family) {
  Pair pair{};
  pair.listener = Check(socket(family, SOCK_STREAM, 0), "socket");
  sockaddr_storage address{};
  socklen_t length;
  if (family == AF_INET) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
    v4->sin_family = AF_INET;
    v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    length = sizeof(*v4);
  } else {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
    v6->sin6_family = AF_INET6;
    v6->sin6_addr = in6addr_loopback;
    length = sizeof(*v6);
  }
  Check(bind(pair.listener, reinterpret_cast<sockaddr*>(&address), length), "bind");
  Check(listen(pair.listener, 8), "listen");
  Check(getsockname(pair.listener, reinterpret_cast<sockaddr*>(&address), &length), "getsockname");
  pair.port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&address)->sin_port
                                      : reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
  pair.client = Check(socket(family, SOCK_STREAM, 0), "socket");
  const int on = 1, idle = 600;
  Check(setsockopt(pair.client, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)), "SO_KEEPALIVE");
  Check(setsockopt(pair.client, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)), "TCP_KEEPIDLE");
  Check(connect(pair.client, reinterpret_cast<sockaddr*>(&address), length), "connect");
  pair.server = Check(accept(pair.listener, nullptr, nullptr), "accept");
  Check(static_cast<int>(write(pair.client, "hello\n", 6)), "write");
  char buffer[8];
  Check(static_cast<int>(read(pair.server, buffer, sizeof(buffer))), "read");
  return pair;
}

// One dump of `family` (every state, with tcp_info), keeping only the messages of sockets on
// `port` and the final NLMSG_DONE: kernel bytes, unmodified, in one receive buffer.
std::string DumpPort(int family, uint16_t port) {
  const int fd = Check(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG), "netlink");
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof(message);
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  message.header.nlmsg_seq = 1;
  message.request.sdiag_family = static_cast<uint8_t>(family);
  message.request.sdiag_protocol = IPPROTO_TCP;
  message.request.idiag_states = ~0u;
  message.request.idiag_ext = 1 << (INET_DIAG_INFO - 1);
  Check(static_cast<int>(send(fd, &message, sizeof(message), 0)), "send");

  std::string kept;
  std::vector<uint8_t> buffer(1 << 16);
  while (true) {
    const ssize_t received = recv(fd, buffer.data(), buffer.size(), 0);
    if (received <= 0) Fail("recv");
    size_t offset = 0;
    while (offset + sizeof(nlmsghdr) <= static_cast<size_t>(received)) {
      nlmsghdr header;
      std::memcpy(&header, buffer.data() + offset, sizeof(header));
      const auto* bytes = reinterpret_cast<const char*>(buffer.data() + offset);
      if (header.nlmsg_type == NLMSG_DONE || header.nlmsg_type == NLMSG_ERROR) {
        kept.append(bytes, header.nlmsg_len);
        close(fd);
        return kept;
      }
      inet_diag_msg diag;
      std::memcpy(&diag, buffer.data() + offset + NLMSG_HDRLEN, sizeof(diag));
      if (ntohs(diag.id.idiag_sport) == port || ntohs(diag.id.idiag_dport) == port) {
        kept.append(bytes, NLMSG_ALIGN(header.nlmsg_len));
      }
      offset += NLMSG_ALIGN(header.nlmsg_len);
    }
  }
}

void SockDiagSeeds(const std::filesystem::path& dir) {
  // IPv4: a listener, an established pair (the client with keepalive on), and a second pair
  // whose client closed first, leaving a TIME_WAIT socket and a CLOSE_WAIT server end.
  Pair v4 = Connect(AF_INET);
  const int closing = Check(socket(AF_INET, SOCK_STREAM, 0), "socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(v4.port);
  Check(connect(closing, reinterpret_cast<sockaddr*>(&address), sizeof(address)), "connect");
  const int closing_server = Check(accept(v4.listener, nullptr, nullptr), "accept");
  close(closing);
  usleep(20000);  // the FIN arrives: the server end is in CLOSE_WAIT
  Write(dir / "ipv4_dump", DumpPort(AF_INET, v4.port));
  close(closing_server);
  usleep(20000);  // the server end's FIN: the client end is in TIME_WAIT now
  Write(dir / "ipv4_time_wait_dump", DumpPort(AF_INET, v4.port));

  Pair v6 = Connect(AF_INET6);
  Write(dir / "ipv6_dump", DumpPort(AF_INET6, v6.port));

  // The kernel's answer to a malformed request: NLMSG_ERROR with EINVAL and the request echoed.
  struct {
    nlmsghdr header;
    nlmsgerr error;
  } reply{};
  reply.header.nlmsg_len = sizeof(reply);
  reply.header.nlmsg_type = NLMSG_ERROR;
  reply.header.nlmsg_seq = 1;
  reply.error.error = -EINVAL;
  reply.error.msg.nlmsg_len = sizeof(nlmsghdr) + sizeof(inet_diag_req_v2);
  reply.error.msg.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  Write(dir / "error_reply", std::string(reinterpret_cast<const char*>(&reply), sizeof(reply)));
  for (int fd : {v4.listener, v4.client, v4.server, v6.listener, v6.client, v6.server}) close(fd);
}

// --- eBPF records ---

tcpscope_event Record(uint8_t kind, bool ipv6) {
  tcpscope_event raw;
  std::memset(&raw, 0, sizeof(raw));
  raw.kind = kind;
  raw.time_ns = 86400ULL * 1000000000ULL;  // a day of uptime
  raw.cookie = 8193;
  raw.cgroup_id = 1234;
  raw.netns_ino = 4026531840u;
  raw.pid = 4242;
  std::strcpy(raw.comm, "curl");
  raw.family = ipv6 ? AF_INET6 : AF_INET;
  raw.sport = 40001;
  raw.dport = 443;
  if (ipv6) {
    const uint8_t local[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const uint8_t remote[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
    std::memcpy(raw.saddr, local, 16);
    std::memcpy(raw.daddr, remote, 16);
  } else {
    const uint8_t local[4] = {10, 0, 0, 1}, remote[4] = {10, 0, 0, 2};
    std::memcpy(raw.saddr, local, 4);
    std::memcpy(raw.daddr, remote, 4);
  }
  raw.role = TCPSCOPE_ROLE_CLIENT;
  return raw;
}

std::string Bytes(const tcpscope_event& raw) {
  return std::string(reinterpret_cast<const char*>(&raw), sizeof(raw));
}

void BpfSeeds(const std::filesystem::path& dir) {
  tcpscope_event handshake = Record(TCPSCOPE_EVENT_HANDSHAKE, false);
  handshake.duration_ns = 180000;
  handshake.flags = TCPSCOPE_FLAG_DURATION_KNOWN;
  Write(dir / "handshake_ipv4", Bytes(handshake));

  tcpscope_event close = Record(TCPSCOPE_EVENT_CLOSE, true);
  close.initiator = TCPSCOPE_INITIATOR_REMOTE;
  close.reason = TCPSCOPE_REASON_KEEPALIVE_RESET;
  close.last_state = 1;
  close.duration_ns = 2500000000ULL;
  close.flags = TCPSCOPE_FLAG_DURATION_KNOWN;
  close.bytes_acked = 6;
  close.bytes_received = 3;
  close.segs_out = 5;
  close.segs_in = 4;
  close.srtt_us = 50;
  close.probes = 2;
  Write(dir / "close_ipv6", Bytes(close));

  tcpscope_event failed = Record(TCPSCOPE_EVENT_HANDSHAKE_FAILED, false);
  failed.reason = TCPSCOPE_FAILURE_REFUSED;
  failed.error = 111;
  Write(dir / "handshake_failed", Bytes(failed));

  tcpscope_event timeout = Record(TCPSCOPE_EVENT_KEEPALIVE_TIMEOUT, false);
  timeout.role = TCPSCOPE_ROLE_SERVER;
  timeout.probes = 9;
  timeout.keepalive_idle_s = 7200;
  timeout.keepalive_intvl_s = 75;
  timeout.keepalive_count = 9;
  timeout.error = 110;
  timeout.pid = 0;
  std::memset(timeout.comm, 0, sizeof(timeout.comm));
  Write(dir / "keepalive_timeout", Bytes(timeout));

  // A dual-stack socket talking to an IPv4 peer: v4-mapped addresses.
  tcpscope_event mapped = Record(TCPSCOPE_EVENT_KEEPALIVE_PROBE, true);
  const uint8_t local[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
  const uint8_t remote[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2};
  std::memcpy(mapped.saddr, local, 16);
  std::memcpy(mapped.daddr, remote, 16);
  mapped.probes = 1;
  mapped.idle_ms = 7200000;
  Write(dir / "keepalive_probe_v4_mapped", Bytes(mapped));
}

}  // namespace
}  // namespace tcpscope::fuzz

namespace tcpscope::fuzz {
namespace {

// host-b's ends of the connections of the fuzzer's host-a (10.1.0.1:40000+i -> 10.1.0.2:80).
v1::ReplicaMessage Fragment(uint64_t time_ns, int ends, bool with_closes) {
  v1::ReplicaMessage message;
  message.set_from("10.9.0.2:7700");
  message.set_ring(kSameRing);
  v1::HostFragment& fragment = *message.mutable_fragment();
  fragment.set_host("host-b");
  fragment.set_boot_id("boot-b");
  v1::PackedEnds& packed = *fragment.mutable_ends();
  packed.set_version(service::kPackedEndVersion);
  packed.set_time_unix_ns(time_ns);
  packed.add_origins()->set_command("server");
  const char local[4] = {10, 1, 0, 2};
  const char remote[4] = {10, 1, 0, 1};
  for (int i = 0; i < ends; ++i) {
    service::EndRecord end;
    end.connection_id = static_cast<uint64_t>(200 + i);
    end.state = v1::TCP_STATE_ESTABLISHED;
    end.role = v1::ROLE_SERVER;
    std::memcpy(&end.local_address, local, 4);
    std::memcpy(&end.remote_address, remote, 4);
    end.local_port = 80;
    end.remote_port = static_cast<uint16_t>(40000 + i);
    service::AppendPackedEnd(end, packed.mutable_records());
    if (with_closes && i == ends - 1) {
      v1::FragmentClose& close = *fragment.add_closes();
      close.set_connection_id(end.connection_id);
      v1::Endpoints& e = *close.mutable_endpoints();
      e.set_local_address(local, 4);
      e.set_remote_address(remote, 4);
      e.set_local_port(end.local_port);
      e.set_remote_port(end.remote_port);
      close.set_time_unix_ns(time_ns);
    }
  }
  return message;
}

void ReplicaSeeds(const std::filesystem::path& dir) {
  std::string input;
  AppendReplicaMessage(&input, Fragment(kNowNs, 8, false).SerializeAsString());
  AppendReplicaMessage(&input, Fragment(kNowNs + 1000000000, 6, true).SerializeAsString());
  v1::ReplicaMessage status;
  status.mutable_status()->set_host("host-b");
  status.mutable_status()->set_change(v1::HostStatus::CHANGE_DOWN);
  status.mutable_status()->set_last_seen_unix_ns(kNowNs);
  AppendReplicaMessage(&input, status.SerializeAsString());
  status.mutable_status()->set_change(v1::HostStatus::CHANGE_EXPIRED);
  AppendReplicaMessage(&input, status.SerializeAsString());
  Write(dir / "fragments_down_expired", input);

  input.clear();
  v1::ReplicaMessage findings;
  v1::HostFindings& found = *findings.mutable_findings();
  found.set_host("host-a");
  v1::Event& event = *found.add_half_open();
  event.set_time_unix_ns(kNowNs);
  event.set_connection_id(100);
  event.set_role(v1::ROLE_CLIENT);
  event.mutable_endpoints()->set_local_address(std::string({10, 1, 0, 1}));
  event.mutable_endpoints()->set_remote_address(std::string({10, 1, 0, 2}));
  event.mutable_endpoints()->set_local_port(40000);
  event.mutable_endpoints()->set_remote_port(80);
  event.mutable_half_open()->set_reason(v1::HALF_OPEN_PEER_CLOSED);
  event.mutable_half_open()->set_peer_host("host-b");
  v1::HalfOpenEnd& end = *found.mutable_half_open_now()->add_ends();
  end.set_reason(v1::HALF_OPEN_PEER_CLOSED);
  end.mutable_origin()->set_command("client");
  AppendReplicaMessage(&input, findings.SerializeAsString());
  found.clear_half_open();
  found.mutable_half_open_now()->clear_ends();
  AppendReplicaMessage(&input, findings.SerializeAsString());
  Write(dir / "findings", input);
}

}  // namespace
}  // namespace tcpscope::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR  (tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  const std::filesystem::path corpus = argv[1];
  tcpscope::fuzz::IngestSeeds(corpus / "ingest_fuzzer");
  tcpscope::fuzz::ReplicaSeeds(corpus / "replica_message_fuzzer");
  tcpscope::fuzz::SockDiagSeeds(corpus / "sock_diag_parser_fuzzer");
  tcpscope::fuzz::BpfSeeds(corpus / "bpf_event_decoder_fuzzer");
  return 0;
}
