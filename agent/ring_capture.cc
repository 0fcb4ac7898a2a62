// Writing and reading ring captures.
#include "agent/ring_capture.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "agent/bpf/tcpscope_event.h"

namespace tcpscope::agent {
namespace {

constexpr char kMagic[8] = {'T', 'S', 'R', 'I', 'N', 'G', '1', '\n'};
// No record is larger than a few times the event; a length beyond this is corruption.
constexpr uint32_t kMaxRecord = 1 << 16;

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", strerror(errno)));
}

template <typename T>
bool Write(FILE* file, T value) {
  unsigned char bytes[sizeof(T)];
  for (size_t i = 0; i < sizeof(T); ++i) bytes[i] = static_cast<uint64_t>(value) >> (8 * i);
  return fwrite(bytes, sizeof(bytes), 1, file) == 1;
}

template <typename T>
T Load(const char* data) {
  uint64_t value = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    value |= static_cast<uint64_t>(static_cast<unsigned char>(data[i])) << (8 * i);
  }
  return static_cast<T>(value);
}

// False at a clean end of file (nothing read); an error when only part of `size` is there.
absl::StatusOr<bool> Read(FILE* file, void* out, size_t size, const std::string& path) {
  const size_t got = fread(out, 1, size, file);
  if (got == size) return true;
  if (ferror(file)) return Errno("reading", path);
  if (got == 0) return false;
  return absl::DataLossError(absl::StrCat(path, ": truncated ring capture"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<RingCaptureWriter>> RingCaptureWriter::Create(
    const std::string& path, int64_t monotonic_to_unix_ns) {
  FILE* file = fopen(path.c_str(), "wbe");
  if (file == nullptr) return Errno("cannot create", path);
  auto writer = std::unique_ptr<RingCaptureWriter>(new RingCaptureWriter(file, path));
  if (fwrite(kMagic, sizeof(kMagic), 1, file) != 1 ||
      !Write<uint32_t>(file, sizeof(tcpscope_event)) ||
      !Write<int64_t>(file, monotonic_to_unix_ns)) {
    return Errno("writing", path);
  }
  return writer;
}

RingCaptureWriter::~RingCaptureWriter() { fclose(file_); }

absl::Status RingCaptureWriter::Append(const void* data, size_t size) {
  if (!Write<uint32_t>(file_, static_cast<uint32_t>(size)) ||
      fwrite(data, 1, size, file_) != size) {
    return Errno("writing", path_);
  }
  return absl::OkStatus();
}

absl::Status RingCaptureWriter::Flush() {
  if (fflush(file_) != 0) return Errno("writing", path_);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RingCaptureReader>> RingCaptureReader::Open(
    const std::string& path) {
  FILE* file = fopen(path.c_str(), "rbe");
  if (file == nullptr) return Errno("cannot open", path);
  char header[sizeof(kMagic) + 4 + 8];
  absl::StatusOr<bool> read = Read(file, header, sizeof(header), path);
  if (!read.ok() || !*read || std::memcmp(header, kMagic, sizeof(kMagic)) != 0) {
    fclose(file);
    if (!read.ok()) return read.status();
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a tcpscope ring capture"));
  }
  const uint32_t record_size = Load<uint32_t>(header + sizeof(kMagic));
  if (record_size != sizeof(tcpscope_event)) {
    fclose(file);
    return absl::InvalidArgumentError(
        absl::StrCat(path, " holds records of ", record_size, " bytes; this agent's are ",
                     sizeof(tcpscope_event), " (recorded by another version)"));
  }
  const auto offset = Load<int64_t>(header + sizeof(kMagic) + 4);
  return std::unique_ptr<RingCaptureReader>(new RingCaptureReader(file, path, offset));
}

RingCaptureReader::~RingCaptureReader() { fclose(file_); }

absl::StatusOr<std::optional<std::string>> RingCaptureReader::Next() {
  char length_bytes[4];
  absl::StatusOr<bool> read = Read(file_, length_bytes, sizeof(length_bytes), path_);
  if (!read.ok()) return read.status();
  if (!*read) return std::nullopt;
  const uint32_t length = Load<uint32_t>(length_bytes);
  if (length > kMaxRecord) {
    return absl::DataLossError(absl::StrCat(path_, ": record of ", length, " bytes"));
  }
  std::string record(length, '\0');
  read = Read(file_, record.data(), length, path_);
  if (!read.ok()) return read.status();
  if (!*read && length > 0) {
    return absl::DataLossError(absl::StrCat(path_, ": truncated ring capture"));
  }
  return record;
}

}  // namespace tcpscope::agent
