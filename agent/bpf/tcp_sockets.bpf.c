/* Snapshot of every TCP socket of a network namespace: a BPF iterator over the TCP hash tables
 * (iter/tcp, kernel 5.14+ for the helpers used) that writes one tcpscope_tcp_socket record per
 * socket, with the values a sock_diag dump with tcp_info would give (inet_diag.c's
 * inet_sk_diag_fill / inet_twsk_diag_fill / inet_req_diag_fill, tcp_diag_get_info and
 * tcp_get_info, field by field), but without building a netlink message per socket. The
 * kernel holds each full socket's lock (lock_sock_fast) while the program reads it, as
 * tcp_get_info does. The namespace is the one of the process that creates the iterator
 * (bpf_iter_create). */
// clang-format off: the kernel types must come before libbpf's headers, which use them.
#include "kernel_types.h"
// clang-format on

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "tcp_socket_record.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET6 10

#define TCP_SYN_RECV 3
#define TCP_TIME_WAIT 6
#define TCP_LISTEN 10
#define TCP_NEW_SYN_RECV 12

/* icsk_pending */
#define ICSK_TIME_RETRANS 1
#define ICSK_TIME_PROBE0 3
#define ICSK_TIME_LOSS_PROBE 5
#define ICSK_TIME_REO_TIMEOUT 6

/* idiag_timer */
#define TIMER_RETRANSMIT 1
#define TIMER_KEEPALIVE 2
#define TIMER_TIME_WAIT 3
#define TIMER_ZERO_WINDOW_PROBE 4

/* Not weak: without the kernel's HZ the millisecond values cannot be exact, and a failed load
 * sends the agent to the sock_diag dump. */
extern unsigned long CONFIG_HZ __kconfig;

/* jiffies_to_msecs() for every HZ the kernel allows (include/linux/jiffies.h). */
static __always_inline __u32 jiffies_to_msecs(__u64 j) {
  if (1000 % CONFIG_HZ == 0) return (__u32)(j * (1000 / CONFIG_HZ));
  if (CONFIG_HZ % 1000 == 0) return (__u32)((j + CONFIG_HZ / 1000 - 1) / (CONFIG_HZ / 1000));
  return (__u32)((j * 1000 + CONFIG_HZ - 1) / CONFIG_HZ);
}

/* jiffies_delta_to_msecs(expires - jiffies): a timer already due reads 0. */
static __always_inline __u32 expires_in_ms(unsigned long expires, __u64 now) {
  const long delta = (long)(expires - (unsigned long)now);
  return delta > 0 ? jiffies_to_msecs((__u64)delta) : 0;
}

static __always_inline void fill_common(struct sock_common *skc,
                                        struct tcpscope_tcp_socket *record) {
  record->family = (__u8)skc->skc_family;
  record->local_port = skc->skc_num;
  record->remote_port = bpf_ntohs(skc->skc_dport);
  record->cookie = bpf_get_socket_cookie(skc); /* sock_gen_cookie(), as sock_diag */
  if (record->family == AF_INET6) {
    BPF_CORE_READ_INTO(&record->local_address, skc, skc_v6_rcv_saddr);
    BPF_CORE_READ_INTO(&record->remote_address, skc, skc_v6_daddr);
  } else {
    __builtin_memcpy(record->local_address, &skc->skc_rcv_saddr, 4);
    __builtin_memcpy(record->remote_address, &skc->skc_daddr, 4);
  }
}

static __always_inline void fill_full(struct tcp_sock *tp, __u32 uid, __u64 now,
                                      struct tcpscope_tcp_socket *record) {
  struct sock *sk = (struct sock *)tp;
  struct inet_connection_sock *icsk = (struct inet_connection_sock *)tp;
  const __u8 state = sk->__sk_common.skc_state;
  record->state = state;
  record->uid = uid;
  struct socket *socket = sk->sk_socket;
  if (socket) {
    record->inode = (__u32)BPF_CORE_READ((struct socket_alloc *)socket, vfs_inode.i_ino);
  }

  const __u8 pending = icsk->icsk_pending;
  if (pending == ICSK_TIME_RETRANS || pending == ICSK_TIME_REO_TIMEOUT ||
      pending == ICSK_TIME_LOSS_PROBE) {
    record->timer = TIMER_RETRANSMIT;
    record->timer_retrans = icsk->icsk_retransmits;
    record->timer_expires_ms = expires_in_ms(icsk->icsk_retransmit_timer.expires, now);
  } else if (pending == ICSK_TIME_PROBE0) {
    record->timer = TIMER_ZERO_WINDOW_PROBE;
    record->timer_retrans = icsk->icsk_probes_out;
    record->timer_expires_ms = expires_in_ms(icsk->icsk_retransmit_timer.expires, now);
  } else if (sk->sk_timer.entry.pprev) { /* timer_pending(&sk->sk_timer) */
    record->timer = TIMER_KEEPALIVE;
    record->timer_retrans = icsk->icsk_probes_out;
    record->timer_expires_ms = expires_in_ms(sk->sk_timer.expires, now);
  }

  record->has_info = 1;
  record->info_state = state;
  if (state == TCP_LISTEN) {
    record->recv_queue = sk->sk_ack_backlog;
    record->send_queue = sk->sk_max_ack_backlog;
    return; /* tcp_get_info() reports little more of a listener */
  }
  const int unread = (int)(tp->rcv_nxt - tp->copied_seq);
  record->recv_queue = unread > 0 ? unread : 0;
  record->send_queue = tp->write_seq - tp->snd_una;

  record->probes = icsk->icsk_probes_out;
  record->backoff = icsk->icsk_backoff;
  const __u32 now32 = (__u32)now; /* tcp_jiffies32 */
  record->last_data_sent_ms = jiffies_to_msecs(now32 - tp->lsndtime);
  record->last_data_recv_ms = jiffies_to_msecs(now32 - icsk->icsk_ack.lrcvtime);
  record->last_ack_recv_ms = jiffies_to_msecs(now32 - tp->rcv_tstamp);
  record->rtt_us = tp->srtt_us >> 3;
  record->rttvar_us = tp->mdev_us >> 2;
  record->total_retrans = tp->total_retrans;
  record->segs_out = tp->segs_out;
  record->segs_in = tp->segs_in;
  record->bytes_acked = tp->bytes_acked;
  record->bytes_received = tp->bytes_received;
}

SEC("iter/tcp")
int tcp_sockets(struct bpf_iter__tcp *ctx) {
  struct sock_common *skc = ctx->sk_common;
  if (!skc) return 0; /* the end-of-iteration call */

  struct tcpscope_tcp_socket record;
  __builtin_memset(&record, 0, sizeof(record));
  fill_common(skc, &record);
  const __u64 now = bpf_jiffies64();
  const __u8 state = skc->skc_state;
  if (state == TCP_TIME_WAIT) {
    struct tcp_timewait_sock *tw = bpf_skc_to_tcp_timewait_sock(skc);
    if (!tw) return 0;
    record.state = tw->tw_sk.tw_substate;
    record.timer = TIMER_TIME_WAIT;
    record.timer_expires_ms = expires_in_ms(tw->tw_sk.tw_timer.expires, now);
  } else if (state == TCP_NEW_SYN_RECV) {
    struct tcp_request_sock *req = bpf_skc_to_tcp_request_sock(skc);
    if (!req) return 0;
    record.state = TCP_SYN_RECV;
    record.timer = TIMER_RETRANSMIT;
    record.timer_retrans = req->req.req.num_retrans;
    record.timer_expires_ms = expires_in_ms(req->req.req.rsk_timer.expires, now);
  } else {
    struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
    if (!tp) return 0;
    fill_full(tp, ctx->uid, now, &record);
  }
  bpf_seq_write(ctx->meta->seq, &record, sizeof(record));
  return 0;
}
