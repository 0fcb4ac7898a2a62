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
  __u16 sk_type;     /* likewise (the socket-owner iterator needs 5.8+: it reads both plainly) */
  __u8 sk_shutdown;  /* a bitfield before 6.5: read with BPF_CORE_READ_BITFIELD */
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

/* For the socket-owner iterator (socket_owners.bpf.c): a task's files, and the cgroup v2 a task
 * is in (css_set->dfl_cgrp; its kernfs node id is what bpf_get_current_cgroup_id() returns). */
struct socket {
  struct sock *sk;
} TCPSCOPE_CORE;

struct inode {
  unsigned short i_mode; /* umode_t */
  unsigned long i_ino;
} TCPSCOPE_CORE;

struct file {
  struct inode *f_inode;
  void *private_data; /* a socket file's struct socket */
} TCPSCOPE_CORE;

struct kernfs_node {
  __u64 id;
} TCPSCOPE_CORE;

struct cgroup {
  struct kernfs_node *kn;
} TCPSCOPE_CORE;

struct css_set {
  struct cgroup *dfl_cgrp;
} TCPSCOPE_CORE;

struct task_struct {
  int tgid;
  char comm[16];
  struct css_set *cgroups;
} TCPSCOPE_CORE;

struct seq_file;

struct bpf_iter_meta {
  struct seq_file *seq;
  __u64 session_id;
  __u64 seq_num;
} TCPSCOPE_CORE;

/* The context of an iter/task_file program: one call per open file of every process (threads
 * sharing a file table are visited once). */
struct bpf_iter__task_file {
  struct bpf_iter_meta *meta;
  struct task_struct *task;
  __u32 fd;
  struct file *file;
} TCPSCOPE_CORE;

#endif /* TCPSCOPE_AGENT_BPF_KERNEL_TYPES_H_ */
