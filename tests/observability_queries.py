#!/usr/bin/env python3
"""Every PromQL expression tcpscope ships, taken from the files themselves, checked two ways.

  lint   Without Prometheus running: the dashboards are what generate_dashboards.py writes, are
         well-formed Grafana JSON (ids, grid, data source variable, targets), use only metric
         names and labels of the README's metrics table (SPEC.md), the service's own
         tcpscope_service_* names and EXTRA_METRICS (half-open detection, workloads and ports),
         show every one of those but tcpscope_service_* somewhere; each alert has a severity,
         summary, description, a runbook with a `tcpscope` command, and promtool tests where
         it fires and where it does not; every expression parses (`promtool check rules` on a
         file of them as recording rules).
  check  Against a running Prometheus (tests/observability_integration_test.cc): evaluates every
         dashboard panel target and template variable and every alert rule's expression with
         /api/v1/query, and compares with a plan (JSON): which must return data (and which may
         be empty, with the reason), which must be empty, exact values, and the state of each
         alert rule as Prometheus itself evaluates it. Polls until the plan holds or its
         timeout passes, then prints a report.

Python standard library plus PyYAML (Debian's python3-yaml).
"""

import argparse
import json
import math
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

DATASOURCE_UID = "${datasource}"
# What stands for Grafana's built-in variables unless a plan says otherwise. Every query is
# evaluated as an instant query: a range panel's latest point.
DEFAULT_VARIABLES = {"__rate_interval": "30s", "__interval": "1s", "__range": "10m"}
# A Grafana variable: $name or ${name} (${name:format}). $1 is a regex group of label_replace.
VARIABLE = re.compile(r"\$(?:\{([A-Za-z_]\w*)(?::\w+)?\}|([A-Za-z_]\w*))")
# Metrics of the service beyond SPEC.md's table (which README's table must match), with their
# labels: half-open detection (the service pairs the two ends of a connection seen by two agents).
# tcpscope_connections_half_open is a gauge like tcpscope_connections_at_risk (every reason per
# host with a live snapshot, 0 included); tcpscope_half_open_detected_total a counter created at a
# host's first detection. Queries may use them, and a dashboard must show them, as SPEC's.
# Workload identity (issue 12): the same findings per Kubernetes pod's container or container
# outside Kubernetes (namespace, pod, container), and per server port, both capped per host.
WORKLOAD = {"host", "namespace", "pod", "container"}
EXTRA_METRICS = {
    "tcpscope_connections_half_open": ("gauge", {"host", "reason"}),
    "tcpscope_half_open_detected_total": ("counter", {"host", "reason"}),
    "tcpscope_workload_connections": ("gauge", WORKLOAD | {"state"}),
    "tcpscope_workload_connections_at_risk": ("gauge", WORKLOAD | {"reason"}),
    "tcpscope_workload_connections_half_open": ("gauge", WORKLOAD | {"reason"}),
    "tcpscope_workload_handshake_failures_total": ("counter", WORKLOAD | {"reason"}),
    "tcpscope_workload_keepalive_timeouts_total": ("counter", WORKLOAD),
    "tcpscope_workload_closes_total": ("counter", WORKLOAD | {"reason"}),
    "tcpscope_port_handshake_failures_total": ("counter", {"host", "port", "reason"}),
    "tcpscope_port_closes_total": ("counter", {"host", "port", "reason"}),
}
# Labels Prometheus adds to every series it scrapes: queries may group by them (per replica of
# the service: each is one target).
TARGET_LABELS = {"job", "instance"}
# What the lint puts in for the dashboards' own variables when it parses an expression.
LINT_VARIABLES = {"host": "example-host", "namespace": ".*", "pod": ".*"}


class Query:
    """One expression and where it comes from."""

    def __init__(self, source, name, expr, kind):
        self.source = source  # file name
        self.name = name      # panel title and refId, variable name, or alert name
        self.expr = expr
        self.kind = kind      # "panel", "variable" or "rule"

    def where(self):
        return f"{self.source}: {self.name}"


def dashboard_files(deploy):
    return sorted((deploy / "grafana" / "dashboards").glob("*.json"))


def panels_of(dashboard):
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(deploy):
    queries = []
    for path in dashboard_files(deploy):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable.get("query")
                expr = query.get("query") if isinstance(query, dict) else query
                queries.append(Query(path.name, f"variable ${variable['name']}", expr,
                                     "variable"))
        for panel in panels_of(dashboard):
            for target in panel.get("targets", []):
                queries.append(Query(path.name, f"{panel['title']} [{target['refId']}]",
                                     target["expr"], "panel"))
    return queries


def rule_queries(deploy):
    path = deploy / "prometheus" / "alerts.yml"
    rules = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Query(path.name, rule["alert"], rule["expr"], "rule")
            for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def substitute(expr, variables):
    def value(match):
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return variables[name]
    return VARIABLE.sub(value, expr)


# ---------------------------------------------------------------------------------------------
# lint


def readme_metrics(readme):
    """{name: (type, labels)} from README.md's metrics table, plus the tcpscope_service_* names
    its text gives (their labels as written there, e.g. `..._total{reason}`)."""
    metrics = {}
    text = readme.read_text(encoding="utf-8")
    for line in text.splitlines():
        match = re.match(r"\| `(tcpscope_\w+)` \| (\w+)[^|]* \| ([^|]*) \|", line)
        if match:
            labels = set(re.findall(r"\b(host|role|reason|initiator|state|keepalive|stage|"
                                    r"namespace|pod|container|port)\b", match.group(3)))
            metrics[match.group(1)] = (match.group(2), labels)
    for name, labels in re.findall(r"`(tcpscope_service_\w+)(?:\{([^}]*)\})?", text):
        labels = set(re.findall(r"[a-z_]+(?==)", labels)) or set(re.findall(r"\w+", labels))
        metrics.setdefault(name, ("service", labels))
    return metrics


def series_names(metrics):
    """Names a query may use, with the labels each carries (histograms: _bucket/_sum/_count)."""
    names = {}
    for name, (kind, labels) in metrics.items():
        if kind == "histogram":
            names[name + "_bucket"] = labels | {"le"}
            names[name + "_sum"] = labels
            names[name + "_count"] = labels
        else:
            names[name] = labels
    return names


def lint_dashboard(path, dashboard, errors):
    def error(message):
        errors.append(f"{path.name}: {message}")

    for key in ("uid", "title", "schemaVersion", "panels", "templating", "time"):
        if key not in dashboard:
            error(f"no {key}")
    if "tcpscope" not in dashboard.get("tags", []):
        error("not tagged tcpscope (the dashboards link each other by that tag)")
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource" or \
            variables["datasource"].get("query") != "prometheus":
        error("no `datasource` variable of type datasource (prometheus)")
    ids = set()
    cells = {}
    for panel in panels_of(dashboard):
        title = panel.get("title", "?")
        if panel.get("id") in ids:
            error(f"panel id {panel.get('id')} twice")
        ids.add(panel.get("id"))
        grid = panel.get("gridPos", {})
        if not (grid.get("w", 0) > 0 and grid.get("h", 0) > 0 and grid.get("x", -1) >= 0 and
                grid.get("y", -1) >= 0 and grid["x"] + grid["w"] <= 24):
            error(f"{title}: gridPos {grid} outside the 24-column grid")
            continue
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    error(f"{title}: overlaps {cells[(x, y)]}")
                    break
                cells[(x, y)] = title
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != DATASOURCE_UID:
            error(f"{title}: data source is not {DATASOURCE_UID}")
        targets = panel.get("targets", [])
        if not targets:
            error(f"{title}: no targets")
        if not panel.get("description"):
            error(f"{title}: no description")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs):
            error(f"{title}: refIds {refs} repeat")
        for t in targets:
            if not t.get("expr") or t.get("datasource", {}).get("uid") != DATASOURCE_UID:
                error(f"{title} [{t.get('refId')}]: no expr, or not on {DATASOURCE_UID}")


def lint_names(query, names, errors):
    """Metric names and the label names matched or grouped by must be the contract's."""
    expr = query.expr
    used = set(re.findall(r"\btcpscope_\w+", expr))
    labels = set()
    for name in used:
        if name not in names:
            errors.append(f"{query.where()}: {name} is no metric of README/SPEC")
        else:
            labels |= names[name]
    for name, matchers in re.findall(r"\b(tcpscope_\w+)\{([^}]*)\}", expr):
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
            if name in names and label not in names[name]:
                errors.append(f"{query.where()}: {name} has no label {label}")
    for clause in re.findall(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)", expr):
        for label in re.findall(r"\w+", clause):
            if label not in labels | TARGET_LABELS:
                errors.append(f"{query.where()}: groups by {label}, which none of its metrics has")


def lint_rules(deploy, errors):
    """Each alert: a severity, summary, description and a runbook naming a `tcpscope` command;
    and promtool unit tests in alerts_test.yml where it fires and where it stays quiet."""
    rules = yaml.safe_load((deploy / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    if [g["name"] for g in rules["groups"]] != ["tcpscope"]:
        errors.append("alerts.yml: expected one rule group, tcpscope")
    tests = yaml.safe_load((deploy / "prometheus" / "alerts_test.yml").read_text(encoding="utf-8"))
    firing, quiet = set(), set()
    for test in tests.get("tests", []):
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    for rule in (r for g in rules["groups"] for r in g["rules"] if "alert" in r):
        name, annotations = rule["alert"], rule.get("annotations", {})
        if rule.get("labels", {}).get("severity") not in ("warning", "critical"):
            errors.append(f"alerts.yml: {name}: severity is not warning or critical")
        for key in ("summary", "description", "runbook"):
            if not annotations.get(key, "").strip():
                errors.append(f"alerts.yml: {name}: no {key} annotation")
        if not re.search(r"`tcpscope [a-z]+", annotations.get("runbook", "")):
            errors.append(f"alerts.yml: {name}: the runbook names no `tcpscope` command")
        if name not in firing:
            errors.append(f"alerts_test.yml: no case where {name} fires")
        if name not in quiet:
            errors.append(f"alerts_test.yml: no case where {name} stays quiet")


def lint(args):
    deploy = pathlib.Path(args.deploy)
    errors = []
    lint_rules(deploy, errors)
    generator = deploy / "grafana" / "generate_dashboards.py"
    result = subprocess.run([sys.executable, str(generator), "--check"], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        errors.append(f"dashboards differ from generate_dashboards.py's output:\n"
                      f"{result.stdout}{result.stderr}")
    uids = {}
    for path in dashboard_files(deploy):
        try:
            dashboard = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            print(f"FAIL {path.name}: not JSON: {e}")
            return 1
        lint_dashboard(path, dashboard, errors)
        if dashboard.get("uid") in uids:
            errors.append(f"{path.name}: uid {dashboard['uid']} also in {uids[dashboard['uid']]}")
        uids[dashboard.get("uid")] = path.name
    if len(uids) != 3:
        errors.append(f"expected 3 dashboards, found {sorted(uids.values())}")

    metrics = readme_metrics(pathlib.Path(args.readme))
    spec_families = [name for name, (kind, _) in metrics.items()
                     if kind != "service" and name not in EXTRA_METRICS]
    spec = pathlib.Path(args.readme).parent.parent / "shared" / "SPEC.md"  # beside it, as in CI
    if spec.exists():
        in_spec = set(re.findall(r"^\| `(tcpscope_\w+)`", spec.read_text(encoding="utf-8"),
                                 re.MULTILINE))
        if in_spec != set(spec_families):
            errors.append(f"README's metrics table differs from SPEC.md's: "
                          f"{sorted(in_spec ^ set(spec_families))}")
    elif len(spec_families) != 13:
        errors.append(f"README's metrics table has {len(spec_families)} metrics, SPEC 13")
    names = series_names({**metrics, **EXTRA_METRICS})
    queries = dashboard_queries(deploy) + rule_queries(deploy)
    for query in queries:
        lint_names(query, names, errors)
    shown = " ".join(q.expr for q in queries if q.source.endswith(".json"))
    for family in spec_families + list(EXTRA_METRICS):
        if not re.search(rf"\b{family}(_bucket|_count|_sum)?\b", shown):
            errors.append(f"no dashboard panel shows {family}")

    # Every expression parses: promtool reads them as recording rules.
    variables = dict(DEFAULT_VARIABLES, **LINT_VARIABLES)
    parsed = [q for q in queries if q.kind != "variable"]
    rules = [{"record": f"tcpscope_query_{i}", "expr": substitute(q.expr, variables)}
             for i, q in enumerate(parsed)]
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as rule_file:
        yaml.safe_dump({"groups": [{"name": "every_expression", "rules": rules}]}, rule_file)
        rule_file.flush()
        result = subprocess.run([args.promtool, "check", "rules", rule_file.name],
                                capture_output=True, text=True, check=False)
    if result.returncode != 0:
        bad = [parsed[int(i)].where() for i in re.findall(r"tcpscope_query_(\d+)", result.stderr)]
        errors.append(f"promtool cannot parse {', '.join(bad) or 'an expression'}:\n"
                      f"{result.stdout}{result.stderr}")

    for e in errors:
        print(f"FAIL {e}")
    print(f"lint: {len(queries)} expressions in {len(uids)} dashboards and alerts.yml, "
          f"{len(errors)} problems")
    return 1 if errors else 0


# ---------------------------------------------------------------------------------------------
# check


class Prometheus:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def get(self, path, **params):
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=5) as response:
                body = json.load(response)
        except urllib.error.HTTPError as e:
            # Prometheus answers errors in JSON, but not while it is still starting (503, text).
            text = e.read().decode("utf-8", "replace")
            try:
                body = json.loads(text)
            except json.JSONDecodeError:
                raise RuntimeError(f"{path}: HTTP {e.code}: {text.strip()[:200]}") from e
        except (urllib.error.URLError, OSError) as e:
            raise RuntimeError(f"{path}: {e}") from e
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr):
        """An instant vector (list of {metric, value}); a scalar becomes one label-less sample."""
        data = self.get("/api/v1/query", query=expr)
        if data["resultType"] == "vector":
            return [(r["metric"], float(r["value"][1])) for r in data["result"]]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        raise RuntimeError(f"{expr}: result type {data['resultType']}")

    def label_values(self, expr):
        """Grafana's label_values(metric, label) through the label values API."""
        # The series selector may hold commas itself: the label is after the last one.
        match = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", expr)
        if not match:
            raise RuntimeError(f"unsupported variable query {expr!r}")
        return self.get(f"/api/v1/label/{match.group(2)}/values", **{"match[]": match.group(1)})


def contains(metric, labels):
    return all(metric.get(k) == v for k, v in labels.items())


def evaluate(prometheus, plan, queries):
    """One pass over the plan; returns (failures, report lines)."""
    failures, report = [], []
    variables = dict(DEFAULT_VARIABLES, **plan.get("variables", {}))
    results = {}

    def run(query):
        if query.where() not in results:
            try:
                if query.kind == "variable":
                    values = prometheus.label_values(substitute(query.expr, variables))
                    results[query.where()] = [({"value": v}, 1.0) for v in values]
                else:
                    results[query.where()] = prometheus.query(substitute(query.expr, variables))
            except (RuntimeError, KeyError) as e:
                results[query.where()] = e
        return results[query.where()]

    def describe(result):
        if isinstance(result, Exception):
            return f"error: {result}"
        shown = ", ".join(f"{{{','.join(f'{k}={v}' for k, v in sorted(m.items()))}}} {v:g}"
                          for m, v in result[:4])
        return f"{len(result)} series" + (f": {shown}" if shown else "") + \
            (" ..." if len(result) > 4 else "")

    by_source = {}
    for q in queries:
        by_source.setdefault(q.source, []).append(q)

    # {regex on "file: panel [ref]" or "file: variable $name": why it may return nothing here}
    may_be_empty = plan.get("may_be_empty", {})

    def allowed_empty(query):
        return next((why for pattern, why in may_be_empty.items()
                     if re.search(pattern, query.where())), None)

    if plan.get("every_panel_has_data"):
        for q in queries:
            if q.kind == "rule":
                continue
            result = run(q)
            why = allowed_empty(q)
            if not isinstance(result, Exception) and not result and why:
                report.append(f"{q.where()}: no data, allowed: {why}")
                continue
            report.append(f"{q.where()}: {describe(result)}")
            if isinstance(result, Exception) or not result:
                failures.append(f"{q.where()} returned no data: {describe(result)}\n"
                                f"    {substitute(q.expr, variables)}")
            elif q.kind == "variable" and \
                    variables.get(q.name.split("$")[-1]) not in [".*"] + [
                        m["value"] for m, _ in result]:
                # .* is a variable's All value: every value, none in particular.
                failures.append(f"{q.where()}: {describe(result)} lacks the value the test uses")

    rules = {q.name: q for q in queries if q.kind == "rule"}
    for name, labels in plan.get("rules_with_data", {}).items():
        result = run(rules[name])
        report.append(f"alerts.yml: {name} (expected data): {describe(result)}")
        if isinstance(result, Exception) or not any(contains(m, labels) for m, _ in result):
            failures.append(f"alert {name}: no series with {labels}: {describe(result)}")
    for name in plan.get("rules_without_data", []):
        result = run(rules[name])
        report.append(f"alerts.yml: {name} (expected empty): {describe(result)}")
        if isinstance(result, Exception) or result:
            failures.append(f"alert {name} should have no data: {describe(result)}")

    for expected in plan.get("values", []):
        if "query" in expected:
            candidates = [Query("query", expected["query"], expected["query"], "panel")]
        else:
            candidates = [q for q in by_source.get(expected["dashboard"], [])
                          if q.name.rsplit(" [", 1)[0] == expected["panel"]]
            if not candidates:
                failures.append(f"no panel {expected['panel']!r} in {expected['dashboard']}")
                continue
        labels, value = expected.get("labels", {}), float(expected["value"])
        seen = []
        for q in candidates:
            result = run(q)
            seen.append(describe(result))
            if not isinstance(result, Exception) and any(
                    contains(m, labels) and math.isclose(v, value, abs_tol=1e-9)
                    for m, v in result):
                report.append(f"{q.where()}: {labels} = {value:g} as expected")
                break
        else:
            failures.append(f"{candidates[0].where()}: expected {labels} = {value:g}, got "
                            f"{'; '.join(seen)}")

    # Prometheus's own evaluation of alerts.yml: loaded, healthy, and in the expected state.
    states = plan.get("rule_states", {})
    try:
        groups = prometheus.get("/api/v1/rules", type="alert")["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"]}
        for name in rules:
            rule = loaded.get(name)
            if rule is None:
                failures.append(f"Prometheus did not load alert {name}")
            elif rule.get("health") != "ok":
                failures.append(f"alert {name}: health {rule.get('health')}: "
                                f"{rule.get('lastError')}")
            elif name in states and rule.get("state") not in states[name]:
                failures.append(f"alert {name}: state {rule.get('state')}, expected "
                                f"{' or '.join(states[name])}")
            else:
                report.append(f"alerts.yml: {name}: Prometheus says {rule.get('state')}")
    except RuntimeError as e:
        failures.append(f"/api/v1/rules: {e}")
    return failures, report


def check(args):
    plan = json.loads(pathlib.Path(args.plan).read_text(encoding="utf-8"))
    deploy = pathlib.Path(args.deploy)
    queries = dashboard_queries(deploy) + rule_queries(deploy)
    prometheus = Prometheus(args.prometheus)
    deadline = time.monotonic() + float(plan.get("timeout_seconds", 15))
    passes = 0
    while True:
        passes += 1
        failures, report = evaluate(prometheus, plan, queries)
        if not failures or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    label = plan.get("name", "check")
    if args.verbose or failures:
        for line in report:
            print(f"  {line}")
    for f in failures:
        print(f"FAIL {f}")
    print(f"{label}: {'ok' if not failures else 'FAILED'} after {passes} pass(es) over "
          f"{len(report)} results")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    here = pathlib.Path(__file__).resolve().parent.parent
    lint_parser = sub.add_parser("lint")
    lint_parser.add_argument("--deploy", default=str(here / "deploy"))
    lint_parser.add_argument("--readme", default=str(here / "README.md"))
    lint_parser.add_argument("--promtool", default="promtool")
    check_parser = sub.add_parser("check")
    check_parser.add_argument("--deploy", default=str(here / "deploy"))
    check_parser.add_argument("--prometheus", required=True, help="e.g. http://127.0.0.1:9090")
    check_parser.add_argument("--plan", required=True, help="JSON file: what must hold")
    check_parser.add_argument("--verbose", action="store_true", help="print every result")
    args = parser.parse_args()
    return lint(args) if args.command == "lint" else check(args)


if __name__ == "__main__":
    sys.exit(main())
