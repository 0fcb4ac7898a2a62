// Definitions and help texts of the CLI's flags. The help text is what `tcpscope help COMMAND`
// prints next to each flag.
#include "cli/flags.h"

#include "absl/flags/flag.h"
#include "tcpscope/v1/event_kinds.h"  // the kinds' names, from the proto

ABSL_FLAG(std::string, service, "127.0.0.1:7700", "tcpscope-service's gRPC address.");
ABSL_FLAG(std::string, token_file, "",
          "File with the bearer token the service demands (its --query_token_file).");
ABSL_FLAG(std::string, o, "table",
          "Output: table (aligned columns) or json (proto3 JSON, proto field names).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10),
          "Deadline of each call (for events --follow: of connecting to the service).");

ABSL_FLAG(std::string, host, "", "Only this host (an agent's --host_name).");
ABSL_FLAG(int64_t, port, 0, "Only connections with this local or remote port (0..65535; 0: any).");
ABSL_FLAG(std::string, address, "",
          "Only connections with this local or remote address: an IPv4/IPv6 address or a CIDR "
          "prefix (10.0.0.0/8, 2001:db8::/32).");

ABSL_FLAG(std::string, state, "",
          "Only this TCP state, as in the metrics: established, syn_sent, syn_recv, fin_wait1, "
          "fin_wait2, time_wait, close, close_wait, last_ack, listen, closing, new_syn_recv.");
ABSL_FLAG(std::string, keepalive, "", "Only connections with keepalive on or off.");
ABSL_FLAG(bool, at_risk, false, "Only connections at risk of being silently dead (any reason).");
ABSL_FLAG(std::string, at_risk_reason, "",
          "Only connections at risk for this reason: idle_no_keepalive, keepalive_probing, "
          "close_wait_stale.");
ABSL_FLAG(bool, half_open, false,
          "Only half-open connection ends: ESTABLISHED while the other end, seen by another "
          "host's agent, is gone (any reason).");
ABSL_FLAG(bool, paired, false,
          "One row per paired connection with both ends side by side (the half-open survivor, "
          "else the client, on the left); the other filters match either end.");
ABSL_FLAG(std::string, half_open_reason, "",
          "Only half-open ends or half_open events for this reason: peer_closed, peer_rebooted, "
          "peer_host_down (each command's help says which).");

ABSL_FLAG(std::string, namespace, "",
          "Only this Kubernetes namespace (of the process holding the socket).");
ABSL_FLAG(std::string, pod, "",
          "Only this Kubernetes pod (its name; add --namespace to be exact).");
ABSL_FLAG(std::string, container, "",
          "Only this container: its name (Docker's, or the container's name in its pod), its id, "
          "or an id prefix of at least 12 characters.");
ABSL_FLAG(std::string, process, "",
          "Only this process: a pid (digits) or a command (exactly, as ps -o comm shows it).");

ABSL_FLAG(int64_t, last, 0,
          "The last N matching events of the service's history (default 20 when neither "
          "--since nor --follow is given; 0 with --follow: live events only).");
ABSL_FLAG(std::string, since, "",
          "History from this moment: a duration ago (30s, 5m, 2h) or an RFC 3339 time "
          "(2024-05-01T10:00:00Z).");
ABSL_FLAG(bool, follow, false,
          "After the history, print live events until Ctrl-C or SIGTERM (exit 0).");
ABSL_FLAG(std::string, type, "",
          "Only these kinds, comma separated: " TCPSCOPE_V1_EVENT_KIND_NAMES ".");
ABSL_FLAG(std::string, reason, "",
          "Only closes with this close reason (fin, reset_sent, reset_received, keepalive_timeout, "
          "keepalive_reset, retransmit_timeout) or handshake failures with this reason (refused, "
          "timeout, reset, unreachable); other matches both.");
ABSL_FLAG(std::string, role, "", "Only this side of connections: client or server.");
