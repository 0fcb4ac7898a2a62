#!/usr/bin/env bash
# Proof that the container images build and run: builds deploy/docker/Dockerfile's targets on a
# Debian base image made here (debootstrap + docker import: no registry is needed), runs the
# service and the agent (explicit --cap-add, never --privileged; read-only) on the host network,
# makes TCP connections on the host's loopback and checks that the service counts them (its
# /metrics, and exactly, the CLI inside the service image), that a connection in another network
# namespace reaches the snapshots, and that deploy/compose/compose.yaml's two service replicas and
# agent come up (the replicas see each other, the agent homes on one) and are scraped by Debian's
# Prometheus with deploy/prometheus/'s config. Prints each step's time.
#
# Needs root, docker.io and debootstrap (scripts/setup); skips loudly without them, fails instead
# where TCPSCOPE_REQUIRE_ROOT_TESTS=1. Uses a running Docker daemon if there is one; otherwise starts
# Debian's dockerd for the test's length, with its own socket and state under
# TCPSCOPE_DOCKER_ROOT (default /var/lib/tcpscope-docker, kept: the base image and the layer cache
# make the next run fast), no bridge and no iptables rules (nothing on the host's network changes).
# TCPSCOPE_DOCKER_REBUILD_BASE=1 makes the base image again.
# shellcheck disable=SC2317  # functions called through wait_for and traps
set -euo pipefail

src=${TCPSCOPE_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
docker_root=${TCPSCOPE_DOCKER_ROOT:-/var/lib/tcpscope-docker}
base_image=tcpscope-test-base:bookworm
tag="test"
connections=20
work=$(mktemp -d "${TMPDIR:-/tmp}/docker_test.XXXXXX")
dockerd_pid=
netns=
netns_pid=
prometheus_pid=
compose_project=
containers=()
timings=()

log() { echo "docker_test: $*"; }
fail() {
  echo "docker_test: FAIL: $*" >&2
  for name in "${containers[@]}"; do
    echo "--- docker logs $name" >&2
    docker logs "$name" 2>&1 | tail -n 40 >&2 || true
  done
  exit 1
}
skip() {
  if [[ ${TCPSCOPE_REQUIRE_ROOT_TESTS:-} == 1 ]]; then
    echo "docker_test: FAIL: cannot run: $* (TCPSCOPE_REQUIRE_ROOT_TESTS=1)" >&2
    exit 1
  fi
  echo "docker_test: SKIPPED: $* (scripts/setup installs docker.io and debootstrap; run as root)"
  exit 0
}

cleanup() {
  local status=$?
  if [[ -n $prometheus_pid ]]; then kill "$prometheus_pid" 2>/dev/null || true; fi
  if [[ -n $netns_pid ]]; then kill "$netns_pid" 2>/dev/null || true; fi
  if [[ -n $netns ]]; then ip netns del "$netns" 2>/dev/null || true; fi
  if [[ -n $compose_project ]]; then compose_down; fi
  for name in "${containers[@]}"; do docker rm -f "$name" >/dev/null 2>&1 || true; done
  if [[ -n $dockerd_pid ]]; then
    # Untagged leftovers of earlier builds; the tagged images and their layers stay as the cache.
    docker image prune -f >/dev/null 2>&1 || true
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$dockerd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

[[ $(id -u) == 0 ]] || skip "not root"
for tool in dockerd debootstrap curl python3 ss ip; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done
# Debian's client, which matches Debian's daemon, before any other docker on PATH.
if [[ -x /usr/bin/docker ]]; then docker() { /usr/bin/docker "$@"; }; fi
command -v docker >/dev/null || skip "the docker client is not installed"
export DOCKER_BUILDKIT=0  # the classic builder: no buildx plugin, works with every client

# shellcheck source=tests/deploy/container_test_lib.sh
source "$src/tests/deploy/container_test_lib.sh"
if docker info >/dev/null 2>&1; then
  log "using the running Docker daemon"
else
  log "starting dockerd (state in $docker_root)"
  timed "start dockerd" start_dockerd
fi
ensure_base_image

build() {  # build TARGET: one stage of deploy/docker/Dockerfile, tagged tcpscope-TARGET:test
  log "docker build --target $1"
  docker build --network=host --build-arg BASE_IMAGE="$base_image" -f "$src/deploy/docker/Dockerfile" \
    --target "$1" -t "tcpscope-$1:$tag" "$src" >"$work/build-$1.log" 2>&1 ||
    { tail -n 40 "$work/build-$1.log" >&2; fail "docker build --target $1 failed"; }
}
# The build stage is tagged too, so its apt layer survives pruning and later builds reuse it.
timed "build stage (apt, cmake)" build build
timed "service image" build service
timed "agent image" build agent
grep -h '^runtime packages:' "$work/build-build.log" | head -n 1 || true
for image in service agent; do
  log "tcpscope-$image:$tag: $(docker image inspect -f '{{.Size}}' "tcpscope-$image:$tag" |
    awk '{printf "%.0f MB", $1 / 1e6}')"
done

grpc_port=$(free_port)
metrics_port=$(free_port)
agent_metrics_port=$(free_port)
host=$(hostname)
service=tcpscope-test-service-$$
agent=tcpscope-test-agent-$$

# Both as the Kubernetes manifests run them: read-only root, no privilege escalation for the
# service, all capabilities dropped but the agent's.
run_started=$SECONDS
containers+=("$service")
docker run -d --name "$service" --network=host --read-only --cap-drop=ALL \
  --security-opt=no-new-privileges "tcpscope-service:$tag" \
  --grpc_listen="127.0.0.1:$grpc_port" --metrics_listen="127.0.0.1:$metrics_port" >/dev/null
[[ $(docker inspect -f '{{.Config.User}}' "$service") == 10001:10001 ]] ||
  fail "the service image does not run as user 10001"
# The capabilities the agent needs and nothing else (README, "Capabilities of the agent"). Docker
# before 23 (Debian 12's docker.io) refuses BPF and PERFMON by name; CAP_SYS_ADMIN covers them.
caps=(SYSLOG SYS_ADMIN SYS_PTRACE NET_ADMIN)
if docker run --rm --network=none --cap-drop=ALL --cap-add=BPF --cap-add=PERFMON \
  --entrypoint=true "tcpscope-agent:$tag" >/dev/null 2>"$work/caps.err"; then
  caps=(BPF PERFMON "${caps[@]}")
elif grep -q "unknown capability" "$work/caps.err"; then
  log "this Docker cannot add BPF and PERFMON by name: the agent gets CAP_SYS_ADMIN's cover"
else
  fail "docker run --cap-add=BPF: $(cat "$work/caps.err")"
fi
containers+=("$agent")
docker run -d --name "$agent" --network=host --pid=host --read-only --cap-drop=ALL \
  "${caps[@]/#/--cap-add=}" "tcpscope-agent:$tag" \
  --service="127.0.0.1:$grpc_port" --metrics_listen="127.0.0.1:$agent_metrics_port" \
  --snapshot_interval=1s >/dev/null

agent_up() { [[ $(metric "$metrics_port" tcpscope_agent_up "host=\"$host\"") == 1 ]]; }
wait_for 30 "the agent's stream to the service (tcpscope_agent_up{host=\"$host\"} 1)" agent_up
scrape "$agent_metrics_port" | grep -q "^tcpscope_agent_info{.*source=\"ebpf\"" ||
  fail "the agent did not load its eBPF program: $(scrape "$agent_metrics_port" | grep agent_info)"
if docker logs "$agent" 2>&1 | grep "without CAP_\|could not drop"; then
  fail "the agent reports a missing capability (above)"
fi
log "agent (host $host, capabilities ${caps[*]}) connected with the eBPF source"

handshakes() { metric "$metrics_port" tcpscope_handshakes_total "host=\"$host\",role=\"$1\""; }
clients_before=$(handshakes client)
servers_before=$(handshakes server)
# N connections on the host's loopback, each exchanging a line and closing.
traffic_port=$(python3 - "$connections" <<'PY'
import socket, sys
n = int(sys.argv[1])
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(n)
for _ in range(n):
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    client.sendall(b"ping\n")
    server.recv(16)
    client.close()
    server.close()
print(listener.getsockname()[1])
PY
)
log "made $connections connections to 127.0.0.1:$traffic_port"

counted() {
  (($(handshakes client) >= clients_before + connections)) &&
    (($(handshakes server) >= servers_before + connections))
}
wait_for 20 "tcpscope_handshakes_total{host=\"$host\"} to grow by $connections per role" counted
# Exactly: every end of every connection to that port, from the CLI in the service image.
events() {
  docker exec "$service" tcpscope events --service="127.0.0.1:$grpc_port" --port="$traffic_port" \
    --type="$1" --last=1000 -o json | grep -c . || true
}
exact() { [[ $(events handshake) == $((2 * connections)) && $(events close) == $((2 * connections)) ]]; }
wait_for 20 "exactly $((2 * connections)) handshake and close events on port $traffic_port" exact
log "service counted the connections: handshakes client $clients_before -> $(handshakes client)," \
  "server $servers_before -> $(handshakes server); $((2 * connections)) handshake and close events"

# A connection held open in another network namespace shows in the snapshots: the agent reaches
# it through the host's /proc (--pid=host) with CAP_SYS_ADMIN and CAP_SYS_PTRACE.
netns=tcpscope-docker-test-$$
ip netns add "$netns"
ip -n "$netns" link set lo up
ip netns exec "$netns" python3 -c '
import socket, sys, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()
open(sys.argv[1], "w").write(str(listener.getsockname()[1]))
time.sleep(60)' "$work/netns_port" &
netns_pid=$!
wait_for 10 "the connection in $netns" test -s "$work/netns_port"
netns_inode=$(stat -L -c %i "/run/netns/$netns")
in_netns() {
  docker exec "$service" tcpscope connections --service="127.0.0.1:$grpc_port" \
    --port="$(cat "$work/netns_port")" -o json | python3 -c 'import json, sys
ends = json.load(sys.stdin).get("connections", [])
sys.exit(0 if sum(e["connection"]["origin"].get("netns_inode") == sys.argv[1] for e in ends) == 2 else 1)' \
    "$netns_inode"
}
wait_for 15 "both ends of the connection in $netns (netns inode $netns_inode) in the snapshots" in_netns
log "both ends of a connection in network namespace $netns are in the service's connection table"
kill "$netns_pid"
netns_pid=
ip netns del "$netns"
netns=

docker stop -t 10 "$agent" "$service" >/dev/null
for name in "$agent" "$service"; do
  [[ $(docker inspect -f '{{.State.ExitCode}}' "$name") == 0 ]] ||
    fail "$name exited with $(docker inspect -f '{{.State.ExitCode}}' "$name") on SIGTERM"
done
timings+=("$(printf '%5d s  %s' $((SECONDS - run_started)) "run, traffic, checks, stop")")

# The Compose stack's service replicas and agent as compose.yaml defines them (its Prometheus and
# Grafana images would need a registry), scraped by Debian's Prometheus with deploy/prometheus/'s
# config (the host names become the addresses that compose.yaml's extra_hosts give them: replica a
# on 127.0.0.1, b on 127.0.0.2) and alert rules.
compose_stack() {
  local prometheus_dir=$src/deploy/prometheus prometheus_port
  local replica_a=127.0.0.1:9700 replica_b=127.0.0.2:9700
  docker tag "tcpscope-service:$tag" tcpscope-service:latest
  docker tag "tcpscope-agent:$tag" tcpscope-agent:latest
  compose_project=tcpscope-test-$$
  docker-compose -p "$compose_project" -f "$src/deploy/compose/compose.yaml" up -d --no-build \
    tcpscope-service-a tcpscope-service-b tcpscope-agent >"$work/compose.log" 2>&1 ||
    fail "docker-compose up: $(cat "$work/compose.log")"
  containers+=("${compose_project}_tcpscope-service-a_1" "${compose_project}_tcpscope-service-b_1"
    "${compose_project}_tcpscope-agent_1")
  peers_up() {
    [[ $(metric "$replica_a" tcpscope_service_replica_peers_up) == 1 &&
      $(metric "$replica_b" tcpscope_service_replica_peers_up) == 1 ]]
  }
  wait_for 30 "the Compose replicas to see each other (tcpscope_service_replica_peers_up 1)" peers_up
  # Homed on exactly one replica (rendezvous hashing picks which).
  compose_agent_up() {
    (($(metric "$replica_a" tcpscope_agent_up "host=\"$host\"") +
      $(metric "$replica_b" tcpscope_agent_up "host=\"$host\"") == 1))
  }
  wait_for 30 "the Compose agent's stream to one Compose replica" compose_agent_up

  mkdir -p "$work/prometheus"
  if [[ -f $prometheus_dir/prometheus.yml ]]; then
    cp "$prometheus_dir"/*.yml "$work/prometheus/"
  else
    log "NOTE: deploy/prometheus/ has no prometheus.yml yet; using tests/deploy's placeholder"
    cp "$src/tests/deploy/placeholder_prometheus.yml" "$work/prometheus/prometheus.yml"
    cp "$src/tests/deploy/placeholder_alerts.yml" "$work/prometheus/alerts.yml"
  fi
  sed -i -e 's/tcpscope-service-b:\([0-9]\)/127.0.0.2:\1/g' \
    -e 's/\(tcpscope-service-a\|tcpscope-agent\|localhost\):\([0-9]\)/127.0.0.1:\2/g' \
    -e 's/scrape_interval: 15s/scrape_interval: 1s/' "$work/prometheus/prometheus.yml"
  prometheus_port=$(free_port)
  prometheus --config.file="$work/prometheus/prometheus.yml" \
    --storage.tsdb.path="$work/prometheus-data" --web.listen-address="127.0.0.1:$prometheus_port" \
    >"$work/prometheus.log" 2>&1 &
  prometheus_pid=$!
  query() {
    curl -sf --max-time 5 "http://127.0.0.1:$prometheus_port/api/v1/$1" ${2:+--data-urlencode "$2"} ||
      true
  }
  scraped() {
    query query 'query=sum(up{job=~"tcpscope-service|tcpscope-agent"})' |
      grep -q '"value":\[[0-9.]*,"3"\]' &&
      query query "query=tcpscope_agent_up{job=\"tcpscope-service\",host=\"$host\"}" |
      grep -q '"1"\]'
  }
  wait_for 30 "Prometheus scraping the Compose replicas and agent" scraped
  local groups
  groups=$(query rules | python3 -c 'import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
print(sum(len(g["rules"]) for g in groups))')
  ((groups > 0)) || fail "Prometheus loaded no alert rules: $(tail -n 5 "$work/prometheus.log")"
  kill "$prometheus_pid"
  wait "$prometheus_pid" || true
  prometheus_pid=
  compose_down
  compose_project=
  log "Compose replicas and agent up; Prometheus scraped all three, alert rules loaded: $groups"
}
compose_down() {
  docker-compose -p "$compose_project" -f "$src/deploy/compose/compose.yaml" down -v \
    >/dev/null 2>&1 || true
}
if ! command -v docker-compose >/dev/null || ! command -v prometheus >/dev/null; then
  [[ ${TCPSCOPE_REQUIRE_ROOT_TESTS:-} != 1 ]] || fail "docker-compose or prometheus is not installed"
  log "NOTE: not starting the Compose stack: docker-compose or prometheus is not installed"
elif ss -Hltn 'sport = :7700 or sport = :9700 or sport = :9701' | grep -q .; then
  log "NOTE: not starting the Compose stack: 127.0.0.1:7700, 9700 or 9701 is in use"
else
  timed "Compose: service, agent, Prometheus" compose_stack
fi

log "passed"
printf 'docker_test: %s\n' "${timings[@]}"
