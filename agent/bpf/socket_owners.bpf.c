/* Socket owners: a BPF iterator over every open file of every process (iter/task_file) that
 * writes one tcpscope_socket_owner record for each TCP socket, so user space learns which process
 * and cgroup hold each socket inode in one pass in the kernel, instead of a readlink per file
 * descriptor under /proc. Read with bpf_iter_create() + read() to EOF; nothing is kept between
 * reads.
 *
 * Two variants of one program; user space loads the first that the kernel accepts:
 * socket_owners (5.11+) reads through BTF pointers directly and gets the socket with
 * bpf_sock_from_file(); socket_owners_compat (5.8+) reads every field with bpf_probe_read. At
 * ~100k sockets the direct one costs about a third less (measured: BENCHMARKS.md). */
// clang-format off: the kernel types must come before libbpf's headers, which use them.
#include "kernel_types.h"
// clang-format on

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "socket_owner.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define SOCK_STREAM 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000

SEC("iter/task_file")
int socket_owners(struct bpf_iter__task_file *ctx) {
  struct seq_file *seq = ctx->meta->seq;
  struct task_struct *task = ctx->task;
  struct file *file = ctx->file;
  if (!task || !file) return 0; /* the end-of-iteration call */

  struct inode *inode = file->f_inode;
  if (!inode || (inode->i_mode & S_IFMT) != S_IFSOCK) return 0;
  /* NULL for anything but a sockfs file (an O_PATH file of a unix socket's path has an
   * S_IFSOCK inode too). */
  struct socket *socket = bpf_sock_from_file(file);
  if (!socket) return 0;
  struct sock *sk = socket->sk;
  if (!sk) return 0;
  const __u16 family = sk->__sk_common.skc_family;
  if (family != AF_INET && family != AF_INET6) return 0;
  if (sk->sk_protocol != IPPROTO_TCP || sk->sk_type != SOCK_STREAM) return 0;

  struct tcpscope_socket_owner record;
  __builtin_memset(&record, 0, sizeof(record));
  record.inode = inode->i_ino;
  record.tgid = task->tgid;
  record.cgroup_id = task->cgroups->dfl_cgrp->kn->id;
  record.netns_ino = sk->__sk_common.skc_net.net->ns.inum;
  record.local_port = sk->__sk_common.skc_num;
  record.state = sk->__sk_common.skc_state;
  record.family = (__u8)family;
  bpf_probe_read_kernel(record.comm, sizeof(record.comm), task->comm);
  bpf_seq_write(seq, &record, sizeof(record));
  return 0;
}

SEC("iter/task_file")
int socket_owners_compat(struct bpf_iter__task_file *ctx) {
  struct seq_file *seq = ctx->meta->seq;
  struct task_struct *task = ctx->task;
  struct file *file = ctx->file;
  if (!task || !file) return 0;

  struct inode *inode = BPF_CORE_READ(file, f_inode);
  if (!inode) return 0;
  if ((BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFSOCK) return 0;
  /* A sockfs file's private_data is its struct socket; an O_PATH file has none. */
  struct socket *socket = BPF_CORE_READ(file, private_data);
  if (!socket) return 0;
  struct sock *sk = BPF_CORE_READ(socket, sk);
  if (!sk) return 0;
  const __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
  if (family != AF_INET && family != AF_INET6) return 0;
  if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP) return 0;
  if (BPF_CORE_READ(sk, sk_type) != SOCK_STREAM) return 0;

  struct tcpscope_socket_owner record;
  __builtin_memset(&record, 0, sizeof(record));
  record.inode = BPF_CORE_READ(inode, i_ino);
  record.tgid = BPF_CORE_READ(task, tgid);
  record.cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
  record.netns_ino = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
  record.local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
  record.state = BPF_CORE_READ(sk, __sk_common.skc_state);
  record.family = (__u8)family;
  bpf_core_read_str(record.comm, sizeof(record.comm), &task->comm);
  bpf_seq_write(seq, &record, sizeof(record));
  return 0;
}
