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

struct hlist_node {
  struct hlist_node *next;
  struct hlist_node **pprev; /* NULL: the timer is not pending */
} TCPSCOPE_CORE;

struct timer_list {
  struct hlist_node entry;
  unsigned long expires; /* jiffies */
  void (*function)(struct timer_list *);
} TCPSCOPE_CORE;

struct socket;

struct sock {
  struct sock_common __sk_common;
  int sk_err;
  __u16 sk_protocol; /* a bitfield before 5.6: read with BPF_CORE_READ_BITFIELD_PROBED */
  __u16 sk_type;     /* likewise (the socket-owner iterator needs 5.8+: it reads both plainly) */
  __u8 sk_shutdown;  /* a bitfield before 6.5: read with BPF_CORE_READ_BITFIELD */
  struct timer_list sk_timer;
  __u32 sk_ack_backlog;
  __u32 sk_max_ack_backlog;
  struct socket *sk_socket;
} TCPSCOPE_CORE;

struct inet_connection_sock {
  struct timer_list icsk_retransmit_timer; /* its expiry is icsk_timeout() since 6.15 */
  __u8 icsk_retransmits;
  __u8 icsk_pending; /* ICSK_TIME_*: which timer icsk_retransmit_timer runs as */
  __u8 icsk_backoff;
  __u8 icsk_probes_out;
  struct {
    __u32 lrcvtime; /* jiffies of the last received data segment */
  } icsk_ack;
} TCPSCOPE_CORE;

struct tcp_sock {
  __u64 bytes_acked;
  __u64 bytes_received;
  __u32 segs_in;
  __u32 segs_out;
  __u32 total_retrans;
  __u32 srtt_us;                /* smoothed RTT << 3 */
  __u32 mdev_us;                /* RTT mean deviation << 2 */
  __u32 lsndtime;               /* jiffies of the last sent data segment */
  __u32 rcv_nxt;
  __u32 copied_seq;
  __u32 write_seq;
  __u32 snd_una;
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

/* A socket's inode follows its struct socket (SOCK_INODE()). */
struct socket_alloc {
  struct socket socket;
  struct inode vfs_inode;
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

/* For the TCP socket iterator (tcp_sockets.bpf.c): the two kinds of mini socket a TCP hash
 * table holds besides full sockets. */
struct inet_timewait_sock {
  struct sock_common __tw_common;
  unsigned char tw_substate; /* TIME_WAIT, or FIN_WAIT2 for an orphan */
  struct timer_list tw_timer;
} TCPSCOPE_CORE;

struct tcp_timewait_sock {
  struct inet_timewait_sock tw_sk;
} TCPSCOPE_CORE;

struct request_sock {
  struct sock_common __req_common;
  __u8 num_retrans;
  struct timer_list rsk_timer;
} TCPSCOPE_CORE;

struct inet_request_sock {
  struct request_sock req;
} TCPSCOPE_CORE;

struct tcp_request_sock {
  struct inet_request_sock req;
} TCPSCOPE_CORE;

/* The context of an iter/tcp program: one call per socket of the TCP hash tables (listening,
 * then established, TIME_WAIT and request sockets) of the iterator's network namespace. */
struct bpf_iter__tcp {
  struct bpf_iter_meta *meta;
  struct sock_common *sk_common;
  __u32 uid;
} TCPSCOPE_CORE;

#endif /* TCPSCOPE_AGENT_BPF_KERNEL_TYPES_H_ */
