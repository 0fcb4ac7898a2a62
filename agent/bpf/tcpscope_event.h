/* The record the eBPF program writes to the ring buffer, shared by kernel and user code.
 * Its enums carry the numbers of the tcpscope.v1 protos (Role, CloseInitiator, CloseReason,
 * HandshakeFailureReason), so user space converts without a table. */
#ifndef TCPSCOPE_AGENT_BPF_TCPSCOPE_EVENT_H_
#define TCPSCOPE_AGENT_BPF_TCPSCOPE_EVENT_H_

#include <linux/types.h>

/* The event kinds this program emits, as KIND(NAME, NUMBER): tcpscope.v1.EventKind's
 * EVENT_KIND_<NAME> and its number, so a record's kind is the proto's EventKind. User code
 * static_asserts each against the proto and must decode each (agent/bpf_event_decoder.cc). */
#define TCPSCOPE_EVENT_KINDS(KIND) \
  KIND(HANDSHAKE, 1)               \
  KIND(HANDSHAKE_FAILED, 2)        \
  KIND(CLOSE, 3)                   \
  KIND(KEEPALIVE_PROBE, 4)         \
  KIND(KEEPALIVE_TIMEOUT, 5)       \
  KIND(KEEPALIVE_ANSWERED, 6)

#define TCPSCOPE_EVENT_ENUMERATOR(name, number) TCPSCOPE_EVENT_##name = number,
enum tcpscope_event_kind {
  TCPSCOPE_EVENT_KINDS(TCPSCOPE_EVENT_ENUMERATOR)
  /* Not an event: the moment this end sent its FIN (entered FIN_WAIT1), and the process that
   * closed it. User space dates the snapshots' FIN_WAIT1 state by it and names the process of
   * ends no file holds any more (agent/fin_times.h). Only time_ns, cookie, pid, cgroup_id and
   * comm are set. Numbered above every EventKind; 255 also makes every __u8 a value of this
   * enum, so user code may switch over a record's kind as one. */
  TCPSCOPE_EVENT_FIN_SENT = 255,
  /* Not an event: this end, already closed, answered the segment it was handling with an RST
   * (cookie and time_ns only). It follows the end's close record when the kernel reset the end
   * itself on data that arrived after the application shut reading down (TcpExtTCPAbortOnData):
   * tcp_reset fired tcp_receive_reset although this end is the one that sent the RST. */
  TCPSCOPE_EVENT_RESET_ANSWERED = 254,
};
#undef TCPSCOPE_EVENT_ENUMERATOR

/* The tcpscope.v1 enum numbers (static_asserted against the protos in user code). */
enum tcpscope_role {
  TCPSCOPE_ROLE_UNKNOWN = 0,
  TCPSCOPE_ROLE_CLIENT = 1,
  TCPSCOPE_ROLE_SERVER = 2
};

enum tcpscope_initiator {
  TCPSCOPE_INITIATOR_NONE = 0, /* not decided yet */
  TCPSCOPE_INITIATOR_LOCAL = 1,
  TCPSCOPE_INITIATOR_REMOTE = 2,
  TCPSCOPE_INITIATOR_SIMULTANEOUS = 3,
  TCPSCOPE_INITIATOR_UNKNOWN = 4,
};

enum tcpscope_close_reason {
  TCPSCOPE_REASON_FIN = 1,
  TCPSCOPE_REASON_RESET_SENT = 2,
  TCPSCOPE_REASON_RESET_RECEIVED = 3,
  TCPSCOPE_REASON_KEEPALIVE_TIMEOUT = 4,
  TCPSCOPE_REASON_KEEPALIVE_RESET = 5,
  TCPSCOPE_REASON_RETRANSMIT_TIMEOUT = 6,
  TCPSCOPE_REASON_OTHER = 7,
};

enum tcpscope_failure_reason {
  TCPSCOPE_FAILURE_REFUSED = 1,
  TCPSCOPE_FAILURE_TIMEOUT = 2,
  TCPSCOPE_FAILURE_RESET = 3,
  TCPSCOPE_FAILURE_UNREACHABLE = 4,
  TCPSCOPE_FAILURE_OTHER = 5,
};

/* flags */
#define TCPSCOPE_FLAG_DURATION_KNOWN 0x1 /* duration_ns is meaningful */
/* A close with reason RESET_RECEIVED whose RST came while reading was shut down: if a
 * RESET_ANSWERED record for its cookie follows, this end sent the RST (reason RESET_SENT). */
#define TCPSCOPE_FLAG_RESET_MAYBE_SENT 0x2

/* Indexes of the per-CPU drop counters. */
enum tcpscope_drop {
  TCPSCOPE_DROP_RINGBUF = 0,     /* event lost: ring buffer full */
  TCPSCOPE_DROP_SOCK_MAP = 1,    /* event lost: its socket untracked, the socket map full */
  TCPSCOPE_DROP_FIN_RECORD = 2,  /* FIN record (not an event) lost: ring or socket map full */
  TCPSCOPE_DROP_COUNT = 3,
};

struct tcpscope_event {
  __u64 time_ns; /* CLOCK_MONOTONIC */
  __u64 cookie;  /* socket cookie, as sock_diag's idiag_cookie */
  __u64 cgroup_id;
  __u64 duration_ns; /* handshake: its duration; close: lifetime */
  __u64 bytes_acked;
  __u64 bytes_received;
  __u64 idle_ms; /* keepalive probe: idle time before it */
  __u32 netns_ino;
  __u32 pid; /* 0 when the kernel context does not tell */
  __u32 segs_out;
  __u32 segs_in;
  __u32 total_retrans;
  __u32 srtt_us;
  __u32 keepalive_idle_s; /* keepalive timeout: effective settings */
  __u32 keepalive_intvl_s;
  __u32 keepalive_count;
  __u16 family; /* AF_INET or AF_INET6 */
  __u16 sport;  /* host byte order */
  __u16 dport;
  __u8 kind;
  __u8 role;
  __u8 initiator;
  __u8 reason; /* CloseReason, or HandshakeFailureReason for handshake_failed */
  __u8 last_state;
  __u8 probes; /* keepalive probes out; SYN retransmits for handshake_failed */
  __u8 error;  /* sk_err at the end */
  __u8 flags;
  __u8 saddr[16];
  __u8 daddr[16];
  char comm[16];
};

#endif /* TCPSCOPE_AGENT_BPF_TCPSCOPE_EVENT_H_ */
