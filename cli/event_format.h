// Events as table rows: TIME HOST ROLE LOCAL -> REMOTE EVENT DETAILS, where DETAILS holds the
// kind's own fields as key=value (reasons, initiator, lifetime, bytes, probes), then the
// owner: process, pod or container (and the peer's, for half_open).
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "tcpscope/v1/observer.pb.h"

namespace tcpscope::cli {

std::vector<std::string> EventHeader();
// Widths that fit typical IPv4 events, so a streamed table starts aligned.
std::vector<size_t> EventMinWidths();
std::vector<std::string> EventRow(const v1::HostEvent& entry, absl::TimeZone zone);

// The set kind's name as in --type ("handshake_failed"); "unknown" when none is set.
std::string EventKindName(const v1::Event& event);
// "initiator=remote reason=fin lifetime=2.5s sent=100 received=2000 rtt=0.42ms", ...
std::string EventDetails(const v1::Event& event);
// The details of a kind without a format of its own, from its fields by reflection: each set
// field as name=value ("reason=refused syn_retransmits=2 duration=1.0s error=ECONNREFUSED").
std::string FieldDetails(const google::protobuf::Message& kind);

}  // namespace tcpscope::cli
