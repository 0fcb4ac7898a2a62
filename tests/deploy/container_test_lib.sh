# Docker for the tests that run containers (sourced by docker_test.sh and
# workload_identity_test.sh): start_dockerd starts Debian's dockerd for the test's length, with its
# own socket and state under $docker_root (kept: the base image and the layer cache make the next
# run fast), no bridge and no iptables rules (nothing on the host's network changes);
# ensure_base_image makes $base_image, a Debian 12 minbase image (debootstrap + docker import: no
# registry is needed), unless it is cached (TCPSCOPE_DOCKER_REBUILD_BASE=1 makes it again).
# Also the helpers both use: timed, wait_for, free_port, scrape, metric.
# The caller defines work, docker_root, base_image, dockerd_pid, timings and the functions log
# and fail.
# shellcheck shell=bash

timed() {  # timed LABEL COMMAND...: runs it, records its duration
  local label=$1 start=$SECONDS
  shift
  "$@"
  timings+=("$(printf '%5d s  %s' $((SECONDS - start)) "$label")")
}
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    ((SECONDS < deadline)) || fail "$what: not within $seconds s"
    sleep 0.2
  done
}
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
scrape() {  # scrape PORT (on 127.0.0.1) or ADDRESS:PORT
  local target=$1
  [[ $target == *:* ]] || target=127.0.0.1:$target
  curl -sf --max-time 5 "http://$target/metrics" || true
}
metric() {  # metric PORT|ADDRESS:PORT NAME [LABELS] (sorted by name, as exposed): its value, else 0
  local series=$2
  [[ -z ${3:-} ]] || series="$2{$3}"
  scrape "$1" | awk -v name="$series" '$1 == name {print $2; found = 1} END {if (!found) print 0}'
}

start_dockerd() {
  local exec_root=/run/tcpscope-docker
  mkdir -p "$docker_root" "$exec_root"
  echo '{}' >"$work/daemon.json"  # the host's /etc/docker/daemon.json does not apply
  export DOCKER_HOST=unix://$exec_root/docker.sock
  dockerd --config-file "$work/daemon.json" --data-root "$docker_root" --exec-root "$exec_root" \
    --pidfile "$exec_root/dockerd.pid" --host "$DOCKER_HOST" \
    --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 150); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.2
  done
  cat "$work/dockerd.log" >&2
  fail "dockerd did not start"
}
# The apt mirror this machine uses for Debian and its security archive (deb822 or one-line).
mirror_of() {
  python3 - "$1" <<'PY'
import glob, re, sys
suite = sys.argv[1]
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*")):
    try:
        text = open(path).read()
    except OSError:
        continue
    if path.endswith(".sources"):
        for block in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", block, re.M))
            if suite in fields.get("Suites", "").split() and "deb" in fields.get("Types", "").split():
                print(fields["URIs"].split()[0]); sys.exit(0)
    else:
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                print(words[1]); sys.exit(0)
sys.exit(1)
PY
}

make_base_image() {
  local mirror security rootfs=$work/rootfs
  mirror=$(mirror_of bookworm) || mirror=http://deb.debian.org/debian
  security=$(mirror_of bookworm-security) || security=http://deb.debian.org/debian-security
  log "debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; fail "debootstrap failed"; }
  # The same apt sources as the official image.
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF
  rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  tar -C "$rootfs" --numeric-owner -c . |
    docker import --change 'CMD ["bash"]' - "$base_image" >/dev/null
  rm -rf "$rootfs"
}

ensure_base_image() {
  if [[ ${TCPSCOPE_DOCKER_REBUILD_BASE:-} != 1 ]] && docker image inspect "$base_image" >/dev/null 2>&1; then
    log "base image $base_image: cached"
  else
    timed "base image (debootstrap + docker import)" make_base_image
  fi
}
