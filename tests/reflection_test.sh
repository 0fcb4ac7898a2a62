#!/usr/bin/env bash
# Integration: the real tcpscope-service answers a generic reflection client
# (reflection_client.py, no tcpscope .proto files): exactly the four expected services, and
# ListAgents, ListConnections, Summary and GetEvents each return OK. Then SIGTERM must stop the
# service cleanly (exit 0). Run by ctest with TCPSCOPE_BIN_DIR set.
set -euo pipefail

bin_dir=${TCPSCOPE_BIN_DIR:?TCPSCOPE_BIN_DIR must name the build directory}
here=$(cd "$(dirname "$0")" && pwd)
# Debian's interpreter: python3-grpcio and python3-grpc-tools are installed for it, not for
# whatever python3 comes first on PATH.
python=${TCPSCOPE_PYTHON:-/usr/bin/python3}
service_bin=$bin_dir/service/tcpscope-service
work=$(mktemp -d "${TMPDIR:-/tmp}/reflection_test.XXXXXX")
service_pid=

fail() {
  echo "reflection_test: FAIL: $*" >&2
  if [[ -f $work/service.log ]]; then
    echo "--- service log" >&2
    cat "$work/service.log" >&2
  fi
  exit 1
}

cleanup() {
  if [[ -n $service_pid ]] && kill -0 "$service_pid" 2>/dev/null; then
    kill -KILL "$service_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

[[ -x $service_bin ]] || fail "$service_bin is not built"
"$python" -c 'import grpc, grpc_tools, google.protobuf' 2>/dev/null ||
  fail "$python lacks python3-grpcio/python3-grpc-tools/python3-protobuf (scripts/setup)"

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
grpc_port=$(free_port)
metrics_port=$(free_port)

"$service_bin" --grpc_listen="127.0.0.1:$grpc_port" --metrics_listen="127.0.0.1:$metrics_port" \
  >"$work/service.log" 2>&1 &
service_pid=$!

# The client waits for the channel itself (--timeout); the service needs no more than that.
if ! "$python" "$here/reflection_client.py" --target="127.0.0.1:$grpc_port" --timeout=10 \
  >"$work/client.out" 2>"$work/client.err"; then
  cat "$work/client.out" >&2
  fail "reflection_client.py: $(cat "$work/client.err")"
fi
cat "$work/client.out"

"$python" - "$work/client.out" <<'PY' || fail "unexpected client output (above)"
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1])]
services = lines[0]["services"]
expected = sorted(["tcpscope.v1.Observer", "tcpscope.v1.Ingest", "grpc.health.v1.Health",
                   "grpc.reflection.v1alpha.ServerReflection"])
if services != expected:
    sys.exit(f"services {services}, expected {expected}")
calls = {line["call"]: line["ok"] for line in lines[1:]}
expected_calls = {f"tcpscope.v1.Observer/{name}": True
                  for name in ("ListAgents", "ListConnections", "Summary", "GetEvents")}
if calls != expected_calls:
    sys.exit(f"calls {calls}, expected {expected_calls}")
PY

kill -TERM "$service_pid"
for _ in $(seq 100); do
  kill -0 "$service_pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$service_pid" 2>/dev/null && fail "service still running 10 s after SIGTERM"
status=0
wait "$service_pid" || status=$?
service_pid=
[[ $status -eq 0 ]] || fail "service exited with status $status after SIGTERM"
echo "reflection_test: 4 services, 4 calls OK, clean exit on SIGTERM"
