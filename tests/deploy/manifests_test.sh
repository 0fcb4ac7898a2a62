#!/usr/bin/env bash
# Renders and validates deploy/'s Kubernetes and Compose files without a cluster or images:
# `kubectl kustomize deploy/kubernetes` renders and the PrometheusRule matches
# deploy/prometheus/alerts.yml; the rendered objects and `docker-compose config` are checked by
# validate_manifests.py (with the service's replica tier: StatefulSet, headless Service, --peers,
# --advertise and the agents' --service, PodDisruptionBudget, each replica scraped once; Compose's
# two replicas), the Prometheus configs (and the remote-write example) by promtool, and the YAML
# written here by yamllint.
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

# 2. The rendered objects, the Compose services and the Prometheus config.
deploy=$src/deploy
validate kubernetes "$work/committed.yaml" --deploy "$deploy" || fail "Kubernetes objects (above)"

docker-compose -f "$deploy/compose/compose.yaml" config >"$work/compose.yaml" ||
  fail "docker-compose config"
validate compose "$work/compose.yaml" --deploy "$deploy" || fail "Compose services (above)"

for config in prometheus.yml remote-write-example.yml; do
  promtool check config "$deploy/prometheus/$config" >"$work/promtool.out" 2>&1 ||
    fail "promtool check config deploy/prometheus/$config: $(cat "$work/promtool.out")"
done

# 3. The YAML written for deploy (not the generated PrometheusRule, nor other changes' files).
yamllint -s -d '{extends: default, rules: {line-length: {max: 100}, document-start: disable}}' \
  "$src"/deploy/kubernetes/{kustomization,namespace,service,agent,monitoring}.yaml \
  "$src/deploy/compose/compose.yaml" "$src/deploy/grafana/kustomization.yaml" \
  "$src"/deploy/prometheus/{prometheus,remote-write-example}.yml ||
  fail "yamllint (above)"

echo "manifests_test: passed"
