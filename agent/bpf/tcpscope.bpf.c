/* tcpscope's kernel side: turns TCP tracepoints into exact lifecycle events.
 *
 * sock:inet_sock_set_state drives everything: per socket it records when the handshake
 * started and who owns it; at CLOSE it classifies the end from sk_err, resets seen and whether
 * the keepalive timer is running on this CPU, and which side left ESTABLISHED first from the
 * state it closes from. Of the ~10 transitions of a connection, those that need nothing
 * (FIN_WAIT2, CLOSE_WAIT, CLOSING, ...) return before any map operation.
 * tcp:tcp_receive_reset/tcp_send_reset mark resets (an RST received while keepalive probes are out
 * means the peer forgot the connection: it rebooted). timer:timer_expire_entry/exit around
 * tcp_keepalive_timer show each probe (icsk_probes_out grows) and answered probes (it fell back to
 * 0 since the last run). All attach as BTF tracepoints (tp_btf): no kprobes or fentry. */
// clang-format off: the kernel types must come before libbpf's headers, which use them.
#include "kernel_types.h"
// clang-format on

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "tcpscope_event.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

#define EEXIST 17
#define EPIPE 32
#define ENETUNREACH 101
#define ECONNRESET 104
#define ETIMEDOUT 110
#define ECONNREFUSED 111
#define EHOSTUNREACH 113

#define SOCK_KEEPOPEN 3 /* bit in sk_flags */
#define RCV_SHUTDOWN 1  /* bit in sk_shutdown */

enum {
  TCP_ESTABLISHED = 1,
  TCP_SYN_SENT,
  TCP_SYN_RECV,
  TCP_FIN_WAIT1,
  TCP_FIN_WAIT2,
  TCP_TIME_WAIT,
  TCP_CLOSE,
  TCP_CLOSE_WAIT,
  TCP_LAST_ACK,
  TCP_LISTEN,
  TCP_CLOSING,
};

/* Set by user space before load. */
const volatile __u32 target_netns = 0; /* 0: every namespace */

extern unsigned long CONFIG_HZ __kconfig __weak;
extern const void tcp_keepalive_timer __ksym __weak;

#define SOCK_FLAG_RST_SENT 0x1
#define SOCK_FLAG_RST_RECEIVED 0x2
#define SOCK_FLAG_RST_IN_PROBE 0x4
/* The "received" RST came while this end's reading was shut down: Linux resets such an end
 * itself through tcp_reset when data arrives (TcpExtTCPAbortOnData), and sends the RST after. */
#define SOCK_FLAG_RST_AFTER_RCV_SHUTDOWN 0x8

struct sock_info {
  __u64 cookie;
  __u64 start_ns;       /* connect(), or a server end's ESTABLISHED; 0 if before attach */
  __u64 established_ns; /* 0: established before the agent attached */
  __u64 cgroup_id;
  __u32 pid;
  __u8 role;
  __u8 flags;
  __u8 last_probes; /* icsk_probes_out after the last keepalive timer run */
  __u16 sport;      /* the port is released before the CLOSE transition is traced */
  char comm[16];
};

/* Preallocated: inserting and deleting two entries per connection from per-CPU free lists cost
 * ~20 % less BPF time per run than allocating them (BPF_F_NO_PREALLOC), for ~136 bytes of kernel
 * memory per possible entry held from load (35 MB at 262144). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 262144); /* resized by user space */
  __type(key, __u64);          /* struct sock * */
  __type(value, struct sock_info);
} socks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 8 << 20); /* resized by user space */
} events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, TCPSCOPE_DROP_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} drops SEC(".maps");

/* The keepalive timer running on this CPU (timers do not nest on one CPU). */
struct keepalive_run {
  __u64 timer;
  __u64 sk;
  __u8 probes_before;
  __u8 closed; /* the socket was killed during this run */
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct keepalive_run);
} keepalive_runs SEC(".maps");

/* When a socket last came into being in a watched namespace (connect() or listen(), the only
 * ways one enters the TCP hash tables), per CPU: a namespace that was empty at a snapshot and has
 * seen no birth since is empty still, and user space need not walk the hash tables for it. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} births SEC(".maps");

static __always_inline void note_birth(__u64 now) {
  __u32 zero = 0;
  __u64 *last = bpf_map_lookup_elem(&births, &zero);
  if (last) *last = now;
}

static __always_inline void count_drops(__u32 index, __u64 count) {
  __u64 *counter = bpf_map_lookup_elem(&drops, &index);
  if (counter) __sync_fetch_and_add(counter, count);
}

static __always_inline void count_drop(__u32 index) { count_drops(index, 1); }

static __always_inline __u32 netns_of(const struct sock *sk) {
  return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* TCP, in the watched namespace. For a tracepoint's own socket argument (a BTF pointer) the
 * fields load directly, which is much cheaper than bpf_probe_read on this hot path. */
static __always_inline bool wanted_arg(const struct sock *sk) {
  if (BPF_CORE_READ_BITFIELD(sk, sk_protocol) != IPPROTO_TCP) return false;
  return target_netns == 0 || sk->__sk_common.skc_net.net->ns.inum == target_netns;
}

/* The same for a socket pointer derived by arithmetic (the keepalive timer's container). */
static __always_inline bool wanted(const struct sock *sk) {
  if (BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol) != IPPROTO_TCP) return false;
  return target_netns == 0 || netns_of(sk) == target_netns;
}

static __always_inline __u64 hz(void) { return CONFIG_HZ ? CONFIG_HZ : 250; }

static __always_inline void remember_process(struct sock_info *info) {
  info->pid = bpf_get_current_pid_tgid() >> 32;
  info->cgroup_id = bpf_get_current_cgroup_id();
  bpf_get_current_comm(info->comm, sizeof(info->comm));
}

/* The kernel's adaptive notification: the consumer is woken only by a record written after it
 * had read everything before it, and otherwise reads in batches on its own clock (an idle agent
 * sleeps until the next record; agent/ebpf_source.cc). */
static __always_inline void submit(struct tcpscope_event *event) { bpf_ringbuf_submit(event, 0); }

/* Tells user space when an end sent its FIN, and which process closed it (not an event; lost on a
 * full ring, counted apart: the snapshot then dates the state itself, later, and a TIME_WAIT end
 * it never saw owned stays without a process). */
static __always_inline void fin_sent(const struct sock_info *info, __u64 now) {
  struct tcpscope_event *event = bpf_ringbuf_reserve(&events, sizeof(*event), 0);
  if (!event) {
    count_drop(TCPSCOPE_DROP_FIN_RECORD);
    return;
  }
  __builtin_memset(event, 0, sizeof(*event));
  event->kind = TCPSCOPE_EVENT_FIN_SENT;
  event->time_ns = now;
  event->cookie = info->cookie;
  event->pid = info->pid;
  event->cgroup_id = info->cgroup_id;
  __builtin_memcpy(event->comm, info->comm, sizeof(event->comm));
  submit(event);
}

/* Reads a socket field: directly for a tracepoint's own (BTF, trusted) socket argument, through
 * bpf_probe_read for a pointer derived by arithmetic. `trusted` is a constant at every inlined
 * call, so only one branch is compiled in. */
#define SK_READ(trusted, sk, field) ((trusted) ? (sk)->field : BPF_CORE_READ(sk, field))

static __always_inline struct tcpscope_event *new_event(const struct sock *sk, bool trusted,
                                                        const struct sock_info *info, __u8 kind,
                                                        __u64 now) {
  struct tcpscope_event *event = bpf_ringbuf_reserve(&events, sizeof(*event), 0);
  if (!event) {
    count_drop(TCPSCOPE_DROP_RINGBUF);
    return 0;
  }
  __builtin_memset(event, 0, sizeof(*event));
  event->kind = kind;
  event->time_ns = now;
  event->netns_ino = trusted ? sk->__sk_common.skc_net.net->ns.inum : netns_of(sk);
  event->family = SK_READ(trusted, sk, __sk_common.skc_family);
  event->sport = SK_READ(trusted, sk, __sk_common.skc_num);
  event->dport = bpf_ntohs(SK_READ(trusted, sk, __sk_common.skc_dport));
  if (event->family == AF_INET) {
    __be32 saddr = SK_READ(trusted, sk, __sk_common.skc_rcv_saddr);
    __be32 daddr = SK_READ(trusted, sk, __sk_common.skc_daddr);
    __builtin_memcpy(event->saddr, &saddr, 4);
    __builtin_memcpy(event->daddr, &daddr, 4);
  } else {
    /* The whole 16 bytes: BPF_CORE_READ_INTO would size the read by one array element. */
    bpf_core_read(event->saddr, sizeof(event->saddr), &sk->__sk_common.skc_v6_rcv_saddr);
    bpf_core_read(event->daddr, sizeof(event->daddr), &sk->__sk_common.skc_v6_daddr);
  }
  if (info) {
    event->cookie = info->cookie;
    event->role = info->role;
    event->pid = info->pid;
    event->cgroup_id = info->cgroup_id;
    __builtin_memcpy(event->comm, info->comm, sizeof(event->comm));
    if (!event->sport) event->sport = info->sport;
  }
  return event;
}

static __always_inline void fill_stats(struct tcpscope_event *event, struct sock *sk) {
  /* A tcp_sock BTF pointer, so the fields load directly (a cast would be rejected). */
  struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
  if (!tp) return;
  event->bytes_acked = tp->bytes_acked;
  event->bytes_received = tp->bytes_received;
  event->segs_out = tp->segs_out;
  event->segs_in = tp->segs_in;
  event->total_retrans = tp->total_retrans;
  event->srtt_us = tp->srtt_us >> 3;
}

static __always_inline __u8 probes_out(const struct sock *sk) {
  const struct inet_connection_sock *icsk = (const struct inet_connection_sock *)sk;
  return BPF_CORE_READ_BITFIELD_PROBED(icsk, icsk_probes_out);
}

static __always_inline __u8 failure_reason(int err) {
  switch (err) {
    case ECONNREFUSED:
      return TCPSCOPE_FAILURE_REFUSED;
    case ETIMEDOUT:
      return TCPSCOPE_FAILURE_TIMEOUT;
    case ECONNRESET:
    case EPIPE:
      return TCPSCOPE_FAILURE_RESET;
    case EHOSTUNREACH:
    case ENETUNREACH:
      return TCPSCOPE_FAILURE_UNREACHABLE;
    default:
      return TCPSCOPE_FAILURE_OTHER;
  }
}

static __always_inline bool is_timeout_error(int err) {
  return err == ETIMEDOUT || err == EHOSTUNREACH || err == ENETUNREACH;
}

/* Effective keepalive settings: the socket's own, else its namespace's sysctls. */
static __always_inline void fill_keepalive_settings(struct tcpscope_event *event,
                                                    const struct sock *sk) {
  const struct tcp_sock *tp = (const struct tcp_sock *)sk;
  struct net *net = BPF_CORE_READ(sk, __sk_common.skc_net.net);
  __u64 idle = BPF_CORE_READ(tp, keepalive_time);
  __u64 intvl = BPF_CORE_READ(tp, keepalive_intvl);
  __u32 count = BPF_CORE_READ_BITFIELD_PROBED(tp, keepalive_probes);
  if (!idle) idle = BPF_CORE_READ(net, ipv4.sysctl_tcp_keepalive_time);
  if (!intvl) intvl = BPF_CORE_READ(net, ipv4.sysctl_tcp_keepalive_intvl);
  if (!count) {
    struct netns_ipv4 *ipv4 = &net->ipv4;
    count = BPF_CORE_READ_BITFIELD_PROBED(ipv4, sysctl_tcp_keepalive_probes);
  }
  event->keepalive_idle_s = idle / hz();
  event->keepalive_intvl_s = intvl / hz();
  event->keepalive_count = count;
}

static __always_inline bool in_keepalive_run(const struct sock *sk) {
  __u32 zero = 0;
  struct keepalive_run *run = bpf_map_lookup_elem(&keepalive_runs, &zero);
  if (!run || run->sk != (__u64)sk) return false;
  run->closed = 1;
  return true;
}

/* Reports keepalive probes info->last_probes+1 .. `probes`. Normally one, from the timer's exit;
 * more only if an exit was not seen, so the count stays exact either way. */
static __always_inline void report_probes(const struct sock *sk, bool trusted,
                                          struct sock_info *info, __u8 probes, __u64 idle_ms,
                                          __u64 now) {
  for (int i = 0; i < 8 && info->last_probes < probes; ++i) {
    info->last_probes++;
    struct tcpscope_event *event =
        new_event(sk, trusted, info, TCPSCOPE_EVENT_KEEPALIVE_PROBE, now);
    if (!event) continue;
    event->probes = info->last_probes;
    event->idle_ms = info->last_probes == probes ? idle_ms : 0;
    submit(event);
  }
  info->last_probes = probes;
}

/* Which side left ESTABLISHED first, from the state a socket closes from: each closing path
 * passes through its own last state (FIN_WAIT1/2: our FIN first, CLOSE_WAIT/LAST_ACK: the peer's,
 * CLOSING: both at once), so no earlier transition needs to be recorded. */
static __always_inline __u8 initiator_of(int oldstate) {
  switch (oldstate) {
    case TCP_FIN_WAIT1:
    case TCP_FIN_WAIT2:
      return TCPSCOPE_INITIATOR_LOCAL;
    case TCP_CLOSE_WAIT:
    case TCP_LAST_ACK:
      return TCPSCOPE_INITIATOR_REMOTE;
    case TCP_CLOSING:
      return TCPSCOPE_INITIATOR_SIMULTANEOUS;
    default:
      return TCPSCOPE_INITIATOR_NONE;
  }
}

static __always_inline void on_close(const struct sock *sk, struct sock_info *info, int oldstate,
                                     __u64 now) {
  int err = sk->sk_err;
  if (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV) {
    struct tcpscope_event *event = new_event(sk, true, info, TCPSCOPE_EVENT_HANDSHAKE_FAILED, now);
    if (!event) return;
    event->reason = failure_reason(err);
    event->error = err;
    event->last_state = oldstate;
    const struct inet_connection_sock *icsk = (const struct inet_connection_sock *)sk;
    event->probes = BPF_CORE_READ_BITFIELD_PROBED(icsk, icsk_retransmits);
    if (info->start_ns) {
      event->duration_ns = now - info->start_ns;
      event->flags |= TCPSCOPE_FLAG_DURATION_KNOWN;
    }
    submit(event);
    return;
  }

  __u8 reason;
  __u8 flags = 0;
  __u8 initiator = initiator_of(oldstate);
  bool keepalive_timeout = false;
  if (is_timeout_error(err) && in_keepalive_run(sk)) {
    reason = TCPSCOPE_REASON_KEEPALIVE_TIMEOUT;
    keepalive_timeout = true;
    if (!initiator) initiator = TCPSCOPE_INITIATOR_LOCAL;
  } else if (info->flags & SOCK_FLAG_RST_RECEIVED || err == ECONNRESET || err == EPIPE) {
    reason = info->flags & SOCK_FLAG_RST_IN_PROBE ? TCPSCOPE_REASON_KEEPALIVE_RESET
                                                  : TCPSCOPE_REASON_RESET_RECEIVED;
    if (!initiator) initiator = TCPSCOPE_INITIATOR_REMOTE;
    if (reason == TCPSCOPE_REASON_RESET_RECEIVED && info->flags & SOCK_FLAG_RST_AFTER_RCV_SHUTDOWN)
      flags |= TCPSCOPE_FLAG_RESET_MAYBE_SENT;
  } else if (is_timeout_error(err)) {
    reason = TCPSCOPE_REASON_RETRANSMIT_TIMEOUT;
    if (!initiator) initiator = TCPSCOPE_INITIATOR_LOCAL;
  } else if (info->flags & SOCK_FLAG_RST_SENT || oldstate == TCP_ESTABLISHED ||
             oldstate == TCP_CLOSE_WAIT) {
    /* No orderly path leaves ESTABLISHED or CLOSE_WAIT straight for CLOSE: an abort
     * (SO_LINGER 0, unread data at close), which sends an RST just after this transition. */
    reason = TCPSCOPE_REASON_RESET_SENT;
    if (!initiator) initiator = TCPSCOPE_INITIATOR_LOCAL;
  } else {
    reason = TCPSCOPE_REASON_FIN;
    if (!initiator) initiator = TCPSCOPE_INITIATOR_UNKNOWN;
  }

  if (keepalive_timeout) {
    report_probes(sk, true, info, probes_out(sk), 0, now);
    struct tcpscope_event *event = new_event(sk, true, info, TCPSCOPE_EVENT_KEEPALIVE_TIMEOUT, now);
    if (event) {
      event->probes = probes_out(sk);
      event->error = err;
      event->initiator = initiator;
      fill_keepalive_settings(event, sk);
      submit(event);
    }
  }
  struct tcpscope_event *event = new_event(sk, true, info, TCPSCOPE_EVENT_CLOSE, now);
  if (!event) return;
  event->initiator = initiator;
  event->reason = reason;
  event->flags = flags;
  event->error = err;
  event->last_state = oldstate;
  event->probes = probes_out(sk);
  if (info->established_ns) {
    event->duration_ns = now - info->established_ns;
    event->flags |= TCPSCOPE_FLAG_DURATION_KNOWN;
  }
  fill_stats(event, (struct sock *)sk);
  submit(event);
}

/* State of a socket first seen after it was created (it existed before the agent attached).
 * Null when the map is full: the caller counts the events that costs. */
static __always_inline struct sock_info *adopt(const struct sock *sk, __u64 cookie) {
  __u64 key = (__u64)sk;
  struct sock_info fresh = {};
  fresh.cookie = cookie;
  fresh.sport = BPF_CORE_READ(sk, __sk_common.skc_num);
  /* Failing, it either exists already or there is no room: the lookup tells. */
  bpf_map_update_elem(&socks, &key, &fresh, BPF_NOEXIST);
  return bpf_map_lookup_elem(&socks, &key);
}

/* The SYN-ACK to ACK time of a server end entering ESTABLISHED: the first RTT sample, taken just
 * before. */
static __always_inline void server_handshake_duration(struct tcpscope_event *event,
                                                      struct sock *sk) {
  struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
  if (!tp) return;
  event->duration_ns = (__u64)(tp->srtt_us >> 3) * 1000;
  event->flags |= TCPSCOPE_FLAG_DURATION_KNOWN;
}

/* A listener's child established: its state, and its handshake event. False if the socket has
 * state already (a simultaneous open, SYN_SENT to SYN_RECV: a client), for the common path. */
static __always_inline bool server_established(struct sock *sk, __u64 key) {
  struct sock_info fresh = {};
  fresh.cookie = bpf_get_socket_cookie(sk);
  fresh.start_ns = bpf_ktime_get_ns();
  fresh.established_ns = fresh.start_ns;
  fresh.sport = sk->__sk_common.skc_num;
  fresh.role = TCPSCOPE_ROLE_SERVER; /* created in softirq: the owner is known at accept/close */
  /* NOEXIST: a simultaneous open (SYN_SENT, SYN_RECV, ESTABLISHED) keeps its client state. */
  /* Untracked (no room), its handshake still goes from `fresh`; its close counts its loss. */
  if (bpf_map_update_elem(&socks, &key, &fresh, BPF_NOEXIST) == -EEXIST) return false;
  struct tcpscope_event *event =
      new_event(sk, true, &fresh, TCPSCOPE_EVENT_HANDSHAKE, fresh.start_ns);
  if (!event) return true;
  server_handshake_duration(event, sk);
  submit(event);
  return true;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_set_state, struct sock *sk, int oldstate, int newstate) {
  /* Only these transitions do anything; the others return before reading the socket. */
  switch (newstate) {
    case TCP_SYN_SENT:
    case TCP_SYN_RECV:
    case TCP_ESTABLISHED:
    case TCP_FIN_WAIT1:
    case TCP_LAST_ACK:
      break;
    case TCP_CLOSE:
      if (oldstate == TCP_LISTEN || oldstate == TCP_CLOSE) return 0;
      break;
    case TCP_LISTEN:
      if (wanted_arg(sk)) note_birth(bpf_ktime_get_ns());
      return 0;
    default:
      return 0;
  }
  if (!wanted_arg(sk)) return 0;
  __u64 key = (__u64)sk;

  if (newstate == TCP_SYN_SENT) {
    struct sock_info fresh = {};
    fresh.cookie = bpf_get_socket_cookie(sk);
    fresh.start_ns = bpf_ktime_get_ns();
    note_birth(fresh.start_ns);
    fresh.sport = sk->__sk_common.skc_num;
    fresh.role = TCPSCOPE_ROLE_CLIENT;
    remember_process(&fresh); /* connect() runs in the caller's context */
    /* Untracked, it yields no handshake or handshake_failed event: exactly one of them is lost.
     * (Its close is counted at CLOSE, should there be no room then either.) */
    if (bpf_map_update_elem(&socks, &key, &fresh, BPF_ANY) != 0) count_drop(TCPSCOPE_DROP_SOCK_MAP);
    return 0;
  }
  /* A listener's child enters SYN_RECV and, in the same softirq, ESTABLISHED: its state starts
   * there (server_established), one map operation fewer. */
  if (newstate == TCP_SYN_RECV) return 0;
  if (newstate == TCP_ESTABLISHED && oldstate == TCP_SYN_RECV && server_established(sk, key))
    return 0;

  struct sock_info *info = bpf_map_lookup_elem(&socks, &key);
  if (!info && newstate == TCP_CLOSE && oldstate == TCP_SYN_RECV) {
    /* A child that never reached ESTABLISHED (a Fast Open one, created at the SYN). */
    struct sock_info child = {};
    child.cookie = bpf_get_socket_cookie(sk);
    child.role = TCPSCOPE_ROLE_SERVER;
    on_close(sk, &child, oldstate, bpf_ktime_get_ns());
    return 0;
  }
  if (!info) {
    /* Listeners and never-connected sockets are not connections. */
    if (oldstate == TCP_LISTEN || oldstate == TCP_CLOSE || oldstate == TCP_SYN_SENT ||
        oldstate == TCP_SYN_RECV)
      return 0;
    info = adopt(sk, bpf_get_socket_cookie(sk));
    if (!info) {
      /* No room: of the transitions left only CLOSE has an event, FIN_WAIT1 a FIN record. */
      if (newstate == TCP_CLOSE) count_drop(TCPSCOPE_DROP_SOCK_MAP);
      if (newstate == TCP_FIN_WAIT1) count_drop(TCPSCOPE_DROP_FIN_RECORD);
      return 0;
    }
  }

  switch (newstate) {
    case TCP_ESTABLISHED: {
      __u64 now = bpf_ktime_get_ns();
      info->established_ns = now;
      /* connect() picks the local port after entering SYN_SENT. */
      info->sport = sk->__sk_common.skc_num;
      struct tcpscope_event *event = new_event(sk, true, info, TCPSCOPE_EVENT_HANDSHAKE, now);
      if (!event) return 0;
      if (info->role == TCPSCOPE_ROLE_CLIENT && info->start_ns) {
        event->duration_ns = now - info->start_ns;
        event->flags |= TCPSCOPE_FLAG_DURATION_KNOWN;
      } else {
        server_handshake_duration(event, sk);
      }
      submit(event);
      return 0;
    }
    case TCP_FIN_WAIT1:
      if (!info->pid) remember_process(info); /* close() or shutdown() */
      fin_sent(info, bpf_ktime_get_ns());
      return 0;
    case TCP_LAST_ACK:
      if (!info->pid) remember_process(info); /* close() after the peer's FIN */
      return 0;
    default: /* TCP_CLOSE */
      on_close(sk, info, oldstate, bpf_ktime_get_ns());
      bpf_map_delete_elem(&socks, &key);
      return 0;
  }
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(on_receive_reset, struct sock *sk) {
  if (!wanted_arg(sk)) return 0;
  __u64 key = (__u64)sk;
  struct sock_info *info = bpf_map_lookup_elem(&socks, &key);
  if (!info) return 0;
  info->flags |= SOCK_FLAG_RST_RECEIVED;
  /* Probes outstanding on a keepalive socket: the RST answers a probe. */
  unsigned long flags = BPF_CORE_READ(sk, __sk_common.skc_flags);
  if (probes_out(sk) > 0 && (flags & (1UL << SOCK_KEEPOPEN))) info->flags |= SOCK_FLAG_RST_IN_PROBE;
  if (BPF_CORE_READ_BITFIELD(sk, sk_shutdown) & RCV_SHUTDOWN)
    info->flags |= SOCK_FLAG_RST_AFTER_RCV_SHUTDOWN;
  return 0;
}

/* An end already closed that answers the segment it was handling with an RST reset itself on
 * that segment: tcp_rcv_state_process ran tcp_reset (data after the application shut reading
 * down), then tcp_v4/v6_do_rcv sends the RST. Order on this CPU: tcp_receive_reset, the CLOSE
 * transition (its close record flagged RESET_MAYBE_SENT), then this. */
static __always_inline void reset_answered(const struct sock *sk) {
  struct tcpscope_event *event = bpf_ringbuf_reserve(&events, sizeof(*event), 0);
  if (!event) {
    count_drop(TCPSCOPE_DROP_RINGBUF); /* the close it would correct stays reset_received */
    return;
  }
  __builtin_memset(event, 0, sizeof(*event));
  event->kind = TCPSCOPE_EVENT_RESET_ANSWERED;
  event->time_ns = bpf_ktime_get_ns();
  event->cookie = bpf_get_socket_cookie((struct sock *)sk);
  submit(event);
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(on_send_reset, const struct sock *sk, const struct sk_buff *skb) {
  if (!sk || !wanted_arg(sk)) return 0;
  if (sk->__sk_common.skc_state == TCP_CLOSE) {
    if (skb) reset_answered(sk);
    return 0;
  }
  __u64 key = (__u64)sk;
  struct sock_info *info = bpf_map_lookup_elem(&socks, &key);
  if (info) info->flags |= SOCK_FLAG_RST_SENT;
  return 0;
}

/* Every timer of the kernel passes here: the tracepoint's own (BTF) timer argument is read
 * directly, which is much cheaper than bpf_probe_read. */
static __always_inline const struct sock *keepalive_socket(struct timer_list *timer) {
  if (!&tcp_keepalive_timer) return 0;
  if ((const void *)timer->function != &tcp_keepalive_timer) return 0;
  return (const struct sock *)((void *)timer - bpf_core_field_offset(struct sock, sk_timer));
}

SEC("tp_btf/timer_expire_entry")
int BPF_PROG(on_timer_entry, struct timer_list *timer) {
  const struct sock *sk = keepalive_socket(timer);
  if (!sk || !wanted(sk)) return 0;
  __u32 zero = 0;
  struct keepalive_run *run = bpf_map_lookup_elem(&keepalive_runs, &zero);
  if (!run) return 0;
  run->timer = (__u64)timer;
  run->sk = (__u64)sk;
  run->probes_before = probes_out(sk);
  run->closed = 0;

  __u64 key = (__u64)sk;
  struct sock_info *info = bpf_map_lookup_elem(&socks, &key);
  if (!info) return 0;
  if (run->probes_before > info->last_probes) {
    report_probes(sk, false, info, run->probes_before, 0, bpf_ktime_get_ns());
  } else if (info->last_probes > 0 && run->probes_before == 0) {
    /* An ACK reset icsk_probes_out since the last run: the peer answered. */
    struct tcpscope_event *event =
        new_event(sk, false, info, TCPSCOPE_EVENT_KEEPALIVE_ANSWERED, bpf_ktime_get_ns());
    if (event) {
      event->probes = info->last_probes;
      submit(event);
    }
    info->last_probes = 0;
  }
  return 0;
}

SEC("tp_btf/timer_expire_exit")
int BPF_PROG(on_timer_exit, struct timer_list *timer) {
  __u32 zero = 0;
  struct keepalive_run *run = bpf_map_lookup_elem(&keepalive_runs, &zero);
  if (!run || run->timer != (__u64)timer) return 0;
  const struct sock *sk = (const struct sock *)run->sk;
  run->timer = 0;
  run->sk = 0;
  if (run->closed) return 0;
  __u8 probes = probes_out(sk);
  if (probes <= run->probes_before) return 0;

  __u64 key = (__u64)sk;
  struct sock_info *info = bpf_map_lookup_elem(&socks, &key);
  if (!info) {
    /* A keepalive socket idle since before the agent attached: its cookie exists (the
     * start-up dump made it). */
    info = adopt(sk, BPF_CORE_READ(sk, __sk_common.skc_cookie.counter));
    if (!info) {
      count_drops(TCPSCOPE_DROP_SOCK_MAP, probes < 8 ? probes : 8); /* what report_probes sends */
      return 0;
    }
  }
  const struct tcp_sock *tp = (const struct tcp_sock *)sk;
  __u32 idle_jiffies = (__u32)bpf_jiffies64() - BPF_CORE_READ(tp, rcv_tstamp);
  report_probes(sk, false, info, probes, (__u64)idle_jiffies * 1000 / hz(), bpf_ktime_get_ns());
  return 0;
}
