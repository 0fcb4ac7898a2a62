#include "service/packed_ends.h"

#include <bit>
#include <cstring>
#include <type_traits>

namespace tcpscope::service {

static_assert(std::endian::native == std::endian::little,
              "packed ends are little-endian, copied with memcpy");

namespace {

// Every field of the layout, in its order: one list for writing and reading, so that the two
// cannot disagree.
template <typename Record, typename Field>
constexpr void ForEachField(Record& end, Field field) {
  field(end.connection_id);
  field(end.bytes_sent);
  field(end.bytes_received);
  field(end.idle_ms);
  field(end.next_probe_ms);
  field(end.first_seen_unix_ns);
  field(end.state_since_unix_ns);
  field(end.srtt_us);
  field(end.rttvar_us);
  field(end.send_queue);
  field(end.recv_queue);
  field(end.retransmits);
  field(end.keepalive_probes_out);
  field(end.origin);
  field(end.local_address);
  field(end.remote_address);
  field(end.local_port);
  field(end.remote_port);
  field(end.ipv6);
  field(end.keepalive_enabled);
  field(end.role);
  field(end.state);
  field(end.at_risk);
}

constexpr size_t LayoutSize() {
  size_t size = 0;
  EndRecord end;
  ForEachField(end, [&size](auto& field) { size += sizeof(field); });
  return size;
}
static_assert(LayoutSize() == kPackedEndSize);
static_assert(sizeof(bool) == 1);

}  // namespace

void AppendPackedEnd(const EndRecord& end, std::string* records) {
  const size_t at = records->size();
  records->resize(at + kPackedEndSize);
  char* out = records->data() + at;
  ForEachField(end, [&out](const auto& field) {
    std::memcpy(out, &field, sizeof(field));
    out += sizeof(field);
  });
}

EndRecord ReadPackedEnd(const char* record) {
  EndRecord end;
  ForEachField(end, [&record](auto& field) {
    using Field = std::remove_reference_t<decltype(field)>;
    if constexpr (std::is_same_v<Field, bool>) {
      field = *record != 0;  // any other byte than 0 would not be a valid bool
    } else {
      std::memcpy(&field, record, sizeof(field));
    }
    record += sizeof(field);
  });
  return end;
}

}  // namespace tcpscope::service
