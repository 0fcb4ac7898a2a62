#!/usr/bin/env bash
# Renders and validates deploy/'s Kubernetes and Compose files without a cluster or images:
# `kubectl kustomize deploy/kubernetes` renders as committed and the PrometheusRule matches
# deploy/prometheus/alerts.yml; then, on a copy of deploy/ where dashboards, Grafana provisioning or
# alert rules are still missing (they come from another change) and get placeholders, the rendered
# objects and `docker-compose config` are checked by validate_manifests.py, the Prometheus config
# by promtool, and the YAML written here by yamllint.
# Needs kubectl, docker-compose, yamllint, promtool and PyYAML (scripts/setup): skips loudly
# without them, fails instead where TCPSCOPE_REQUIRE_ROOT_TESTS=1 (CI).
set -euo pipefail

src=${TCPSCOPE_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
here=$src/tests/deploy
python=${TCPSCOPE_PYTHON:-/usr/bin/python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/manifests_test.XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() {
  echo "manifests_test: FAIL: $*" >&2
  exit 1
}
skip() {
  if [[ ${TCPSCOPE_REQUIRE_ROOT_TESTS:-} == 1 ]]; then
    fail "cannot run: $* (TCPSCOPE_REQUIRE_ROOT_TESTS=1)"
  fi
  echo "manifests_test: SKIPPED: $* (scripts/setup installs it)"
  exit 0
}
for tool in kubectl docker-compose yamllint promtool; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done
"$python" -c 'import yaml' 2>/dev/null || skip "$python has no PyYAML (python3-yaml)"
validate() { "$python" "$here/validate_manifests.py" "$@" --source "$src"; }

# 1. The tree as committed.
kubectl kustomize "$src/deploy/kubernetes" >"$work/committed.yaml" 2>"$work/kustomize.err" ||
  fail "kubectl kustomize deploy/kubernetes: $(cat "$work/kustomize.err")"
echo "manifests_test: kubectl kustomize deploy/kubernetes renders" \
  "$(grep -c '^kind:' "$work/committed.yaml") objects ($(kubectl version --client --short 2>/dev/null ||
    kubectl version --client 2>/dev/null | head -n 1))"
"$python" "$src/deploy/kubernetes/generate-prometheusrule" --check ||
  fail "deploy/kubernetes/prometheusrule.yaml does not match deploy/prometheus/alerts.yml"
docker-compose -f "$src/deploy/compose/compose.yaml" config -q ||
  fail "docker-compose config refuses deploy/compose/compose.yaml"

# 2. A copy with placeholders for what deploy/ does not have yet.
cp -r "$src/deploy" "$work/deploy"
deploy=$work/deploy
placeholders=()
if ! compgen -G "$deploy/grafana/dashboards/*.json" >/dev/null; then
  placeholders+=("grafana/dashboards/*.json")
  mkdir -p "$deploy/grafana/dashboards"
  echo '{"title": "placeholder", "uid": "placeholder", "panels": []}' \
    >"$deploy/grafana/dashboards/placeholder.json"
  "$python" - "$deploy/grafana/kustomization.yaml" <<'PY'
import sys, yaml
path = sys.argv[1]
kustomization = yaml.safe_load(open(path))
kustomization["configMapGenerator"] = (kustomization.get("configMapGenerator") or []) + [
    {"name": "tcpscope-dashboard-placeholder", "files": ["dashboards/placeholder.json"]}]
yaml.safe_dump(kustomization, open(path, "w"))
PY
fi
if [[ ! -d $deploy/grafana/provisioning ]]; then
  placeholders+=(grafana/provisioning/)
  mkdir -p "$deploy/grafana/provisioning/datasources" "$deploy/grafana/provisioning/dashboards"
  printf 'apiVersion: 1\ndatasources:\n  - {name: Prometheus, type: prometheus, url: "http://prometheus:9090"}\n' \
    >"$deploy/grafana/provisioning/datasources/prometheus.yml"
  printf 'apiVersion: 1\nproviders:\n  - {name: tcpscope, type: file, options: {path: /var/lib/grafana/dashboards/tcpscope}}\n' \
    >"$deploy/grafana/provisioning/dashboards/tcpscope.yml"
fi
if [[ ! -f $deploy/prometheus/prometheus.yml ]]; then
  placeholders+=(prometheus/prometheus.yml)
  mkdir -p "$deploy/prometheus"
  cp "$here/placeholder_prometheus.yml" "$deploy/prometheus/prometheus.yml"
fi
if [[ ! -f $deploy/prometheus/alerts.yml ]]; then
  placeholders+=(prometheus/alerts.yml)
  cp "$here/placeholder_alerts.yml" "$deploy/prometheus/alerts.yml"
  "$python" "$deploy/kubernetes/generate-prometheusrule"
fi
if ((${#placeholders[@]})); then
  echo "manifests_test: NOTE: deploy/ has no ${placeholders[*]} yet; checked with placeholders"
fi

kubectl kustomize "$deploy/kubernetes" >"$work/kubernetes.yaml" 2>"$work/kustomize.err" ||
  fail "kubectl kustomize (with placeholders): $(cat "$work/kustomize.err")"
validate kubernetes "$work/kubernetes.yaml" --deploy "$deploy" || fail "Kubernetes objects (above)"

docker-compose -f "$deploy/compose/compose.yaml" config >"$work/compose.yaml" ||
  fail "docker-compose config (with placeholders)"
validate compose "$work/compose.yaml" --deploy "$deploy" || fail "Compose services (above)"

promtool check config "$deploy/prometheus/prometheus.yml" >"$work/promtool.out" 2>&1 ||
  fail "promtool check config deploy/prometheus/prometheus.yml: $(cat "$work/promtool.out")"

# 3. The YAML written for deploy (not the generated PrometheusRule, nor other changes' files).
yamllint -s -d '{extends: default, rules: {line-length: {max: 100}, document-start: disable}}' \
  "$src"/deploy/kubernetes/{kustomization,namespace,service,agent,monitoring}.yaml \
  "$src/deploy/compose/compose.yaml" "$src/deploy/grafana/kustomization.yaml" "$here"/*.yml ||
  fail "yamllint (above)"

echo "manifests_test: passed"
