/* The record the TCP socket iterator (tcp_sockets.bpf.c) writes for every socket of a network
 * namespace's TCP hash tables: what a sock_diag dump with INET_DIAG_INFO says of it (struct
 * inet_diag_msg and the part of tcp_info tcpscope uses), computed the way the kernel's
 * inet_diag and tcp_get_info() compute it. Shared by kernel and user code
 * (agent/tcp_socket_iterator.cc decodes it). Fixed size, no padding holes. */
#ifndef TCPSCOPE_AGENT_BPF_TCP_SOCKET_RECORD_H_
#define TCPSCOPE_AGENT_BPF_TCP_SOCKET_RECORD_H_

#include <linux/types.h>

struct tcpscope_tcp_socket {
  __u64 cookie;
  __u64 bytes_acked;
  __u64 bytes_received;
  __u8 local_address[16]; /* first 4 bytes for IPv4, the rest zero */
  __u8 remote_address[16];
  __u32 inode; /* idiag_inode: 0 for TIME_WAIT, request and kernel-less sockets */
  __u32 uid;   /* idiag_uid */
  __u32 recv_queue;
  __u32 send_queue;
  __u32 timer_expires_ms;
  /* tcp_info, when has_info */
  __u32 rtt_us;
  __u32 rttvar_us;
  __u32 last_data_sent_ms;
  __u32 last_data_recv_ms;
  __u32 last_ack_recv_ms;
  __u32 total_retrans;
  __u32 segs_out;
  __u32 segs_in;
  __u16 local_port; /* host byte order */
  __u16 remote_port;
  __u8 family; /* AF_INET or AF_INET6 */
  __u8 state;  /* idiag_state: SYN_RECV for a request socket, tw_substate for TIME_WAIT */
  __u8 timer;  /* idiag_timer */
  __u8 timer_retrans;
  __u8 has_info; /* full sockets only, as INET_DIAG_INFO */
  __u8 info_state;
  __u8 probes;
  __u8 backoff;
  __u32 reserved;
};

#endif /* TCPSCOPE_AGENT_BPF_TCP_SOCKET_RECORD_H_ */
