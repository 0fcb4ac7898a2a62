#!/usr/bin/env bash
# Workload identity against real container runtimes and the real binaries (no mocked runtime or
# API): every connection end and event names the process, container and pod that own it.
#
# 1. Docker (Debian's docker.io, started as tests/deploy/docker_test.sh starts it): a server in one
#    container, clients in a second container (sharing the server's network namespace), on the host
#    itself (a host process entering that namespace: attributed by cgroup, so to no container), and
#    in a container on the host's network. The snapshot ends and the handshake and close events of
#    those connections carry the right container id and name and pid/command, the --container and
#    --process filters list exactly them, and the per-workload close counters are exact.
# 2. containerd (Debian's containerd + runc, a private instance): a container created in containerd's
#    k8s.io namespace with the labels the kubelet sets through CRI (io.kubernetes.pod.name, ...: THIS
#    TEST SETS THEM, as the kubelet would) and a kubelet-style cgroup path, in network namespace A
#    of two test-made hosts (A and B, each with its own agent). Clients on B: its ends carry
#    namespace, pod and container name; --namespace/--pod filters and the per-pod metrics show
#    exactly its connections, including a CLOSE_WAIT leak and a half-open connection (B's FIN lost),
#    and B's ends name the pod at their other end.
# 3. 200 containers in that namespace with long and hostile label values: the exposition stays
#    `promtool check metrics` clean and within the per-host series budget, hostile names are
#    dropped and counted by the agent, and neither binary crashes.
#
# Needs root, eBPF, docker.io, containerd, runc and debootstrap (scripts/setup). Skips loudly
# without them; fails instead where TCPSCOPE_REQUIRE_ROOT_TESTS=1. Prints each step's time.
# shellcheck disable=SC2317  # functions called through wait_for and traps
set -euo pipefail

src=${TCPSCOPE_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
bin=${TCPSCOPE_BIN_DIR:-$src/build}
docker_root=${TCPSCOPE_DOCKER_ROOT:-/var/lib/tcpscope-docker}
base_image=tcpscope-test-base:bookworm
hostile_containers=${TCPSCOPE_HOSTILE_CONTAINERS:-200}
work=$(mktemp -d "${TMPDIR:-/tmp}/workload_identity_test.XXXXXX")
dockerd_pid=
containerd_pid=
containers=()
pids=()
ns_a=
ns_b=
timings=()

log() { echo "workload_identity_test: $*"; }
fail() {
  echo "workload_identity_test: FAIL: $*" >&2
  if [[ -n ${metrics_port:-} ]]; then
    echo "--- the service's workload series" >&2
    curl -sf --max-time 5 "http://127.0.0.1:$metrics_port/metrics" | grep '^tcpscope_workload' |
      head -n 40 >&2 || true
  fi
  for file in "$work"/*.log; do
    [[ -f $file ]] || continue
    echo "--- $file" >&2
    tail -n 30 "$file" >&2
  done
  exit 1
}
skip() {
  if [[ ${TCPSCOPE_REQUIRE_ROOT_TESTS:-} == 1 ]]; then
    echo "workload_identity_test: FAIL: cannot run: $* (TCPSCOPE_REQUIRE_ROOT_TESTS=1)" >&2
    exit 1
  fi
  echo "workload_identity_test: SKIPPED: $* (scripts/setup installs the runtimes; run as root)"
  exit 0
}

ctr_() { ctr -a "$work/containerd/containerd.sock" -n k8s.io "$@"; }

cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -n $containerd_pid ]]; then
    for task in $(ctr_ task ls -q 2>/dev/null); do ctr_ task kill -s KILL "$task" >/dev/null 2>&1 || true; done
    sleep 0.5
    for task in $(ctr_ task ls -q 2>/dev/null); do ctr_ task rm -f "$task" >/dev/null 2>&1 || true; done
    for container in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$container" >/dev/null 2>&1 || true; done
    kill "$containerd_pid" 2>/dev/null || true
    wait "$containerd_pid" 2>/dev/null || true
    # runc removes each container's own cgroup; the kubelet-style pod cgroups above them are ours.
    if [[ -f $work/pod_uids ]]; then
      while read -r uid; do
        for dir in /sys/fs/cgroup/*/kubepods/besteffort /sys/fs/cgroup/kubepods/besteffort; do
          rmdir "$dir/pod$uid" 2>/dev/null || true
        done
      done <"$work/pod_uids"
    fi
  fi
  for name in "${containers[@]}"; do docker rm -f "$name" >/dev/null 2>&1 || true; done
  if [[ -n $dockerd_pid ]]; then
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$dockerd_pid" 2>/dev/null || true
  fi
  if [[ -n $ns_a ]]; then ip netns del "$ns_a" 2>/dev/null || true; fi
  if [[ -n $ns_b ]]; then ip netns del "$ns_b" 2>/dev/null || true; fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

[[ $(id -u) == 0 ]] || skip "not root"
for tool in dockerd containerd ctr runc debootstrap curl python3 ss ip nsenter promtool; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done
for binary in agent/tcpscope-agent service/tcpscope-service cli/tcpscope; do
  [[ -x $bin/$binary ]] || fail "$bin/$binary is not built"
done
[[ -r /sys/kernel/btf/vmlinux ]] || skip "the kernel exposes no BTF: the agent's eBPF source cannot load"
cgroup2=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
[[ -n $cgroup2 ]] || skip "no cgroup v2 hierarchy is mounted: containers cannot be told apart by cgroup"
if [[ -x /usr/bin/docker ]]; then docker() { /usr/bin/docker "$@"; }; fi

metric_is() {  # metric_is PORT NAME LABELS VALUE
  [[ $(metric "$1" "$2" "$3") == "$4" ]]
}
listening() {  # listening PORT [NSENTER-ARGS...]: a TCP listener on PORT (in that namespace)
  local port=$1
  shift
  [[ -n $("$@" ss -Hltn "sport = :$port") ]]
}

# ---- Docker ----
# shellcheck source=tests/deploy/container_test_lib.sh
source "$src/tests/deploy/container_test_lib.sh"
if docker info >/dev/null 2>&1; then
  log "using the running Docker daemon"
else
  log "starting dockerd (state in $docker_root)"
  timed "start dockerd" start_dockerd
fi
docker_socket=${DOCKER_HOST:-unix:///var/run/docker.sock}
docker_socket=${docker_socket#unix://}
ensure_base_image

grpc_port=$(free_port)
metrics_port=$(free_port)
cli() { "$bin/cli/tcpscope" --service="127.0.0.1:$grpc_port" "$@"; }
"$bin/service/tcpscope-service" --grpc_listen="127.0.0.1:$grpc_port" \
  --metrics_listen="127.0.0.1:$metrics_port" --half_open_grace=1s --peer_down_after=30s \
  >"$work/service.log" 2>&1 &
service_pid=$!
pids+=("$service_pid")

start_agent() {  # start_agent HOST [FLAGS...]: an eBPF agent with 1 s snapshots; prints its pid
  local host=$1 port
  shift
  port=$(free_port)
  "$bin/agent/tcpscope-agent" --service="127.0.0.1:$grpc_port" --metrics_listen="127.0.0.1:$port" \
    --source=ebpf --snapshot_interval=1s --host_name="$host" --docker_socket="$docker_socket" \
    --containerd_socket="$work/containerd/containerd.sock" "$@" >"$work/agent-$host.log" 2>&1 &
  pids+=("$!")
  echo "$!" >"$work/agent-$host.pid"
  echo "$port" >"$work/agent-$host.port"
  wait_for 30 "agent $host connected" metric_is "$metrics_port" tcpscope_agent_up "host=\"$host\"" 1
}

# Expectations over the CLI's JSON: `ends N FIELD=VALUE...` for `connections -o json` and
# `events N FIELD=VALUE...` for `events -o json` (one event per line): exactly N entries, every one
# with those origin fields (FIELD=- means absent or empty). Prints what differs.
cat >"$work/check_json.py" <<'PY'
import json, sys
mode, want = sys.argv[1], int(sys.argv[2])
fields = dict(arg.split("=", 1) for arg in sys.argv[3:])
text = sys.stdin.read()
if mode == "ends":
    entries = [e["connection"] for e in json.loads(text or "{}").get("connections", [])]
else:
    entries = [json.loads(line)["event"] for line in text.splitlines() if line.strip()]
bad = []
for entry in entries:
    origin = entry.get("origin", {})
    for key, value in fields.items():
        got = str(origin.get(key, ""))
        if got != ("" if value == "-" else value):
            bad.append(f"{key}={got!r} (want {value!r}) in {json.dumps(entry)[:300]}")
if len(entries) != want or bad:
    print(f"{len(entries)} entries (want {want}); " + "; ".join(bad[:3]))
    sys.exit(1)
PY
check_json() { python3 "$work/check_json.py" "$@"; }
expect() {  # expect ends|events N CLI-ARGS... -- FIELD=VALUE...: retried until it holds (15 s)
  local mode=$1 want=$2 args=() checks=()
  shift 2
  while [[ $# -gt 0 && $1 != -- ]]; do args+=("$1"); shift; done
  [[ $# -gt 0 ]] && shift
  checks=("$@")
  local deadline=$((SECONDS + 15)) output
  while true; do
    if [[ $mode == ends ]]; then
      output=$(cli connections "${args[@]}" -o json 2>/dev/null | check_json ends "$want" "${checks[@]}") && return 0
    else
      output=$(cli events --last=10000 "${args[@]}" -o json 2>/dev/null | check_json events "$want" "${checks[@]}") && return 0
    fi
    ((SECONDS < deadline)) || fail "tcpscope ${mode/ends/connections} ${args[*]}: $output"
    sleep 0.5
  done
}

docker_part() {
  local host=wl-docker n_client=5 n_host=3 n_hostnet=4
  start_agent "$host"
  # The server: accepts, answers each line with "ok", closes when its peer does.
  cat >"$work/server.pl" <<'PERL'
use IO::Socket::INET; use IO::Select;
my $listener = IO::Socket::INET->new(LocalAddr => $ARGV[0], Listen => 64, ReuseAddr => 1)
  or die "listen: $!";
my $select = IO::Select->new($listener);
my @kept;
while (1) {
  for my $h ($select->can_read) {
    if ($h == $listener) { $select->add($listener->accept); next }
    if (sysread($h, my $buffer, 4096)) { syswrite($h, "ok\n"); next }
    $select->remove($h);
    if ($ENV{KEEP}) { push @kept, $h } else { close $h }  # KEEP: never close (CLOSE_WAIT leak)
  }
}
PERL
  # A client: N connections, one exchange each, held until the file $3 appears, then closed.
  cat >"$work/client.pl" <<'PERL'
use IO::Socket::INET;
my ($address, $count, $go) = @ARGV;
my @connections;
for (1 .. $count) {
  my $c = IO::Socket::INET->new(PeerAddr => $address) or die "connect: $!";
  syswrite($c, "hi\n"); sysread($c, my $answer, 16); push @connections, $c;
}
open(my $ready, '>', "$go.ready"); close $ready;
for (1 .. 1200) { last if -e $go; select(undef, undef, undef, 0.1) }
close $_ for @connections;
PERL
  local server=wl-server-$$ client=wl-client-$$ hostnet=wl-hostnet-$$
  containers+=("$server" "$client" "$hostnet")
  docker run -d --name "$server" --network=none -v "$work:/test:ro" "$base_image" \
    perl /test/server.pl 127.0.0.1:8080 >/dev/null
  local server_id server_pid
  server_id=$(docker inspect -f '{{.Id}}' "$server")
  server_pid=$(docker inspect -f '{{.State.Pid}}' "$server")
  wait_for 10 "the server in $server listening" listening 8080 nsenter -t "$server_pid" -n
  mkdir -p "$work/go"
  docker run -d --name "$client" --network="container:$server" -v "$work/go:/go" "$base_image" \
    perl -e "$(cat "$work/client.pl")" 127.0.0.1:8080 "$n_client" /go/client >/dev/null
  local client_id client_pid
  client_id=$(docker inspect -f '{{.Id}}' "$client")
  client_pid=$(docker inspect -f '{{.State.Pid}}' "$client")
  # A host process inside the server container's network namespace.
  nsenter -t "$server_pid" -n perl -e "$(cat "$work/client.pl")" 127.0.0.1:8080 "$n_host" \
    "$work/go/host" &
  local host_client_pid=$!
  pids+=("$host_client_pid")
  # A container on the host's network, connecting to a host process's listener.
  local host_port
  host_port=$(free_port)
  perl "$work/server.pl" "127.0.0.1:$host_port" &
  local host_server_pid=$!
  pids+=("$host_server_pid")
  wait_for 10 "the host's server listening" listening "$host_port"
  docker run -d --name "$hostnet" --network=host -v "$work/go:/go" "$base_image" \
    perl -e "$(cat "$work/client.pl")" "127.0.0.1:$host_port" "$n_hostnet" /go/hostnet >/dev/null
  local hostnet_id hostnet_pid
  hostnet_id=$(docker inspect -f '{{.Id}}' "$hostnet")
  hostnet_pid=$(docker inspect -f '{{.State.Pid}}' "$hostnet")
  for who in client host hostnet; do
    wait_for 20 "the $who connections" test -e "$work/go/$who.ready"
  done
  log "Docker: $server (pid $server_pid) serves $n_client connections from $client (pid" \
    "$client_pid) and $n_host from host process $host_client_pid; $hostnet (pid $hostnet_pid," \
    "host network) has $n_hostnet to host process $host_server_pid"

  # Snapshot ends: exactly these, with the right owner.
  local docker_fields=(runtime=CONTAINER_RUNTIME_DOCKER pod=- pod_namespace=-)
  expect ends $((n_client + n_host)) --host="$host" --container="$server" -- pid="$server_pid" \
    command=perl container_id="$server_id" container_name="$server" "${docker_fields[@]}"
  expect ends $((n_client + n_host)) --host="$host" --container="${server_id:0:12}" -- \
    container_name="$server"
  expect ends "$n_client" --host="$host" --container="$client" -- pid="$client_pid" command=perl \
    container_id="$client_id" container_name="$client" "${docker_fields[@]}"
  expect ends "$n_host" --host="$host" --process="$host_client_pid" -- command=perl \
    container_id=- container_name=-
  expect ends "$n_hostnet" --host="$host" --container="$hostnet" -- pid="$hostnet_pid" \
    command=perl container_id="$hostnet_id" container_name="$hostnet" "${docker_fields[@]}"
  expect ends "$n_hostnet" --host="$host" --process="$host_server_pid" -- container_id=-
  log "snapshot ends: $((n_client + n_host)) of $server, $n_client of $client, $n_host of the host" \
    "process, $n_hostnet of $hostnet and $n_hostnet of its host peer, each with its owner"

  # The clients close; the servers close when they see it.
  touch "$work/go/client" "$work/go/host" "$work/go/hostnet"
  expect events $((n_client + n_host)) --host="$host" --type=handshake --container="$server" -- \
    pid="$server_pid" command=perl container_id="$server_id" container_name="$server"
  expect events $((n_client + n_host)) --host="$host" --type=close --container="$server" -- \
    pid="$server_pid" command=perl container_id="$server_id" container_name="$server"
  expect events "$n_client" --host="$host" --type=handshake --container="$client" -- \
    pid="$client_pid" command=perl container_id="$client_id"
  expect events "$n_client" --host="$host" --type=close --container="$client" -- \
    pid="$client_pid" command=perl container_id="$client_id"
  expect events "$n_host" --host="$host" --type=handshake --process="$host_client_pid" -- \
    command=perl container_id=-
  expect events "$n_host" --host="$host" --type=close --process="$host_client_pid" -- \
    command=perl container_id=-
  expect events "$n_hostnet" --host="$host" --type=handshake --container="$hostnet" -- \
    pid="$hostnet_pid" container_id="$hostnet_id" container_name="$hostnet"
  expect events "$n_hostnet" --host="$host" --type=close --container="$hostnet" -- \
    pid="$hostnet_pid" container_id="$hostnet_id" container_name="$hostnet"
  local name count
  for name in "$server:$((n_client + n_host))" "$client:$n_client" "$hostnet:$n_hostnet"; do
    count=${name##*:}
    name=${name%:*}
    wait_for 15 "tcpscope_workload_closes_total of $name = $count" metric_is "$metrics_port" \
      tcpscope_workload_closes_total \
      "container=\"$name\",host=\"$host\",namespace=\"\",pod=\"\",reason=\"fin\"" "$count"
  done
  log "events: every handshake and close of the three containers and the host process, with its" \
    "owner; per-container close counters exact"
  kill "$(cat "$work/agent-$host.pid")"
  wait_for 15 "agent $host gone" metric_is "$metrics_port" tcpscope_agent_up "host=\"$host\"" 0
}

# ---- containerd, as the kubelet drives it ----
start_containerd() {
  mkdir -p "$work/containerd"
  cat >"$work/containerd/config.toml" <<EOF
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
[grpc]
  address = "$work/containerd/containerd.sock"
EOF
  containerd --config "$work/containerd/config.toml" >"$work/containerd.log" 2>&1 &
  containerd_pid=$!
  wait_for 20 "containerd answering" ctr_ version
  # The test's root file system: the Docker base image's, exported.
  local id
  id=$(docker create "$base_image" true)
  mkdir -p "$work/rootfs"
  docker export "$id" | tar -C "$work/rootfs" -x
  docker rm "$id" >/dev/null
  cp "$work/server.pl" "$work/rootfs/server.pl"
  cp "$work/client.pl" "$work/rootfs/client.pl"
}

hex64() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
uuid() { cat /proc/sys/kernel/random/uuid; }

# run_pod CONTAINER-ID POD-UID NETNS LABEL... -- COMMAND...: a container with the kubelet's labels
# and a kubelet-style (cgroupfs driver) cgroup path, in network namespace NETNS.
run_pod() {
  local id=$1 uid=$2 netns=$3 labels=()
  shift 3
  while [[ $1 != -- ]]; do labels+=(--label "$1"); shift; done
  shift
  echo "$uid" >>"$work/pod_uids"
  ctr_ run -d --rootfs --with-ns "network:/run/netns/$netns" "${labels[@]}" \
    --cgroup "/kubepods/besteffort/pod$uid/$id" "$work/rootfs" "$id" "$@" >/dev/null
}

containerd_part() {
  ns_a=tcpscope-wl-a-$$
  ns_b=tcpscope-wl-b-$$
  ip netns add "$ns_a"
  ip netns add "$ns_b"
  ip link add wla$$ type veth peer name wlb$$
  ip link set wla$$ netns "$ns_a"
  ip link set wlb$$ netns "$ns_b"
  ip -n "$ns_a" addr add 198.18.1.1/24 dev wla$$
  ip -n "$ns_b" addr add 198.18.1.2/24 dev wlb$$
  for ns in "$ns_a" "$ns_b"; do ip -n "$ns" link set lo up; done
  ip -n "$ns_a" link set wla$$ up
  ip -n "$ns_b" link set wlb$$ up
  start_agent wl-a --netns="/run/netns/$ns_a"
  start_agent wl-b --netns="/run/netns/$ns_b"

  local id uid
  id=$(hex64)
  uid=$(uuid)
  run_pod "$id" "$uid" "$ns_a" io.kubernetes.pod.name=web-0 io.kubernetes.pod.namespace=shop \
    "io.kubernetes.pod.uid=$uid" io.kubernetes.container.name=app -- \
    /usr/bin/env KEEP=1 /usr/bin/perl /server.pl 198.18.1.1:5432
  local pid
  pid=$(ctr_ task ls | awk -v id="$id" '$1 == id {print $2}')
  wait_for 10 "the pod's server listening" listening 5432 ip netns exec "$ns_a"
  # From B: three connections; the second closes at once (the pod's end stays in CLOSE_WAIT: its
  # server never closes), the third when told (after B's path to A is cut: its FIN is lost).
  ip netns exec "$ns_b" python3 - "$work/go" <<'PY' &
import os, socket, sys, time
go = sys.argv[1]
ends = [socket.create_connection(("198.18.1.1", 5432)) for _ in range(3)]
for end in ends:
    end.sendall(b"hi\n"); end.recv(16)
ends[1].close()
open(os.path.join(go, "pod.ready"), "w").close()
for _ in range(1200):
    if os.path.exists(os.path.join(go, "pod.close")): break
    time.sleep(0.1)
ends[2].close()
time.sleep(120)
PY
  pids+=("$!")
  wait_for 20 "B's connections to the pod" test -e "$work/go/pod.ready"
  local pod_fields=(pod=web-0 pod_namespace=shop pod_uid="$uid" container_name=app
    container_id="$id" runtime=CONTAINER_RUNTIME_CONTAINERD pid="$pid" command=perl)
  local pod_labels="container=\"app\",host=\"wl-a\",namespace=\"shop\",pod=\"web-0\""
  expect ends 3 --pod=web-0 -- "${pod_fields[@]}"
  expect ends 3 --namespace=shop --host=wl-a -- "${pod_fields[@]}"
  expect ends 1 --namespace=shop --state=close_wait -- "${pod_fields[@]}"
  wait_for 15 "the pod's CLOSE_WAIT gauge" metric_is "$metrics_port" tcpscope_workload_connections \
    "$pod_labels,state=\"close_wait\"" 1
  wait_for 15 "the pod's ESTABLISHED gauge" metric_is "$metrics_port" \
    tcpscope_workload_connections "$pod_labels,state=\"established\"" 2
  # B's ends know which pod they talk to.
  expect ends 2 --host=wl-b --state=established -- pod=- container_id=-
  local peers
  peers=$(cli connections --host=wl-b --state=established -o json | python3 -c 'import json, sys
ends = json.load(sys.stdin).get("connections", [])
print(sum(e.get("peer", {}).get("connection", {}).get("origin", {}).get("pod") == "web-0" for e in ends))')
  [[ $peers == 2 ]] || fail "B's 2 established ends should name pod web-0 as their peer, $peers do"
  log "containerd: pod shop/web-0 (container app, pid $pid): 3 ends with namespace, pod, uid," \
    "container and process; 1 in CLOSE_WAIT; B's ends name it as their peer"

  # B's FIN to A is lost: A's end (the pod's) is half-open.
  ip -n "$ns_b" neigh replace 198.18.1.1 lladdr 02:00:00:00:00:99 nud permanent dev wlb$$
  touch "$work/go/pod.close"
  expect ends 1 --pod=web-0 --half_open -- "${pod_fields[@]}"
  wait_for 15 "the pod's half-open gauge" metric_is "$metrics_port" \
    tcpscope_workload_connections_half_open "$pod_labels,reason=\"peer_closed\"" 1
  expect events 1 --type=half_open --pod=web-0 -- "${pod_fields[@]}"
  log "containerd: B's FIN lost -> one half-open end, attributed to shop/web-0 (gauge, event, filter)"
}

# Long and hostile label values, as anyone who can start a container can set them.
hostile_part() {
  local count=$hostile_containers i id uid name namespace hostile=0
  for ((i = 0; i < count; i++)); do
    id=$(hex64)
    uid=$(uuid)
    if ((i % 2 == 0)); then  # valid but long: 253 characters
      name=p$i-$(printf 'a%.0s' $(seq 240))
      name=${name:0:253}
      namespace=ns-$i
    else
      case $((i % 6)) in
        1) name='evil"} 1'$'\n''# TYPE x counter' ;;
        3) name="$(printf 'b%.0s' $(seq 300))" ;;
        5) name=$'p\xc3\xa9d-\xe2\x80\x8b'"$i" ;;
      esac
      namespace='ns{with}="quotes"'
      hostile=$((hostile + 2))  # pod name and namespace are dropped
    fi
    run_pod "$id" "$uid" "$ns_a" "io.kubernetes.pod.name=$name" \
      "io.kubernetes.pod.namespace=$namespace" "io.kubernetes.pod.uid=$uid" \
      io.kubernetes.container.name=c -- /usr/bin/perl /client.pl 198.18.1.1:5432 1 /never
  done
  log "$count containers started in k8s.io ($hostile hostile label values among them)"
  # Every container's connection in a snapshot: the pod's server holds them all.
  local exposition="$work/exposition.txt" established
  pod_ends() {
    [[ $(cli connections --host=wl-a --port=5432 --state=established -o json |
      python3 -c 'import json, sys; print(len(json.load(sys.stdin).get("connections", [])))') \
      == $((2 * count + 2)) ]]  # both ends of each, and the pod's 2 with B still established
  }
  wait_for 30 "the $count containers' connections in wl-a's snapshot" pod_ends
  sleep 2  # a snapshot after every container is named
  scrape "$metrics_port" >"$exposition"
  promtool check metrics <"$exposition" >"$work/promtool.log" 2>&1 ||
    fail "promtool check metrics: $(head -n 20 "$work/promtool.log")"
  kill -0 "$service_pid" || fail "the service died"
  kill -0 "$(cat "$work/agent-wl-a.pid")" || fail "agent wl-a died"
  # The budget (README, "Series budget"): 161 host series + 24 per workload label set (one
  # container per pod here; at most --max_pods_per_host = 100, plus "other") + 12 per port (at most
  # 50, plus "other").
  local series budget=$((161 + 24 * 101 + 12 * 51)) workloads
  series=$(grep -c '^tcpscope_[a-z_]*{.*host="wl-a"' "$exposition" || true)
  workloads=$(grep -c '^tcpscope_workload_connections{.*host="wl-a",.*state="established"}' \
    "$exposition" || true)
  log "exposition: promtool clean; host wl-a has $series series (budget $budget), $workloads" \
    "workloads with their own series"
  ((series <= budget)) || fail "host wl-a has $series series, over the budget of $budget"
  ((workloads == 101)) || fail "$workloads workloads have series; want 100 pods and \"other\""
  established=$(metric "$metrics_port" tcpscope_workload_connections \
    'container="",host="wl-a",namespace="",pod="other",state="established"')
  # 201 pods (web-0 and the hostile test's) for 100 slots: web-0 and 99 others have theirs.
  [[ $established == $((count + 1 - 100)) ]] ||
    fail "pod=\"other\" holds $established established ends; want $((count + 1 - 100))"
  local dropped
  dropped=$(scrape "$(cat "$work/agent-wl-a.port")" |
    awk '/^tcpscope_agent_workload_names_dropped_total/ {sum += $2} END {print sum + 0}')
  [[ $dropped == "$hostile" ]] ||
    fail "the agent counted $dropped dropped names; $hostile label values were hostile"
  log "$hostile hostile names dropped and counted; pod=\"other\" sums the $established pods over the cap"
}

timed "Docker: containers, host process, host network" docker_part
timed "containerd: start, root file system" start_containerd
timed "containerd: pod with labels, CLOSE_WAIT, half-open" containerd_part
timed "$hostile_containers containers with hostile names" hostile_part
log "passed"
printf 'workload_identity_test: %s\n' "${timings[@]}"
