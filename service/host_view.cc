#include "service/host_view.h"

#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "common/unix_time.h"
#include "service/packed_ends.h"

namespace tcpscope::service {

std::shared_ptr<const v1::Origin> OriginTable::Intern(const v1::Origin& origin) {
  auto it = origins_.find(origin);
  if (it != origins_.end()) return *it;
  auto copy = std::make_shared<const v1::Origin>(origin);
  origins_.insert(copy);
  return copy;
}

void OriginTable::Retain(const std::vector<std::shared_ptr<const v1::Origin>>& keep) {
  if (keep.size() == origins_.size()) return;  // every origin is used (each is in keep once)
  decltype(origins_) kept;
  kept.reserve(keep.size());
  for (const auto& origin : keep) kept.insert(origin);
  origins_ = std::move(kept);
}

namespace {

uint32_t Inline(const std::string& address) {
  uint32_t value = 0;
  std::memcpy(&value, address.data(), sizeof(value));
  return value;
}

std::shared_ptr<HostView> NewView(std::shared_ptr<const PairHost> host, uint64_t round,
                                  uint64_t taken_unix_ns, absl::Time received) {
  auto view = std::make_shared<HostView>();
  view->host = std::move(host);
  view->round = round;
  view->taken = TimeFromUnixNanos(taken_unix_ns);
  view->received = received;
  return view;
}

}  // namespace

std::shared_ptr<const HostView> HostView::Build(const v1::Snapshot& snapshot,
                                                const std::vector<v1::AtRiskReason>& at_risk,
                                                std::shared_ptr<const PairHost> host,
                                                uint64_t round, absl::Time received,
                                                OriginTable* origin_table) {
  auto view = NewView(std::move(host), round, snapshot.time_unix_ns(), received);
  view->listeners = snapshot.listeners();
  view->ends.resize(static_cast<size_t>(snapshot.connections_size()));
  // Each entry of the snapshot's origin table is interned once; inline origins (older agents)
  // once per change of origin, as consecutive ends mostly share their process.
  constexpr uint32_t kNoSlot = ~uint32_t{0};
  std::vector<uint32_t> ref_slots(static_cast<size_t>(snapshot.origins_size()), kNoSlot);
  absl::flat_hash_map<const v1::Origin*, uint32_t> slots;
  const v1::Origin* last_origin = nullptr;
  uint32_t last_slot = 0;
  absl::flat_hash_map<std::string, uint32_t> ipv6_slots;
  auto ipv6 = [&](const std::string& address) {
    auto [it, added] = ipv6_slots.try_emplace(address, view->ipv6_addresses.size());
    if (added) {
      std::array<char, 16>& bytes = view->ipv6_addresses.emplace_back();
      std::memcpy(bytes.data(), address.data(), bytes.size());
    }
    return it->second;
  };
  for (int i = 0; i < snapshot.connections_size(); ++i) {
    const v1::Connection& c = snapshot.connections(i);
    EndRecord& end = view->ends[static_cast<size_t>(i)];
    end.connection_id = c.connection_id();
    end.bytes_sent = c.bytes_sent();
    end.bytes_received = c.bytes_received();
    end.idle_ms = c.idle_ms();
    end.next_probe_ms = c.keepalive().next_probe_ms();
    end.first_seen_unix_ns = c.first_seen_unix_ns();
    end.state_since_unix_ns = c.state_since_unix_ns();
    end.srtt_us = c.srtt_us();
    end.rttvar_us = c.rttvar_us();
    end.send_queue = c.send_queue();
    end.recv_queue = c.recv_queue();
    end.retransmits = c.retransmits();
    end.keepalive_probes_out = c.keepalive().probes_out();
    end.keepalive_enabled = c.keepalive().enabled();
    end.role = static_cast<uint8_t>(c.role());
    end.state = static_cast<uint8_t>(c.state());
    end.at_risk = static_cast<uint8_t>(at_risk[static_cast<size_t>(i)]);
    // Ports and address sizes were validated (batch_validator: 4 or 16 bytes, both alike).
    const v1::Endpoints& e = c.endpoints();
    end.local_port = static_cast<uint16_t>(e.local_port());
    end.remote_port = static_cast<uint16_t>(e.remote_port());
    end.ipv6 = e.local_address().size() == 16;
    if (end.ipv6) {
      end.local_address = ipv6(e.local_address());
      end.remote_address = ipv6(e.remote_address());
    } else {
      end.local_address = Inline(e.local_address());
      end.remote_address = Inline(e.remote_address());
    }
    const uint32_t ref = c.origin_ref();  // validated: within the table
    if (ref != 0 && ref_slots[ref - 1] != kNoSlot) {
      end.origin = ref_slots[ref - 1];
      continue;
    }
    const v1::Origin* origin = &SnapshotOrigin(snapshot, c);
    if (origin != last_origin) {
      auto shared = origin_table->Intern(*origin);
      auto [it, added] = slots.try_emplace(shared.get(), view->origins.size());
      if (added) view->origins.push_back(std::move(shared));
      last_origin = origin;
      last_slot = it->second;
    }
    end.origin = last_slot;
    if (ref != 0) ref_slots[ref - 1] = last_slot;
  }
  origin_table->Retain(view->origins);
  return view;
}

std::shared_ptr<const HostView> HostView::Unpack(const v1::PackedEnds& packed,
                                                 std::shared_ptr<const PairHost> host,
                                                 uint64_t round, absl::Time received,
                                                 OriginTable* origin_table) {
  auto view = NewView(std::move(host), round, packed.time_unix_ns(), received);
  const std::string& records = packed.records();
  view->ends.reserve(records.size() / kPackedEndSize);
  for (size_t at = 0; at + kPackedEndSize <= records.size(); at += kPackedEndSize) {
    view->ends.push_back(ReadPackedEnd(records.data() + at));
  }
  const std::string& ipv6 = packed.ipv6_addresses();
  view->ipv6_addresses.resize(ipv6.size() / 16);
  if (!view->ipv6_addresses.empty()) {  // memcpy's pointers must not be null, even for 0 bytes
    std::memcpy(view->ipv6_addresses.data(), ipv6.data(), view->ipv6_addresses.size() * 16);
  }
  view->origins.reserve(static_cast<size_t>(packed.origins_size()));
  for (const v1::Origin& origin : packed.origins()) {
    view->origins.push_back(origin_table->Intern(origin));
  }
  origin_table->Retain(view->origins);
  return view;
}

absl::string_view HostView::LocalAddress(const EndRecord& end) const {
  if (end.ipv6) return {ipv6_addresses[end.local_address].data(), 16};
  return {reinterpret_cast<const char*>(&end.local_address), 4};
}

absl::string_view HostView::RemoteAddress(const EndRecord& end) const {
  if (end.ipv6) return {ipv6_addresses[end.remote_address].data(), 16};
  return {reinterpret_cast<const char*>(&end.remote_address), 4};
}

v1::Connection MakeConnection(const EndRecord& end, const v1::Origin& origin,
                              absl::string_view local_address, absl::string_view remote_address) {
  v1::Connection c;
  c.set_connection_id(end.connection_id);
  *c.mutable_origin() = origin;
  v1::Endpoints* endpoints = c.mutable_endpoints();
  endpoints->set_local_address(local_address.data(), local_address.size());
  endpoints->set_local_port(end.local_port);
  endpoints->set_remote_address(remote_address.data(), remote_address.size());
  endpoints->set_remote_port(end.remote_port);
  c.set_role(end.end_role());
  c.set_state(end.tcp_state());
  if (end.keepalive_enabled || end.keepalive_probes_out != 0 || end.next_probe_ms != 0) {
    v1::KeepaliveState* keepalive = c.mutable_keepalive();
    keepalive->set_enabled(end.keepalive_enabled);
    keepalive->set_probes_out(end.keepalive_probes_out);
    keepalive->set_next_probe_ms(end.next_probe_ms);
  }
  c.set_idle_ms(end.idle_ms);
  c.set_srtt_us(end.srtt_us);
  c.set_rttvar_us(end.rttvar_us);
  c.set_send_queue(end.send_queue);
  c.set_recv_queue(end.recv_queue);
  c.set_bytes_sent(end.bytes_sent);
  c.set_bytes_received(end.bytes_received);
  c.set_retransmits(end.retransmits);
  c.set_first_seen_unix_ns(end.first_seen_unix_ns);
  c.set_state_since_unix_ns(end.state_since_unix_ns);
  return c;
}

size_t HostView::bytes() const {
  return sizeof(HostView) + ends.capacity() * sizeof(EndRecord) +
         origins.capacity() * sizeof(origins[0]) +
         ipv6_addresses.capacity() * sizeof(ipv6_addresses[0]);
}

}  // namespace tcpscope::service
