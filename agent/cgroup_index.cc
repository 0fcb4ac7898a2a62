// A bounded walk of the cgroup2 tree, inode number -> path.
#include "agent/cgroup_index.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"

namespace tcpscope::agent {
namespace {

// mountinfo escapes space, tab, newline and backslash in paths as octal (\040).
std::string Unescape(absl::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const absl::string_view digits = field.substr(i + 1, 3);
      if (digits.size() == 3 && digits[0] >= '0' && digits[0] <= '3' && digits[1] >= '0' &&
          digits[1] <= '7' && digits[2] >= '0' && digits[2] <= '7') {
        out.push_back(
            static_cast<char>((digits[0] - '0') * 64 + (digits[1] - '0') * 8 + (digits[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> Cgroup2MountFromMountinfo(absl::string_view mountinfo) {
  // "36 35 98:0 /root /mnt/point rw,opts shared:1 - cgroup2 cgroup2 rw": the filesystem type
  // follows the "-" separator; the mount point is the fifth field.
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n', absl::SkipEmpty())) {
    const std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    for (size_t i = 6; i + 1 < fields.size(); ++i) {
      if (fields[i] == "-") {
        if (fields[i + 1] == "cgroup2" && fields.size() > 4) return Unescape(fields[4]);
        break;
      }
    }
  }
  return absl::NotFoundError("no cgroup2 filesystem is mounted (cgroup v1 only?)");
}

absl::StatusOr<std::string> FindCgroup2Mount() {
  std::ifstream file("/proc/self/mountinfo");
  if (!file) return absl::UnavailableError("cannot read /proc/self/mountinfo");
  std::stringstream text;
  text << file.rdbuf();
  return Cgroup2MountFromMountinfo(text.str());
}

absl::StatusOr<std::string> Cgroup2Root(const std::string& root) {
  constexpr long kCgroup2SuperMagic = 0x63677270;  // CGROUP2_SUPER_MAGIC, linux/magic.h
  for (const std::string& candidate : {root, absl::StrCat(root, "/unified")}) {
    struct statfs info {};
    if (statfs(candidate.c_str(), &info) == 0 &&
        static_cast<long>(info.f_type) == kCgroup2SuperMagic) {
      return candidate;
    }
  }
  return absl::NotFoundError(
      absl::StrCat("--cgroup_root ", root, " is not a cgroup2 filesystem (nor is its unified/)"));
}

CgroupIndex::CgroupIndex(CgroupIndexOptions options) : options_(std::move(options)) {}

size_t CgroupIndex::size() const {
  absl::MutexLock lock(&mutex_);
  return paths_.size();
}

uint64_t CgroupIndex::walks() const {
  absl::MutexLock lock(&mutex_);
  return walks_;
}

CgroupIndex::Result CgroupIndex::PathOf(uint64_t id, std::string* path) {
  const absl::Time asked = options_.now();
  absl::MutexLock lock(&mutex_);
  auto it = paths_.find(id);
  if (it == paths_.end()) {
    // A walk begun after this call already answered "not there".
    if (last_walk_ >= asked) return Result::kNotFound;
    if (asked - last_walk_ < options_.min_rescan_interval) return Result::kThrottled;
    Rescan();
    it = paths_.find(id);
    if (it == paths_.end()) return Result::kNotFound;
  }
  *path = it->second;
  return Result::kFound;
}

void CgroupIndex::Rescan() {
  last_walk_ = options_.now();
  ++walks_;
  absl::flat_hash_map<uint64_t, std::string> paths;
  struct Pending {
    std::string path;  // relative, "" for the root
    int depth;
  };
  struct stat root_stat;
  if (stat(options_.root.c_str(), &root_stat) != 0) {
    paths_.clear();
    return;
  }
  paths.emplace(root_stat.st_ino, "/");
  std::vector<Pending> stack = {{"", 0}};
  bool truncated = false;
  while (!stack.empty()) {
    Pending dir = std::move(stack.back());
    stack.pop_back();
    const std::string full = options_.root + dir.path;
    DIR* handle = opendir(full.c_str());
    if (handle == nullptr) continue;  // removed meanwhile, or not readable
    while (const dirent* entry = readdir(handle)) {
      const absl::string_view name = entry->d_name;
      if (name == "." || name == "..") continue;
      uint64_t inode = entry->d_ino;
      if (entry->d_type == DT_UNKNOWN) {  // cgroupfs always says; a copy of the tree may not
        struct stat st;
        if (fstatat(dirfd(handle), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (!S_ISDIR(st.st_mode)) continue;
        inode = st.st_ino;
      } else if (entry->d_type != DT_DIR) {
        continue;
      }
      if (paths.size() >= options_.max_cgroups) {
        truncated = true;
        break;
      }
      // kernfs reports the node id (the cgroup id) as d_ino, as stat would.
      std::string path = absl::StrCat(dir.path, "/", name);
      paths.emplace(inode, path);
      if (dir.depth + 1 < options_.max_depth) stack.push_back({std::move(path), dir.depth + 1});
    }
    closedir(handle);
    if (truncated) break;
  }
  if (truncated && !truncation_logged_) {
    truncation_logged_ = true;
    TS_LOG(WARNING) << "the cgroup tree under " << options_.root << " has more than "
                    << options_.max_cgroups << " cgroups; those beyond are not attributed";
  }
  paths_ = std::move(paths);
}

}  // namespace tcpscope::agent
