// Connection ends between replicas in the form the service keeps them (EndRecord): each end one
// fixed-size little-endian record, so that a home replica's fragment for a tuple owner is a copy
// of bytes and the owner's view a decode of them, instead of Connection messages built, sized,
// serialized, parsed and freed end by end (replica.proto's PackedEnds).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "service/host_view.h"

namespace tcpscope::service {

// Layout 1: connection_id, bytes_sent, bytes_received, idle_ms, next_probe_ms,
// first_seen_unix_ns, state_since_unix_ns (u64 each); srtt_us, rttvar_us, send_queue, recv_queue,
// retransmits, keepalive_probes_out, origin, local_address, remote_address (u32 each);
// local_port, remote_port (u16); ipv6, keepalive_enabled, role, state, at_risk (u8). Addresses
// as in EndRecord: IPv4 in network byte order, IPv6 a position in the ipv6_addresses table.
inline constexpr uint32_t kPackedEndVersion = 1;
inline constexpr size_t kPackedEndSize = 7 * 8 + 9 * 4 + 2 * 2 + 5;

// Appends `end` (its origin and IPv6 positions already those of the receiving table).
void AppendPackedEnd(const EndRecord& end, std::string* records);
// The end at `record` (kPackedEndSize bytes), unchecked: see ValidateFragment.
EndRecord ReadPackedEnd(const char* record);

}  // namespace tcpscope::service
