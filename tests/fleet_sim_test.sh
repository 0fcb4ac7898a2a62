#!/usr/bin/env bash
# The fleet simulator (bench/fleet_sim.cc) against the real tcpscope-service, small: 200 hosts x
# 200 connection ends (every end paired with an end on another simulated host), 20 new
# connections per host per second with their events on both ends, keepalive probes and timeouts,
# failed connects, 2 s snapshots, 20 s of churn. The simulator checks, after draining every ack,
# that the service counted each acknowledged event exactly once (/metrics sums and the Summary
# RPC's fleet totals, per event kind), that every end of every host is listed PAIRED with its
# peer on another host (ListConnections per host, and the paired listing of 5 hosts has exactly
# one row per connection), that the pair index holds exactly 20000 connections and 40000 ends,
# and that there was no half_open event and every half-open gauge is 0; this script asserts its
# JSON line's exact numbers too. Run by ctest with TCPSCOPE_BIN_DIR set; about 35 s.
#
# With --replicas=N (N > 1): the same fleet, smaller (60 hosts x 100 ends), over a tier of N
# services (--peers): each simulated host homes on its rendezvous replica, the checks sum every
# replica's /metrics and ask one replica (which fans out), and the pair-index sums across the
# replicas must still be the fleet's every connection, once.
#
# With --kill-after=S as well: the last replica gets SIGKILL S seconds into the measured load;
# the simulated hosts fail over as agents do (--failover_after=2s, resending what was not
# acknowledged), and the checks expect exactly what the replicas still up acknowledged, every
# pair indexed again on them, no half_open event (the ring's rebuild judged nothing from its
# partial view), and every host of the killed replica rehomed within the grace plus 2 s.
set -euo pipefail

bin_dir=${TCPSCOPE_BIN_DIR:?TCPSCOPE_BIN_DIR must name the build directory}
service_bin=$bin_dir/service/tcpscope-service
sim_bin=$bin_dir/bench/tcpscope-fleet-sim
work=$(mktemp -d "${TMPDIR:-/tmp}/fleet_sim_test.XXXXXX")
service_pids=()
replicas=1
kill_after=""
hosts=200
ends=200
for arg in "$@"; do
  case "$arg" in
    --replicas=*) replicas=${arg#*=} ;;
    --kill-after=*) kill_after=${arg#*=} ;;
    *) echo "fleet_sim_test: unknown argument $arg" >&2; exit 2 ;;
  esac
done
if [[ $replicas -gt 1 ]]; then
  hosts=60
  ends=100
fi
if [[ -n $kill_after && $replicas -lt 2 ]]; then
  echo "fleet_sim_test: --kill-after needs --replicas=2 or more" >&2
  exit 2
fi

fail() {
  echo "fleet_sim_test: FAIL: $*" >&2
  for file in "$work/sim.log" "$work"/service*.log; do
    [[ -f $file ]] || continue
    echo "--- $(basename "$file") (last 30 lines)" >&2
    tail -n 30 "$file" >&2
  done
  exit 1
}

cleanup() {
  for pid in "${service_pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

[[ -x $service_bin ]] || fail "$service_bin is not built"
[[ -x $sim_bin ]] || fail "$sim_bin is not built"
ulimit -n "$(ulimit -Hn)"
[[ $(ulimit -n) -gt $((2 * hosts + 100)) ]] || fail "ulimit -n $(ulimit -n) is too low"

ports=($(python3 -c '
import socket, sys
sockets = [socket.socket() for _ in range(2 * int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))' "$replicas"))
targets=()
metrics_urls=()
for ((i = 0; i < replicas; i++)); do
  targets+=("127.0.0.1:${ports[2 * i]}")
  metrics_urls+=("http://127.0.0.1:${ports[2 * i + 1]}/metrics")
done
target=$(IFS=,; echo "${targets[*]}")
metrics_url=$(IFS=,; echo "${metrics_urls[*]}")
for ((i = 0; i < replicas; i++)); do
  tier_flags=()
  if [[ $replicas -gt 1 ]]; then
    tier_flags=(--peers="$target" --advertise="${targets[i]}" --replica_down_after=1s)
  fi
  "$service_bin" --grpc_listen="${targets[i]}" --metrics_listen="127.0.0.1:${ports[2 * i + 1]}" \
    "${tier_flags[@]}" >"$work/service$i.log" 2>&1 &
  service_pids+=($!)
done
for ((i = 0; i < replicas; i++)); do
  for _ in $(seq 100); do
    (echo >"/dev/tcp/127.0.0.1/${ports[2 * i]}") 2>/dev/null && break
    kill -0 "${service_pids[i]}" 2>/dev/null || fail "service $i exited at start"
    sleep 0.1
  done
done
if [[ $replicas -gt 1 ]]; then
  # Every replica counts the others in its ring, and the ring's quiet window (2 s) is over.
  for ((i = 0; i < replicas; i++)); do
    for attempt in $(seq 100); do
      up=$(python3 -c '
import sys, urllib.request
for line in urllib.request.urlopen(sys.argv[1], timeout=2).read().decode().splitlines():
    if line.startswith("tcpscope_service_replica_peers_up "):
        print(int(float(line.split()[1])))' "${metrics_urls[i]}" 2>/dev/null || true)
      [[ $up == $((replicas - 1)) ]] && break
      [[ $attempt -lt 100 ]] || fail "replica $i does not see the others"
      sleep 0.1
    done
  done
  sleep 2
fi

start=$SECONDS
status=0
failover=()
[[ -z $kill_after ]] || failover=(--failover_after=2s)
"$sim_bin" --target="$target" --hosts=$hosts --ends_per_host=$ends \
  --snapshot_interval=2s --new_per_second=20 --duration=20s --service_pid="${service_pids[0]}" \
  --metrics_url="$metrics_url" --check_hosts=$hosts "${failover[@]}" \
  --label=fleet_sim_test >"$work/result.json" 2>"$work/sim.log" &
sim_pid=$!
killed=""
if [[ -n $kill_after ]]; then
  for _ in $(seq 600); do
    grep -q "measuring for" "$work/sim.log" && break
    kill -0 "$sim_pid" 2>/dev/null || break
    sleep 0.1
  done
  sleep "$kill_after"
  killed=${service_pids[replicas - 1]}
  kill -KILL "$killed"
  wait "$killed" 2>/dev/null || true
  echo "fleet_sim_test: killed replica $((replicas - 1)) (${targets[replicas - 1]})"
fi
wait "$sim_pid" || status=$?
elapsed=$((SECONDS - start))
cat "$work/sim.log"
cat "$work/result.json"
[[ $status -eq 0 ]] || fail "the simulator's checks failed (exit $status)"
for pid in "${service_pids[@]}"; do
  [[ $pid == "$killed" ]] || kill -0 "$pid" 2>/dev/null || fail "a service died"
done

# The JSON line's exact numbers (the simulator compared the service's counters with them).
killed_target=""
[[ -z $killed ]] || killed_target=${targets[replicas - 1]}
python3 - "$work/result.json" "$hosts" "$ends" "$killed_target" <<'PY' || fail "the simulator's result is not exact"
import json, sys
result = json.loads(open(sys.argv[1]).read())
hosts, ends = int(sys.argv[2]), int(sys.argv[3])
killed = sys.argv[4]
kinds = result["events_acked_by_kind"]
expect = {
    "checks_passed": True,
    "error": None,
    "failures": [],
    "ends": hosts * ends,
    "expected_pairs": hosts * ends // 2,
    "checked_hosts": hosts,
    "checked_ends": hosts * ends,
    "half_open_events": 0,
    "events_sent": result["events_acked"],
    "events_acked": sum(kinds.values()),
}
bad = [f"{key}={result[key]!r}, expected {want!r}" for key, want in expect.items()
       if result[key] != want]
# Each churned connection closes one connection and opens one, with an event on both ends.
if kinds["handshake"] != kinds["close"]:
    bad.append(f"handshakes {kinds['handshake']} != closes {kinds['close']}")
for kind in ("handshake", "handshake_failed", "close", "keepalive_probe", "keepalive_timeout",
             "keepalive_answered"):
    if kinds[kind] == 0:
        bad.append(f"no {kind} event was sent")
if kinds["half_open"] != 0:
    bad.append("the simulator sent half_open events")
if killed:
    homed = result["hosts_by_replica"]
    if result["replicas_lost"] != 1 or homed.get(killed, 0) != 0 or sum(homed.values()) != hosts:
        bad.append(f"after the kill: {result['replicas_lost']} replicas lost, hosts {homed}")
    if result["hosts_rehomed"] == 0 or result["rehome_max_s"] > 4.0:
        bad.append(f"{result['hosts_rehomed']} hosts rehomed, the last after "
                   f"{result['rehome_max_s']} s (bound: --failover_after=2s + 2 s)")
    if result["events_lost_with_replicas"] == 0:
        bad.append("the killed replica had acknowledged nothing: the kill came too early")
for problem in bad:
    print("fleet_sim_test:", problem, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
echo "fleet_sim_test: PASS in ${elapsed}s"
