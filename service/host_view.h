// A host's latest snapshot as the service keeps it: compact, immutable, shared by the read path
// and the pair index. Each connection end is one fixed-size record (about 100 bytes, where the
// snapshot's protobuf message with its origin costs several times that); an end's origin, which
// the ends of one process share, is interned per host; IPv6 addresses sit in a per-view table.
// Listings turn records back into v1::Connection messages, equal to what the agent sent.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/shared_origins.h"
#include "tcpscope/v1/events.pb.h"
#include "tcpscope/v1/observer.pb.h"
#include "tcpscope/v1/replica.pb.h"

namespace tcpscope::service {

struct PairHost;

// One connection end of a snapshot. Addresses of 4 bytes are held inline (in network byte
// order, as sent), addresses of 16 bytes as an index into the view's IPv6 table.
struct EndRecord {
  uint64_t connection_id = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t idle_ms = 0;
  uint64_t next_probe_ms = 0;
  uint64_t first_seen_unix_ns = 0;
  uint64_t state_since_unix_ns = 0;
  uint32_t srtt_us = 0;
  uint32_t rttvar_us = 0;
  uint32_t send_queue = 0;
  uint32_t recv_queue = 0;
  uint32_t retransmits = 0;
  uint32_t keepalive_probes_out = 0;
  uint32_t origin = 0;  // index in HostView::origins
  uint32_t local_address = 0;
  uint32_t remote_address = 0;
  uint16_t local_port = 0;
  uint16_t remote_port = 0;
  bool ipv6 = false;
  bool keepalive_enabled = false;
  uint8_t role = 0;     // v1::Role
  uint8_t state = 0;    // v1::TcpState
  uint8_t at_risk = 0;  // v1::AtRiskReason, classified when the view was built

  v1::TcpState tcp_state() const { return static_cast<v1::TcpState>(state); }
  v1::Role end_role() const { return static_cast<v1::Role>(role); }
  v1::AtRiskReason at_risk_reason() const { return static_cast<v1::AtRiskReason>(at_risk); }
};

// The v1::Connection an end record was made from.
v1::Connection MakeConnection(const EndRecord& end, const v1::Origin& origin,
                              absl::string_view local_address, absl::string_view remote_address);

// The distinct origins of a host's ends, shared across its successive views so that a
// process's origin is one allocation however many ends and snapshots it has.
class OriginTable {
 public:
  // The table's copy of `origin`, added when new.
  std::shared_ptr<const v1::Origin> Intern(const v1::Origin& origin);
  // Keeps only the origins some end of `keep` uses (called after each new view).
  void Retain(const std::vector<std::shared_ptr<const v1::Origin>>& keep);
  size_t size() const { return origins_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(const v1::Origin& origin) const { return OriginHash()(origin); }
    size_t operator()(const std::shared_ptr<const v1::Origin>& origin) const {
      return OriginHash()(*origin);
    }
  };
  struct Eq {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return OriginEq()(Deref(a), Deref(b));
    }
    static const v1::Origin& Deref(const v1::Origin& origin) { return origin; }
    static const v1::Origin& Deref(const std::shared_ptr<const v1::Origin>& origin) {
      return *origin;
    }
  };
  absl::flat_hash_set<std::shared_ptr<const v1::Origin>, Hash, Eq> origins_;
};

// One applied snapshot of a host.
struct HostView {
  std::shared_ptr<const PairHost> host;  // its host, for the pair index
  uint64_t round = 0;                    // the host's snapshot number, from 1
  absl::Time taken;                      // the agent's time of the snapshot
  absl::Time received;                   // when the service applied it
  uint32_t listeners = 0;
  std::vector<EndRecord> ends;  // in the snapshot's order
  std::vector<std::shared_ptr<const v1::Origin>> origins;
  std::vector<std::array<char, 16>> ipv6_addresses;

  // `at_risk`: each connection's reason, in order. Origins are interned into `origins`.
  static std::shared_ptr<const HostView> Build(const v1::Snapshot& snapshot,
                                               const std::vector<v1::AtRiskReason>& at_risk,
                                               std::shared_ptr<const PairHost> host, uint64_t round,
                                               absl::Time received, OriginTable* origin_table);
  // The view of a peer replica's packed ends (replica.proto), as checked by ValidateFragment.
  static std::shared_ptr<const HostView> Unpack(const v1::PackedEnds& packed,
                                                std::shared_ptr<const PairHost> host,
                                                uint64_t round, absl::Time received,
                                                OriginTable* origin_table);

  const v1::Origin& OriginOf(const EndRecord& end) const { return *origins[end.origin]; }
  // The end's addresses, as sent (4 or 16 bytes). Views into the record or the view.
  absl::string_view LocalAddress(const EndRecord& end) const;
  absl::string_view RemoteAddress(const EndRecord& end) const;
  // The end as the agent sent it.
  v1::Connection ConnectionOf(const EndRecord& end) const {
    return MakeConnection(end, OriginOf(end), LocalAddress(end), RemoteAddress(end));
  }
  // Memory held by the view (records and tables, not the shared origins).
  size_t bytes() const;
};

}  // namespace tcpscope::service
