/* The record the socket-owner iterator (socket_owners.bpf.c) writes for every TCP socket file of
 * every process, shared by kernel and user code (agent/socket_owners.cc decodes it). Fixed size,
 * no padding holes: user space reads the iterator's output as an array of these. */
#ifndef TCPSCOPE_AGENT_BPF_SOCKET_OWNER_H_
#define TCPSCOPE_AGENT_BPF_SOCKET_OWNER_H_

#include <linux/types.h>

struct tcpscope_socket_owner {
  __u64 inode;     /* the socket's inode number: sock_diag's idiag_inode */
  __u64 cgroup_id; /* the process's cgroup v2 id (kernfs node id of its default-hierarchy cgroup) */
  __u32 tgid;      /* process id, as the initial pid namespace numbers it */
  __u32 netns_ino; /* network namespace of the socket */
  __u16 local_port; /* host byte order; 0 when not bound */
  __u8 state;       /* TCP state number (TCP_LISTEN = 10) */
  __u8 family;      /* AF_INET or AF_INET6 */
  __u32 reserved;
  char comm[16]; /* the process's command (the visited task's: the thread-group leader's) */
};

#endif /* TCPSCOPE_AGENT_BPF_SOCKET_OWNER_H_ */
