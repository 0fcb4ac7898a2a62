// The two socket-owner scanners (BPF iterator, /proc walk) and the iterator's record decoding.
#include "agent/socket_owners.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/bpf/socket_owner.h"
#include "socket_owners.skel.h"

namespace tcpscope::agent {
namespace {

constexpr uint8_t kListen = 10;

// The service accepts printable ASCII only (as bpf_event_decoder does for event commands).
std::string Printable(const char* text, size_t max_length) {
  std::string out(text, strnlen(text, max_length));
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return out;
}

bool IsNumber(const char* name) {
  if (*name == '\0') return false;
  for (; *name != '\0'; ++name) {
    if (*name < '0' || *name > '9') return false;
  }
  return true;
}

// Records `owner` for `inode` unless a holder `ss -p` lists first is there already.
void AddOwner(uint64_t inode, const OwnerRef& owner, OwnerTable* table) {
  auto [it, inserted] = table->sockets.try_emplace(inode, owner);
  if (!inserted && PreferOwner(*owner, *it->second)) it->second = owner;
}

class BpfSocketOwners : public SocketOwners {
 public:
  BpfSocketOwners(socket_owners_bpf* skeleton, bpf_link* link) : skeleton_(skeleton), link_(link) {}
  ~BpfSocketOwners() override {
    bpf_link__destroy(link_);
    socket_owners_bpf__destroy(skeleton_);
  }

  const char* mode() const override { return "bpf"; }

  absl::StatusOr<OwnerTable> Scan() override {
    // Each iterator file is one fresh walk of every task's file table.
    const int fd = bpf_iter_create(bpf_link__fd(link_));
    if (fd < 0) return absl::ErrnoToStatus(errno, "bpf_iter_create(socket owners)");
    buffer_.clear();
    size_t used = 0;
    while (true) {
      if (buffer_.size() - used < kReadChunk) buffer_.resize(used + 4 * kReadChunk);
      const ssize_t got = read(fd, buffer_.data() + used, buffer_.size() - used);
      if (got > 0) {
        used += static_cast<size_t>(got);
        continue;
      }
      if (got == 0) break;
      // EAGAIN: the kernel visited a million files without output in one read and yields; the
      // next read goes on from there.
      if (errno == EINTR || errno == EAGAIN) continue;
      const int error = errno;
      close(fd);
      return absl::ErrnoToStatus(error, "reading the socket-owner iterator");
    }
    close(fd);
    OwnerTable table;
    if (absl::Status status = DecodeOwnerRecords(absl::MakeConstSpan(buffer_.data(), used), &table);
        !status.ok()) {
      return status;
    }
    // Keeps the memory of a large scan for the next one, but not a spike forever.
    if (buffer_.capacity() > 4 * used + (1 << 20)) buffer_.shrink_to_fit();
    return table;
  }

 private:
  static constexpr size_t kReadChunk = 64 << 10;

  socket_owners_bpf* skeleton_;
  bpf_link* link_;
  std::vector<uint8_t> buffer_;
};

class ProcSocketOwners : public SocketOwners {
 public:
  ProcSocketOwners(std::string proc, std::string cgroup2_mount)
      : proc_(std::move(proc)), cgroup2_mount_(std::move(cgroup2_mount)) {}

  const char* mode() const override { return "proc"; }

  absl::StatusOr<OwnerTable> Scan() override {
    if (cgroup2_mount_.empty()) {
      std::ifstream mountinfo(absl::StrCat(proc_, "/self/mountinfo"));
      std::stringstream text;
      text << mountinfo.rdbuf();
      cgroup2_mount_ = Cgroup2MountPoint(text.str());
    }
    DIR* dir = opendir(proc_.c_str());
    if (dir == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat("opendir ", proc_));
    OwnerTable table;
    absl::flat_hash_map<std::string, uint64_t> cgroup_ids;  // by cgroup path, for this scan
    std::vector<uint64_t> inodes;
    while (dirent* entry = readdir(dir)) {
      if (!IsNumber(entry->d_name)) continue;
      uint32_t pid = 0;
      if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
      const std::string base = absl::StrCat(proc_, "/", entry->d_name);
      inodes.clear();
      SocketInodes(base, &inodes);
      if (inodes.empty()) continue;
      auto owner = std::make_shared<SocketOwner>();
      owner->pid = pid;
      owner->command = Command(base);
      const std::string path = CgroupV2Path(ReadSmallFile(absl::StrCat(base, "/cgroup")));
      if (!path.empty() && !cgroup2_mount_.empty()) {
        auto [it, inserted] = cgroup_ids.try_emplace(path, 0);
        if (inserted) {
          struct stat info {};
          if (stat(absl::StrCat(cgroup2_mount_, path).c_str(), &info) == 0)
            it->second = info.st_ino;
        }
        owner->cgroup_id = it->second;
      }
      ++table.processes;
      const OwnerRef shared = std::move(owner);
      for (const uint64_t inode : inodes) AddOwner(inode, shared, &table);
    }
    closedir(dir);
    return table;
  }

 private:
  // "socket:[N]" targets of BASE/fd/*. A process that exits meanwhile or that we may not look
  // into (no CAP_SYS_PTRACE) has none.
  static void SocketInodes(const std::string& base, std::vector<uint64_t>* out) {
    const int fd_dir = open(absl::StrCat(base, "/fd").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_dir < 0) return;
    DIR* dir = fdopendir(fd_dir);
    if (dir == nullptr) {
      close(fd_dir);
      return;
    }
    char target[64];
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      const ssize_t length = readlinkat(fd_dir, entry->d_name, target, sizeof(target) - 1);
      if (length <= 0) continue;
      absl::string_view link(target, static_cast<size_t>(length));
      if (!absl::ConsumePrefix(&link, "socket:[") || !absl::ConsumeSuffix(&link, "]")) continue;
      uint64_t inode = 0;
      if (absl::SimpleAtoi(link, &inode)) out->push_back(inode);
    }
    closedir(dir);  // closes fd_dir
  }

  static std::string ReadSmallFile(const std::string& path) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return "";
    char buffer[4096];
    const ssize_t length = read(fd, buffer, sizeof(buffer));
    close(fd);
    return length > 0 ? std::string(buffer, static_cast<size_t>(length)) : "";
  }

  static std::string Command(const std::string& base) {
    std::string comm = ReadSmallFile(absl::StrCat(base, "/comm"));
    while (!comm.empty() && comm.back() == '\n') comm.pop_back();
    return Printable(comm.data(), std::min<size_t>(comm.size(), 64));
  }

  const std::string proc_;
  std::string cgroup2_mount_;
};

}  // namespace

absl::Status DecodeOwnerRecords(absl::Span<const uint8_t> bytes, OwnerTable* table) {
  const size_t count = bytes.size() / sizeof(tcpscope_socket_owner);
  table->sockets.reserve(table->sockets.size() + count);
  // One SocketOwner per process: the iterator visits a process's files one after the other.
  absl::flat_hash_map<uint32_t, OwnerRef> processes;
  for (size_t i = 0; i < count; ++i) {
    tcpscope_socket_owner record;
    std::memcpy(&record, bytes.data() + i * sizeof(record), sizeof(record));
    OwnerRef& owner = processes[record.tgid];
    if (owner == nullptr) {
      owner = std::make_shared<SocketOwner>(SocketOwner{
          .pid = record.tgid,
          .cgroup_id = record.cgroup_id,
          .command = Printable(record.comm, sizeof(record.comm)),
      });
    }
    AddOwner(record.inode, owner, table);
    if (record.state == kListen) {
      auto [it, inserted] =
          table->listeners.try_emplace(ListenerKey{record.netns_ino, record.local_port}, owner);
      if (!inserted && PreferOwner(*owner, *it->second)) it->second = owner;
    }
  }
  table->processes += processes.size();
  if (bytes.size() % sizeof(tcpscope_socket_owner) != 0) {
    return absl::DataLossError(absl::StrCat("socket-owner iterator output of ", bytes.size(),
                                            " bytes is not a whole number of ",
                                            sizeof(tcpscope_socket_owner), "-byte records"));
  }
  return absl::OkStatus();
}

std::string CgroupV2Path(absl::string_view proc_pid_cgroup) {
  for (absl::string_view line : absl::StrSplit(proc_pid_cgroup, '\n')) {
    if (absl::ConsumePrefix(&line, "0::")) return std::string(line);
  }
  return "";
}

std::string Cgroup2MountPoint(absl::string_view mountinfo) {
  // "36 25 0:31 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw"
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n')) {
    const size_t dash = line.find(" - ");
    if (dash == absl::string_view::npos) continue;
    std::vector<absl::string_view> after = absl::StrSplit(line.substr(dash + 3), ' ');
    if (after.empty() || after[0] != "cgroup2") continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line.substr(0, dash), ' ');
    // Only the hierarchy's root: a bind mount of a sub-cgroup would give wrong ids.
    if (fields.size() < 5 || fields[3] != "/") continue;
    return std::string(fields[4]);
  }
  return "";
}

namespace {

// Loads one variant of the iterator (the other is not loaded) and creates its link.
absl::StatusOr<std::unique_ptr<SocketOwners>> LoadVariant(bool compat) {
  socket_owners_bpf* skeleton = socket_owners_bpf__open();
  if (skeleton == nullptr) return absl::ErrnoToStatus(errno, "opening the iterator object");
  bpf_program__set_autoload(skeleton->progs.socket_owners, !compat);
  bpf_program__set_autoload(skeleton->progs.socket_owners_compat, compat);
  if (const int error = socket_owners_bpf__load(skeleton); error != 0) {
    socket_owners_bpf__destroy(skeleton);
    return absl::ErrnoToStatus(-error,
                               "loading the iter/task_file program (kernel 5.8+, needs CAP_BPF "
                               "and CAP_PERFMON or CAP_SYS_ADMIN)");
  }
  bpf_program* program =
      compat ? skeleton->progs.socket_owners_compat : skeleton->progs.socket_owners;
  bpf_link* link = bpf_program__attach_iter(program, nullptr);
  if (link == nullptr) {
    const int error = errno;
    socket_owners_bpf__destroy(skeleton);
    return absl::ErrnoToStatus(error, "creating the iter/task_file link");
  }
  auto owners = std::make_unique<BpfSocketOwners>(skeleton, link);
  // A kernel may load the program yet refuse to run it: find out now, not at the first snapshot.
  if (absl::StatusOr<OwnerTable> probe = owners->Scan(); !probe.ok()) return probe.status();
  return owners;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SocketOwners>> OpenBpfSocketOwners(bool compat) {
  if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
    return absl::FailedPreconditionError("the kernel exposes no BTF (/sys/kernel/btf/vmlinux)");
  }
  if (compat) return LoadVariant(/*compat=*/true);
  // Direct BTF reads and bpf_sock_from_file() (5.11+), else probe reads (5.8+).
  absl::StatusOr<std::unique_ptr<SocketOwners>> owners = LoadVariant(/*compat=*/false);
  if (owners.ok()) return owners;
  absl::StatusOr<std::unique_ptr<SocketOwners>> older = LoadVariant(/*compat=*/true);
  if (older.ok()) return older;
  return absl::Status(older.status().code(),
                      absl::StrCat(older.status().message(),
                                   " (and the 5.11+ variant: ", owners.status().message(), ")"));
}

std::unique_ptr<SocketOwners> NewProcSocketOwners(std::string proc, std::string cgroup2_mount) {
  return std::make_unique<ProcSocketOwners>(std::move(proc), std::move(cgroup2_mount));
}

absl::StatusOr<OwnersMode> ParseOwnersMode(const std::string& text) {
  if (text == "auto") return OwnersMode::kAuto;
  if (text == "bpf") return OwnersMode::kBpf;
  if (text == "proc") return OwnersMode::kProc;
  if (text == "off") return OwnersMode::kOff;
  return absl::InvalidArgumentError(
      absl::StrCat("--socket_owners=", text, ": choose auto, bpf, proc or off"));
}

absl::StatusOr<std::unique_ptr<SocketOwners>> OpenSocketOwners(OwnersMode mode,
                                                               std::string* fallback_reason) {
  switch (mode) {
    case OwnersMode::kOff:
      return nullptr;
    case OwnersMode::kProc:
      return NewProcSocketOwners();
    case OwnersMode::kBpf:
      return OpenBpfSocketOwners();
    case OwnersMode::kAuto:
      break;
  }
  absl::StatusOr<std::unique_ptr<SocketOwners>> bpf = OpenBpfSocketOwners();
  if (bpf.ok()) return bpf;
  if (fallback_reason != nullptr) *fallback_reason = bpf.status().ToString();
  return NewProcSocketOwners();
}

}  // namespace tcpscope::agent
