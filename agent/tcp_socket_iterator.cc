// Loading and reading the iter/tcp iterator, and decoding its records.
#include "agent/tcp_socket_iterator.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "agent/bpf/tcp_socket_record.h"
#include "tcp_sockets.skel.h"

namespace tcpscope::agent {
namespace {

// Read size: a whole number of records (the kernel's seq_file hands out at most its own buffer,
// 32 KiB and up, per read).
constexpr size_t kReadChunk = 1024 * sizeof(tcpscope_tcp_socket);

SocketRecord ToSocketRecord(const tcpscope_tcp_socket& raw) {
  SocketRecord record;
  record.family = raw.family;
  record.state = raw.state;
  record.timer = static_cast<DiagTimer>(raw.timer);
  record.timer_retrans = raw.timer_retrans;
  record.timer_expires_ms = raw.timer_expires_ms;
  std::memcpy(record.local_address.data(), raw.local_address, sizeof(raw.local_address));
  std::memcpy(record.remote_address.data(), raw.remote_address, sizeof(raw.remote_address));
  record.local_port = raw.local_port;
  record.remote_port = raw.remote_port;
  record.cookie = raw.cookie;
  record.recv_queue = raw.recv_queue;
  record.send_queue = raw.send_queue;
  record.uid = raw.uid;
  record.inode = raw.inode;
  if (raw.has_info != 0) {
    TcpInfo& info = record.tcp_info.emplace();
    info.state = raw.info_state;
    info.probes = raw.probes;
    info.backoff = raw.backoff;
    info.rtt_us = raw.rtt_us;
    info.rttvar_us = raw.rttvar_us;
    info.last_data_sent_ms = raw.last_data_sent_ms;
    info.last_data_recv_ms = raw.last_data_recv_ms;
    info.last_ack_recv_ms = raw.last_ack_recv_ms;
    info.total_retrans = raw.total_retrans;
    info.segs_out = raw.segs_out;
    info.segs_in = raw.segs_in;
    info.bytes_acked = raw.bytes_acked;
    info.bytes_received = raw.bytes_received;
  }
  return record;
}

// An iterator file over the namespace the calling thread is in.
absl::StatusOr<int> CreateIterator(bpf_link* link) {
  const int fd = bpf_iter_create(bpf_link__fd(link));
  if (fd < 0) return absl::ErrnoToStatus(errno, "bpf_iter_create(iter/tcp)");
  return fd;
}

// setns() moves only the calling thread: a throwaway thread enters the namespace, and the
// iterator file it creates walks that namespace whoever reads it.
absl::StatusOr<int> CreateIteratorIn(bpf_link* link, int netns_fd) {
  absl::StatusOr<int> fd = absl::InternalError("not run");
  try {
    std::thread([&] {
      if (setns(netns_fd, CLONE_NEWNET) != 0) {
        fd = absl::ErrnoToStatus(errno, "setns into the network namespace");
        return;
      }
      fd = CreateIterator(link);
    }).join();
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot start a thread to enter the network namespace: ", e.what()));
  }
  return fd;
}

}  // namespace

absl::Status DecodeTcpSocketRecords(absl::Span<const uint8_t> bytes,
                                    std::vector<SocketRecord>* out) {
  if (bytes.size() % sizeof(tcpscope_tcp_socket) != 0) {
    return absl::DataLossError(absl::StrCat("TCP socket iterator output of ", bytes.size(),
                                            " bytes is not a whole number of ",
                                            sizeof(tcpscope_tcp_socket), "-byte records"));
  }
  // No reserve(): called once per read chunk, an exact reserve would copy the vector each time.
  const size_t count = bytes.size() / sizeof(tcpscope_tcp_socket);
  for (size_t i = 0; i < count; ++i) {
    tcpscope_tcp_socket raw;
    std::memcpy(&raw, bytes.data() + i * sizeof(raw), sizeof(raw));
    if (raw.family != AF_INET && raw.family != AF_INET6) {
      return absl::DataLossError(
          absl::StrCat("TCP socket iterator record ", i, " has family ", raw.family));
    }
    out->push_back(ToSocketRecord(raw));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<TcpSocketIterator>> TcpSocketIterator::Load() {
  if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
    return absl::FailedPreconditionError("the kernel exposes no BTF (/sys/kernel/btf/vmlinux)");
  }
  tcp_sockets_bpf* skeleton = tcp_sockets_bpf__open();
  if (skeleton == nullptr) return absl::ErrnoToStatus(errno, "opening the iter/tcp object");
  if (const int error = tcp_sockets_bpf__load(skeleton); error != 0) {
    tcp_sockets_bpf__destroy(skeleton);
    return absl::ErrnoToStatus(-error,
                               "loading the iter/tcp program (kernel 5.14+, CONFIG_HZ readable "
                               "from /proc/config.gz or /boot/config-*, CAP_BPF and CAP_PERFMON "
                               "or CAP_SYS_ADMIN)");
  }
  bpf_link* link = bpf_program__attach_iter(skeleton->progs.tcp_sockets, nullptr);
  if (link == nullptr) {
    const int error = errno;
    tcp_sockets_bpf__destroy(skeleton);
    return absl::ErrnoToStatus(error, "creating the iter/tcp link");
  }
  std::shared_ptr<TcpSocketIterator> iterator(new TcpSocketIterator(skeleton, link));
  if (absl::StatusOr<std::vector<SocketRecord>> probe = iterator->Dump(-1); !probe.ok()) {
    return probe.status();
  }
  return iterator;
}

TcpSocketIterator::~TcpSocketIterator() {
  bpf_link__destroy(link_);
  tcp_sockets_bpf__destroy(skeleton_);
}

absl::StatusOr<std::vector<SocketRecord>> TcpSocketIterator::Dump(int netns_fd, size_t expected) {
  absl::StatusOr<int> fd = netns_fd < 0 ? CreateIterator(link_) : CreateIteratorIn(link_, netns_fd);
  if (!fd.ok()) return fd.status();
  std::vector<SocketRecord> records;
  records.reserve(expected + expected / 8);
  // Decoded chunk by chunk: no buffer the size of the whole output.
  std::vector<uint8_t> chunk(kReadChunk);
  size_t held = 0;
  while (true) {
    const ssize_t got = read(*fd, chunk.data() + held, chunk.size() - held);
    if (got > 0) {
      held += static_cast<size_t>(got);
      const size_t whole = held - held % sizeof(tcpscope_tcp_socket);
      if (absl::Status status =
              DecodeTcpSocketRecords(absl::MakeConstSpan(chunk.data(), whole), &records);
          !status.ok()) {
        close(*fd);
        return status;
      }
      std::memmove(chunk.data(), chunk.data() + whole, held - whole);
      held -= whole;
      continue;
    }
    if (got == 0) break;
    // EAGAIN: the kernel walked a million sockets without output in one read and yields.
    if (errno == EINTR || errno == EAGAIN) continue;
    const int error = errno;
    close(*fd);
    return absl::ErrnoToStatus(error, "reading the iter/tcp iterator");
  }
  close(*fd);
  if (held != 0) {
    return absl::DataLossError(
        absl::StrCat("TCP socket iterator output ends in a partial record of ", held, " bytes"));
  }
  return records;
}

absl::StatusOr<std::unique_ptr<SocketDumper>> IterSocketDumper::Open(
    std::shared_ptr<TcpSocketIterator> iterator, const std::string& netns_path) {
  struct stat own {};
  if (stat("/proc/self/ns/net", &own) != 0) {
    return absl::ErrnoToStatus(errno, "stat /proc/self/ns/net");
  }
  if (netns_path.empty()) {
    return std::unique_ptr<SocketDumper>(new IterSocketDumper(std::move(iterator), -1, own.st_ino));
  }
  const int fd = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("open network namespace ", netns_path));
  }
  struct stat info {};
  if (fstat(fd, &info) != 0) {
    const int error = errno;
    close(fd);
    return absl::ErrnoToStatus(error, absl::StrCat("fstat network namespace ", netns_path));
  }
  if (info.st_ino == own.st_ino && info.st_dev == own.st_dev) {
    close(fd);  // our own: no thread needs to enter it
    return std::unique_ptr<SocketDumper>(new IterSocketDumper(std::move(iterator), -1, own.st_ino));
  }
  return std::unique_ptr<SocketDumper>(new IterSocketDumper(std::move(iterator), fd, info.st_ino));
}

IterSocketDumper::~IterSocketDumper() {
  if (netns_fd_ >= 0) close(netns_fd_);
}

absl::StatusOr<std::vector<SocketRecord>> IterSocketDumper::Dump() {
  absl::StatusOr<std::vector<SocketRecord>> records = iterator_->Dump(netns_fd_, last_count_);
  if (records.ok()) last_count_ = records->size();
  return records;
}

}  // namespace tcpscope::agent
