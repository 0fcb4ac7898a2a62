/* The few kernel types the eBPF program reads, declared with preserve_access_index so libbpf
 * relocates every field against the running kernel's BTF (CO-RE). Only the fields used are
 * declared; their order and offsets here do not matter. This replaces a generated vmlinux.h,
 * so the program builds anywhere and runs on any kernel with BTF. */
#ifndef TCPSCOPE_AGENT_BPF_KERNEL_TYPES_H_
#define TCPSCOPE_AGENT_BPF_KERNEL_TYPES_H_

#include <linux/bpf.h>
#include <linux/types.h>
#include <stdbool.h>

#define TCPSCOPE_CORE __attribute__((preserve_access_index))

struct ns_common {
  unsigned int inum;
} TCPSCOPE_CORE;

struct netns_ipv4 {
  int sysctl_tcp_keepalive_time;    /* jiffies */
  int sysctl_tcp_keepalive_intvl;   /* jiffies */
  __u8 sysctl_tcp_keepalive_probes; /* int before 5.14: read with BPF_CORE_READ_BITFIELD_PROBED */
} TCPSCOPE_CORE;

struct net {
  struct ns_common ns;
  struct netns_ipv4 ipv4;
} TCPSCOPE_CORE;

typedef struct {
  struct net *net;
} TCPSCOPE_CORE possible_net_t;

struct in6_addr {
  __u8 bytes[16]; /* the kernel's in6_u union: only its size matters here */
} TCPSCOPE_CORE;

typedef struct {
  __s64 counter;
} TCPSCOPE_CORE atomic64_t;

struct sock_common {
  __be32 skc_daddr;
  __be32 skc_rcv_saddr;
  __be16 skc_dport;
  __u16 skc_num;
  unsigned short skc_family;
  volatile unsigned char skc_state;
  possible_net_t skc_net;
  atomic64_t skc_cookie;
  unsigned long skc_flags; /* sk->sk_flags */
  struct in6_addr skc_v6_daddr;
  struct in6_addr skc_v6_rcv_saddr;
} TCPSCOPE_CORE;

struct timer_list {
  void (*function)(struct timer_list *);
} TCPSCOPE_CORE;

struct sock {
  struct sock_common __sk_common;
  int sk_err;
  __u16 sk_protocol; /* a bitfield before 5.6: read with BPF_CORE_READ_BITFIELD_PROBED */
  struct timer_list sk_timer;
} TCPSCOPE_CORE;

struct inet_connection_sock {
  __u8 icsk_retransmits;
  __u8 icsk_probes_out;
} TCPSCOPE_CORE;

struct tcp_sock {
  __u64 bytes_acked;
  __u64 bytes_received;
  __u32 segs_in;
  __u32 segs_out;
  __u32 total_retrans;
  __u32 srtt_us;                /* smoothed RTT << 3 */
  __u32 rcv_tstamp;             /* jiffies of the last received ACK */
  unsigned int keepalive_time;  /* jiffies; 0: the namespace's sysctl */
  unsigned int keepalive_intvl; /* jiffies; 0: the namespace's sysctl */
  __u8 keepalive_probes;        /* 0: the namespace's sysctl */
} TCPSCOPE_CORE;

struct sk_buff;

#endif /* TCPSCOPE_AGENT_BPF_KERNEL_TYPES_H_ */
