#!/usr/bin/env python3
"""Writes tcpscope's Grafana dashboards (dashboards/*.json) from one description of the panels.

The fleet overview and the host drill-down show the same panels, the drill-down filtered by
its `host` variable and split by host, so both come from the same functions here; both have
`namespace` and `pod` variables for their per-pod panels (the tcpscope_workload_* families).
Edit this file, run it, and commit its output; `generate_dashboards.py --check` (run by ctest)
fails when the JSON files differ from what it would write. Standard library only.

Every expression uses the metric names of SPEC.md (and the service's own tcpscope_service_*, and
its workload and port families), and tests/observability_integration_test.cc evaluates each one
against a real Prometheus.

The service may run as several replicas, each exporting the series of the hosts homed on it; a
host that moved (its replica went away) has series on its old and new home for a while. So a
counter is summed (each replica counted its own events) and a gauge is first taken once per host
with max (per_host), then summed: the fleet's numbers are the same with one replica or several.
"""

import argparse
import difflib
import json
import pathlib
import sys

DASHBOARD_DIR = pathlib.Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
RANGE = "$__range"


class Scope:
    """Where a panel looks: the whole fleet or the hosts chosen in the `host` variable
    (`filtered`), added up or one series per host (`split`)."""

    def __init__(self, filtered, split):
        self.filtered = filtered
        self.split = split

    def total(self):
        """The same hosts, added up (the drill-down's single-number panels)."""
        return Scope(self.filtered, False)

    def sel(self, *regex_matchers, **matchers):
        """A label selector with the scope's host matcher, e.g. {host=~"$host",le="1"}; each of
        `regex_matchers` is a label matched against the variable of its name."""
        parts = ['host=~"$host"'] if self.filtered else []
        parts += [f'{name}="{value}"' for name, value in matchers.items()]
        parts += [f'{name}=~"${name}"' for name in regex_matchers]
        return "{" + ",".join(parts) + "}" if parts else ""

    def by(self, *labels):
        """`sum by (...)`'s label list, with host when split."""
        labels = (("host",) if self.split else ()) + labels
        return f" by ({', '.join(labels)}) " if labels else ""

    def legend(self, text):
        return ("{{host}} " + text).strip() if self.split else text

    def wsel(self, **matchers):
        """sel() for the workload families, also matching the `namespace` and `pod` variables
        (their All is .*, which takes in containers outside Kubernetes: namespace and pod "")."""
        return self.sel("namespace", "pod", **matchers)


FLEET = Scope(filtered=False, split=False)
EACH_HOST = Scope(filtered=False, split=True)
CHOSEN_HOSTS = Scope(filtered=True, split=True)


class Layout:
    """Places panels left to right on Grafana's 24-column grid and numbers them."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_height = 0

    def row(self, title):
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.y += 1
        return self

    def add(self, panel, w, h):
        if self.x + w > 24:
            self._newline()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        legend = panel.get("options", {}).get("legend")
        if legend is not None and w < 12:  # a narrow panel keeps its width for the graph
            legend.update({"calcs": [], "displayMode": "list", "placement": "bottom"})
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)
        return self

    def _newline(self):
        self.y += self.row_height
        self.x = 0
        self.row_height = 0

    def numbered(self):
        for number, panel in enumerate(self.panels, start=1):
            panel["id"] = number
        return self.panels


def target(expr, legend="", ref="A", instant=False):
    t = {"datasource": DATASOURCE, "editorMode": "code", "expr": expr, "legendFormat": legend,
         "refId": ref}
    if instant:
        t.update({"format": "table", "instant": True, "range": False})
    else:
        t["range"] = True
    return t


def targets(*pairs):
    """(expr, legend) pairs as targets A, B, ..."""
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def timeseries(title, description, queries, unit="short", stacked=False):
    return {
        "type": "timeseries", "title": title, "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {
            "defaults": {
                "unit": unit, "min": 0,
                "custom": {"drawStyle": "line", "lineWidth": 1,
                           "fillOpacity": 25 if stacked else 10, "showPoints": "never",
                           "spanNulls": False,
                           "stacking": {"group": "A", "mode": "normal" if stacked else "none"}},
            },
            "overrides": [],
        },
        "options": {
            "legend": {"calcs": ["lastNotNull", "max"], "displayMode": "table",
                       "placement": "right", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": queries,
    }


def stat(title, description, expr, unit="short", red_from=None):
    steps = [{"color": "green", "value": None}]
    if red_from is not None:
        steps.append({"color": "red", "value": red_from})
    return {
        "type": "stat", "title": title, "description": description, "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit, "color": {"mode": "thresholds"},
                                     "thresholds": {"mode": "absolute", "steps": steps}},
                        "overrides": []},
        "options": {"colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                    "orientation": "auto", "textMode": "auto",
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        "targets": [target(expr)],
    }


def table(title, description, expr, value_name, link_host=False, mappings=None,
          hide_zero=False):
    """An instant query as a table: one row per series, its labels as columns. `hide_zero`
    drops rows whose value is 0 in Grafana rather than in PromQL (`> 0`), for a table that is
    empty while all is well: the query still returns data (every panel's must, in
    observability_integration_test)."""
    field_defaults = {"unit": "short"}
    if mappings:
        field_defaults["mappings"] = [{"type": "value", "options": {
            value: {"text": text, "color": color, "index": i}
            for i, (value, (text, color)) in enumerate(mappings.items())}}]
    if link_host:
        field_defaults["links"] = [{
            "title": "Host drill-down",
            "url": "/d/tcpscope-host/tcpscope-host?var-host=${__data.fields.host}"
                   "&${__url_time_range}",
        }]
    return {
        "type": "table", "title": title, "description": description, "datasource": DATASOURCE,
        "fieldConfig": {"defaults": field_defaults, "overrides": []},
        "options": {"showHeader": True, "cellHeight": "sm",
                    "sortBy": [{"desc": True, "displayName": value_name}]},
        "transformations": [{"id": "organize", "options": {
            "excludeByName": {"Time": True, "instance": True, "job": True},
            "renameByName": {"Value": value_name}}}] + ([{"id": "filterByValue", "options": {
                "filters": [{"fieldName": value_name,
                             "config": {"id": "greater", "options": {"value": 0}}}],
                "match": "any", "type": "include"}}] if hide_zero else []),
        "targets": [target(expr, instant=True)],
    }


def per_host(gauge, *labels):
    """A gauge once per host (and `labels`): the max over the replicas that hold the host's
    series, as its old home may still hold them after a move (a sum would count it twice)."""
    return f"max by ({', '.join(('host',) + labels)}) ({gauge})"


def failure_ratio(s, interval):
    """Failed connects / all connects: failures over failures plus completed client handshakes.
    `or` joins the two (their labels differ), so a host whose every connect fails has a ratio."""
    failures = f"rate(tcpscope_handshake_failures_total{s.sel()}[{interval}])"
    handshakes = f'rate(tcpscope_handshakes_total{s.sel(role="client")}[{interval}])'
    return f"sum{s.by()}({failures})\n/\nsum{s.by()}({failures} or {handshakes})"


def overview_panels(s, layout):
    """The connection panels shared by the fleet overview and the host drill-down."""
    where = "of the chosen hosts" if s.filtered else "of the fleet"
    one = s.total()
    layout.row("Now")
    layout.add(stat("Agents connected",
                    f"Agents {where} with a stream open to the service (tcpscope_agent_up).",
                    "sum(" + per_host("tcpscope_agent_up" + one.sel()) + ")"), 4, 4)
    layout.add(stat("Established",
                    f"Established connection ends {where} in the latest snapshots.",
                    "sum(" + per_host("tcpscope_connections" + one.sel(state="established")) +
                    ")"), 4, 4)
    layout.add(stat("At risk",
                    "Connection ends that may be dead without their host knowing: idle without "
                    "keepalive, probing an unanswering peer, or stale in CLOSE_WAIT.",
                    "sum(" + per_host("tcpscope_connections_at_risk" + one.sel(), "reason") +
                    ")", red_from=1), 4, 4)
    layout.add(stat("CLOSE_WAIT",
                    "Connection ends whose peer closed and whose application has not (yet).",
                    "sum(" + per_host("tcpscope_connections" + one.sel(state="close_wait")) +
                    ")"), 4, 4)
    layout.add(stat("Handshake failure ratio",
                    "Failed connects / all connects over the rate interval.",
                    failure_ratio(one, RATE),
                    unit="percentunit", red_from=0.1), 4, 4)
    layout.add(stat("Keepalive timeouts",
                    "Connections killed by the kernel in the chosen time range because keepalive "
                    "probes went unanswered (the peer vanished).",
                    f"sum(increase(tcpscope_keepalive_timeouts_total{one.sel()}[{RANGE}])) "
                    "or vector(0)", red_from=1), 4, 4)

    layout.row("Handshakes")
    layout.add(timeseries(
        "Handshakes by role",
        "Completed three-way handshakes per second; client: active opens, server: passive.",
        targets((f"sum{s.by('role')}(rate(tcpscope_handshakes_total{s.sel()}[{RATE}]))",
                 s.legend("{{role}}"))), unit="ops"), 6, 8)
    layout.add(timeseries(
        "Handshake failures by reason",
        "Connects that never reached ESTABLISHED, per second. refused: RST to the SYN (nothing "
        "listens); timeout: SYN retries exhausted; unreachable: ICMP error; reset; other.",
        targets((f"sum{s.by('reason')}"
                 f"(rate(tcpscope_handshake_failures_total{s.sel()}[{RATE}]))",
                 s.legend("{{reason}}"))), unit="ops", stacked=True), 6, 8)
    ratio = [(failure_ratio(s, RATE), s.legend("failed connects") if s.split else "fleet")]
    if not s.split:
        ratio.append((f"topk(5,\n{failure_ratio(EACH_HOST, RATE)}\n)", "{{host}}"))
    layout.add(timeseries(
        "Handshake failure ratio",
        "Failed connects / (failed + completed client handshakes)." +
        ("" if s.split else " The fleet, and the five worst hosts."),
        targets(*ratio), unit="percentunit"), 6, 8)
    layout.add(timeseries(
        "Handshake duration",
        "SYN to ESTABLISHED, 50th and 99th percentile, by role (eBPF source only).",
        targets(*[(f"histogram_quantile({q}, sum{s.by('le', 'role')}"
                   f"(rate(tcpscope_handshake_duration_seconds_bucket{s.sel()}[{RATE}])))",
                   s.legend(f"p{int(q * 100)} {{{{role}}}}")) for q in (0.5, 0.99)]),
        unit="s"), 6, 8)

    layout.row("Closes")
    layout.add(timeseries(
        "Closes by initiator",
        "Ended connections per second by who closed first: local (this end sent FIN or RST "
        "first), remote, simultaneous, unknown (sock_diag saw no intermediate state).",
        targets((f"sum{s.by('initiator')}(rate(tcpscope_closes_total{s.sel()}[{RATE}]))",
                 s.legend("{{initiator}}"))), unit="ops", stacked=True), 8, 8)
    layout.add(timeseries(
        "Closes by reason",
        "Ended connections per second by how: fin (orderly), reset_sent, reset_received, "
        "keepalive_timeout, keepalive_reset (peer rebooted), retransmit_timeout, other.",
        targets((f"sum{s.by('reason')}(rate(tcpscope_closes_total{s.sel()}[{RATE}]))",
                 s.legend("{{reason}}"))), unit="ops", stacked=True), 8, 8)
    short = (f"sum{s.by()}(rate(tcpscope_connection_lifetime_seconds_bucket"
             f"{s.sel(le='1')}[{RATE}]))")
    total = f"sum{s.by()}(rate(tcpscope_connection_lifetime_seconds_count{s.sel()}[{RATE}]))"
    layout.add(timeseries(
        "Short and long connections",
        "Closed connections per second by lifetime: short (at most 1 s, HTTP/1.0 style) and long "
        "(over 1 s, kept alive), from the lifetime histogram's le=\"1\" bucket.",
        targets((short, s.legend("short (≤ 1 s)")),
                (f"{total}\n-\n{short}", s.legend("long (> 1 s)"))),
        unit="ops", stacked=True), 8, 8)
    layout.add(timeseries(
        "Connection lifetime",
        "Handshake to close, 50th, 90th and 99th percentile of the connections that closed.",
        targets(*[(f"histogram_quantile({q}, sum{s.by('le')}"
                   f"(rate(tcpscope_connection_lifetime_seconds_bucket{s.sel()}[{RATE}])))",
                   s.legend(f"p{int(q * 100)}")) for q in (0.5, 0.9, 0.99)]), unit="s"), 12, 8)
    layout.add(table(
        "Closes in the time range",
        "How connections ended in the chosen time range, by role, initiator and reason.",
        f"sort_desc(sum{s.by('role', 'initiator', 'reason')}"
        f"(increase(tcpscope_closes_total{s.sel()}[{RANGE}])))", "closes"), 12, 8)

    layout.row("Keepalive")
    layout.add(timeseries(
        "Keepalive probes and timeouts",
        "Keepalive probes sent per second, and connections killed because probes went "
        "unanswered (keepalive timeouts), by role.",
        targets((f"sum{s.by()}(rate(tcpscope_keepalive_probes_total{s.sel()}[{RATE}]))",
                 s.legend("probes")),
                (f"sum{s.by('role')}"
                 f"(rate(tcpscope_keepalive_timeouts_total{s.sel()}[{RATE}]))",
                 s.legend("timeouts ({{role}})"))), unit="ops"), 8, 8)
    if s.filtered:
        layout.add(table(
            "Keepalive timeouts by role", "Keepalive timeouts in the chosen time range.",
            f"sort_desc(sum{s.by('role')}"
            f"(increase(tcpscope_keepalive_timeouts_total{s.sel()}[{RANGE}])))", "timeouts"), 8, 8)
    else:
        layout.add(table(
            "Keepalive timeouts by host",
            "Keepalive timeouts in the chosen time range, worst hosts first; a host opens its "
            "drill-down.",
            f"sort_desc(sum{EACH_HOST.by()}"
            f"(increase(tcpscope_keepalive_timeouts_total[{RANGE}])))", "timeouts",
            link_host=True), 8, 8)
    layout.add(timeseries(
        "Keepalive on established connections",
        "Established connection ends with SO_KEEPALIVE on or off, from the latest snapshots. "
        "Off and idle for long is the classic silently half-open connection.",
        targets((f"sum{s.by('keepalive')}("
                 f"{per_host('tcpscope_connections_keepalive' + s.sel(), 'keepalive')})",
                 s.legend("{{keepalive}}"))), stacked=True), 8, 8)

    layout.row("Connections")
    layout.add(timeseries(
        "Connections by state",
        "Current connection ends by TCP state, from the latest snapshots (every "
        "--snapshot_interval).",
        targets((f"sum{s.by('state')}({per_host('tcpscope_connections' + s.sel(), 'state')})",
                 s.legend("{{state}}"))), stacked=True), 12, 9)
    layout.add(timeseries(
        "At-risk connections by reason",
        "idle_no_keepalive: established, no keepalive, idle past --idle_risk_after; "
        "keepalive_probing: probes unanswered; close_wait_stale: in CLOSE_WAIT past "
        "--close_wait_risk_after. `tcpscope connections --at_risk` lists them.",
        targets((f"sum{s.by('reason')}"
                 f"({per_host('tcpscope_connections_at_risk' + s.sel(), 'reason')})",
                 s.legend("{{reason}}"))), stacked=True), 12, 9)
    if not s.filtered:
        layout.add(table(
            "Hosts with at-risk connections",
            "Hosts with at-risk connections now, by reason; a host opens its drill-down.",
            f"sort_desc({per_host('tcpscope_connections_at_risk', 'reason')} > 0)",
            "connections", link_host=True), 24, 8)
    half_open_panels(s, layout)


def half_open_panels(s, layout):
    """Half-open connection ends (the service pairs the two ends of a connection seen by two
    agents): the gauge now by reason, detections per second, and (fleet) the hosts with them.

    tcpscope_half_open_detected_total is created at a host's first detection, so a healthy fleet
    has no series of it: the detections panel adds a zero per (host,) reason derived from the
    gauge, so that it shows 0 rather than "No data" (and returns data in the integration test)."""
    gauge = per_host(f"tcpscope_connections_half_open{s.sel()}", "reason")
    layout.add(timeseries(
        "Half-open connections by reason",
        "ESTABLISHED connection ends whose other end, seen by another host's agent, is gone: "
        "peer_closed (the peer closed and the FIN or RST never arrived), peer_rebooted (the peer "
        "came back without the connection), peer_host_down (the peer's agent silent past "
        "--peer_down_after). With keepalive off such an end never finds out. "
        "`tcpscope connections --half_open` lists them.",
        targets((f"sum{s.by('reason')}({gauge})", s.legend("{{reason}}"))), stacked=True),
        8 if not s.filtered else 12, 8)
    layout.add(timeseries(
        "Half-open detections",
        "Connection ends found half-open per second, by reason (each end counted once, when "
        "found); 0 while none has been found.",
        targets((f"sum{s.by('reason')}"
                 f"(rate(tcpscope_half_open_detected_total{s.sel()}[{RATE}]))\n"
                 f"or\nsum{s.by('reason')}({gauge}) * 0",
                 s.legend("{{reason}}"))), unit="ops", stacked=True),
        8 if not s.filtered else 12, 8)
    if not s.filtered:
        layout.add(table(
            "Hosts with half-open connections",
            "Hosts with half-open connection ends now, by reason, worst first (rows at 0 are "
            "hidden); a host opens its drill-down.",
            f"sort_desc({per_host('tcpscope_connections_half_open', 'reason')})",
            "connections", link_host=True, hide_zero=True), 8, 8)


WORKLOAD = "host, namespace, pod, container"


def workload(expr):
    """`expr` (summed by WORKLOAD and more) with a `workload` label for legends and tables:
    shop/web-0/app for a Kubernetes pod's container, redis for a container outside Kubernetes
    (namespace and pod empty), other for the pods beyond the service's --max_pods_per_host."""
    joined = f'label_join(\n{expr},\n"workload", "/", "namespace", "pod", "container")'
    return f'label_replace({joined},\n"workload", "$1", "workload", "/*(.*?)/*")'


def workload_panels(s, layout):
    """Per pod (or container outside Kubernetes): the tcpscope_workload_* families, filtered by
    the `namespace` and `pod` variables. A workload's series are those of its host, so panels
    group by host too (a container name outside Kubernetes is only unique on its host); gauges take
    the max by workload, as per_host() does."""
    layout.row("Workloads (pods and containers)")
    layout.add(timeseries(
        "CLOSE_WAIT by pod",
        "Connection ends in CLOSE_WAIT held by each pod's container (or container outside "
        "Kubernetes), from the latest snapshots: the peer closed and that program has not. A "
        "line that only grows is a descriptor leak. `tcpscope connections --state=close_wait "
        "--namespace=NS --pod=POD` lists them with their process.",
        targets((workload(f"max by ({WORKLOAD}) "
                          f"(tcpscope_workload_connections{s.wsel(state='close_wait')})"),
                 "{{host}} {{workload}}"))), 8, 8)
    layout.add(timeseries(
        "At-risk connections by pod",
        "Connection ends that may be dead without their program knowing, by pod and reason "
        "(idle_no_keepalive, keepalive_probing, close_wait_stale). `tcpscope connections "
        "--at_risk --namespace=NS --pod=POD` lists them.",
        targets((workload(f"max by ({WORKLOAD}, reason) "
                          f"(tcpscope_workload_connections_at_risk{s.wsel()})"),
                 "{{host}} {{workload}} {{reason}}")), stacked=True), 8, 8)
    gauge = f"tcpscope_workload_connections_half_open{s.wsel()}"
    layout.add(timeseries(
        "Half-open connections by pod",
        "ESTABLISHED ends whose other end is gone, by the pod holding them and reason "
        "(peer_closed, peer_rebooted, peer_host_down); 0 for a pod with none. `tcpscope "
        "connections --paired --half_open --namespace=NS --pod=POD` shows the peer's pod.",
        targets((workload(f"max by ({WORKLOAD}, reason) ({gauge})\n"
                          f"or on ({WORKLOAD})\n"
                          f"max by ({WORKLOAD}) (tcpscope_workload_connections{s.wsel()}) * 0"),
                 "{{host}} {{workload}} {{reason}}")), stacked=True), 8, 8)
    layout.add(timeseries(
        "Handshake failures by pod and reason",
        "Connects made by each pod that never reached ESTABLISHED, per second, by reason "
        "(refused: nothing listens; timeout; unreachable; reset; other).",
        targets((workload(f"sum by ({WORKLOAD}, reason) "
                          f"(rate(tcpscope_workload_handshake_failures_total{s.wsel()}[{RATE}]))"),
                 "{{host}} {{workload}} {{reason}}")), unit="ops", stacked=True), 8, 8)
    layout.add(timeseries(
        "Closes by pod and reason",
        "Connections of each pod ended per second, by how: fin, reset_sent, reset_received, "
        "keepalive_timeout, keepalive_reset, retransmit_timeout, other.",
        targets((workload(f"sum by ({WORKLOAD}, reason) "
                          f"(rate(tcpscope_workload_closes_total{s.wsel()}[{RATE}]))"),
                 "{{host}} {{workload}} {{reason}}")), unit="ops", stacked=True), 8, 8)
    layout.add(timeseries(
        "Keepalive timeouts by pod",
        "Connections of each pod killed by the kernel because keepalive probes went "
        "unanswered (the peer vanished), per second.",
        targets((workload(f"sum by ({WORKLOAD}) "
                          f"(rate(tcpscope_workload_keepalive_timeouts_total{s.wsel()}[{RATE}]))"),
                 "{{host}} {{workload}}")), unit="ops"), 8, 8)
    layout.add(table(
        "Connections by pod and state",
        "Each pod's (or container's) connection ends now by state: established, syn_sent, "
        "syn_recv, close_wait, time_wait. Pods beyond the service's --max_pods_per_host are "
        "summed in `other`.",
        "sort_desc(" + workload(f"max by ({WORKLOAD}, state) "
                                f"(tcpscope_workload_connections{s.wsel()})") + ")",
        "connections", hide_zero=True), 24, 8)


def port_panels(s, layout):
    """Per server port (the listening port of the connection's server end, on either side):
    what fails and how connections end, so that "refused connects to :5432" is one line."""
    layout.row("Ports")
    layout.add(timeseries(
        "Handshake failures by port",
        "Connects that never reached ESTABLISHED, per second, by the server's port and reason. "
        "Ports beyond the service's --max_ports_per_host are summed in `other`.",
        targets((f"sum{s.by('port', 'reason')}"
                 f"(rate(tcpscope_port_handshake_failures_total{s.sel()}[{RATE}]))",
                 s.legend(":{{port}} {{reason}}"))), unit="ops", stacked=True), 8, 8)
    layout.add(timeseries(
        "Closes by port and reason",
        "Connections ended per second by the server's port and how they ended.",
        targets((f"sum{s.by('port', 'reason')}"
                 f"(rate(tcpscope_port_closes_total{s.sel()}[{RATE}]))",
                 s.legend(":{{port}} {{reason}}"))), unit="ops", stacked=True), 8, 8)
    layout.add(table(
        "Handshake failures by port in the time range",
        "Failed connects in the chosen time range by host, server port and reason, worst first.",
        f"sort_desc(sum by (host, port, reason) "
        f"(increase(tcpscope_port_handshake_failures_total{s.sel()}[{RANGE}])))",
        "failures", hide_zero=True), 8, 8)


def workload_variables(host_matcher):
    """`namespace` and `pod` (chained to the namespace) from the workload series."""
    def variable(name, label, selector):
        query = f"label_values(tcpscope_workload_connections{selector}, {name})"
        return {
            "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "definition": query,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "allValue": ".*", "current": {}, "hide": 0, "includeAll": True, "multi": True,
            "options": [], "refresh": 2, "regex": "", "skipUrlSync": False, "sort": 1,
        }
    namespace = "{" + host_matcher + "}" if host_matcher else ""
    pod = "{" + ",".join(filter(None, [host_matcher, 'namespace=~"$namespace"'])) + "}"
    return [variable("namespace", "Namespace", namespace), variable("pod", "Pod", pod)]


def agent_panels(s, layout):
    """The drill-down's view of its hosts' agents."""
    layout.row("Agent")
    layout.add(timeseries(
        "Agent up", "1 while the host's agent has a stream open to the service.",
        targets((f"max by (host) (tcpscope_agent_up{s.sel()})", "{{host}}"))), 8, 7)
    layout.add(timeseries(
        "Events applied", "Events of the host applied by the service, per second.",
        targets((f"sum by (host) (rate(tcpscope_agent_events_total{s.sel()}[{RATE}]))",
                 "{{host}}")), unit="ops"), 8, 7)
    layout.add(timeseries(
        "Events lost by stage",
        "Events lost per second: kernel (ring buffer or socket map full), agent (resend buffer "
        "overflowed).",
        targets((f"sum by (host, stage) "
                 f"(rate(tcpscope_agent_events_lost_total{s.sel()}[{RATE}]))",
                 "{{host}} {{stage}}")), unit="ops"), 8, 7)


def dashboard(uid, title, description, panels, variables=()):
    datasource_variable = {
        "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
        "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [],
        "refresh": 1, "regex": "", "skipUrlSync": False,
    }
    return {
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [{"asDropdown": False, "icon": "external link", "includeVars": False,
                   "keepTime": True, "tags": ["tcpscope"], "targetBlank": False,
                   "title": "tcpscope", "type": "dashboards"}],
        "liveNow": False,
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["tcpscope"],
        "templating": {"list": [datasource_variable, *variables]},
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


def fleet_overview():
    layout = Layout()
    overview_panels(FLEET, layout)
    workload_panels(FLEET, layout)
    port_panels(FLEET, layout)
    return dashboard("tcpscope-fleet", "tcpscope / Fleet overview",
                     "Every TCP connection of the fleet: handshakes, closes, lifetimes, keepalive "
                     "and at-risk and half-open connections, by host, pod and port.",
                     layout.numbered(), workload_variables(""))


def host_drill_down():
    host_variable = {
        "name": "host", "label": "Host", "type": "query", "datasource": DATASOURCE,
        "definition": "label_values(tcpscope_agent_up, host)",
        "query": {"query": "label_values(tcpscope_agent_up, host)",
                  "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "allValue": ".*", "current": {}, "hide": 0, "includeAll": True, "multi": True,
        "options": [],
        "refresh": 2, "regex": "", "skipUrlSync": False, "sort": 1,
    }
    layout = Layout()
    overview_panels(CHOSEN_HOSTS, layout)
    workload_panels(CHOSEN_HOSTS, layout)
    port_panels(CHOSEN_HOSTS, layout)
    agent_panels(CHOSEN_HOSTS, layout)
    return dashboard("tcpscope-host", "tcpscope / Host drill-down",
                     "The fleet overview's panels for the hosts chosen above, split by host; "
                     "their pods' and ports' panels.",
                     layout.numbered(), [host_variable, *workload_variables('host=~"$host"')])


def replica_panels(layout):
    """The tier of service replicas (tcpscope-service --peers), one line per replica (its
    `instance`). A single replica has no replica_* series: each query falls back to a 0 per
    replica (from tcpscope_service_hosts, which every replica exports) rather than "No data"."""
    def each(expr):
        return f"sum by (instance) ({expr})\nor\nsum by (instance) (tcpscope_service_hosts) * 0"

    layout.row("Replicas")
    layout.add(stat("Replicas", "Replicas of the service that Prometheus scrapes.",
                    "count(tcpscope_service_hosts)"), 4, 8)
    layout.add(timeseries(
        "Peers up by replica",
        "The other replicas each replica reaches (pings answered), and those its --peers names: "
        "fewer up than named is a replica down or cut off (TcpscopeReplicaPeerDown).",
        targets((each("tcpscope_service_replica_peers_up"), "{{instance}} up"),
                (each("tcpscope_service_replica_peers"), "{{instance}} named"))), 5, 8)
    layout.add(timeseries(
        "Hosts by replica",
        "Hosts whose series each replica holds (homed there, or moved away and not yet "
        "expired), and the agent streams open to it: how evenly rendezvous hashing spreads the "
        "agents, and where they went after a failover.",
        targets(("sum by (instance) (tcpscope_service_hosts)", "{{instance}} hosts"),
                ("sum by (instance) (tcpscope_service_ingest_streams)", "{{instance}} streams"))),
        5, 8)
    layout.add(timeseries(
        "Connection ends exchanged",
        "Connection end records per second each replica forwards to the replica that owns their "
        "connection's tuple (for pairing), and receives from the others.",
        targets((each(f"rate(tcpscope_service_replica_forwarded_ends_total[{RATE}])"),
                 "{{instance}} forwarded"),
                (each(f"rate(tcpscope_service_replica_received_ends_total[{RATE}])"),
                 "{{instance}} received")), unit="ops"), 5, 8)
    layout.add(timeseries(
        "Ring changes and partial answers",
        "Changes of the replicas each replica counts up (each one rebuilds the pairing from the "
        "next snapshots), and query answers it gave without some replica's part, per interval.",
        targets((each(f"increase(tcpscope_service_replica_ring_changes_total[{RATE}])"),
                 "{{instance}} ring changes"),
                (each(f"increase(tcpscope_service_partial_answers_total[{RATE}])"),
                 "{{instance}} partial answers"))), 5, 8)


def health():
    layout = Layout()
    layout.row("Agents")
    agents = per_host("tcpscope_agent_up")
    layout.add(stat("Agents connected", "Hosts whose agent has a stream open.",
                    f"sum({agents})"), 6, 4)
    layout.add(stat("Agents disconnected",
                    "Hosts the service still knows (until --host_expiry) whose agent is gone.",
                    f"count({agents} == 0) or vector(0)", red_from=1), 6, 4)
    layout.add(stat("Hosts known", "Hosts the service holds series for, connected or not "
                    "(each once, on whichever replicas hold it).",
                    f"count({agents}) or vector(0)"), 6, 4)
    layout.add(stat("Events lost", "Events lost anywhere in the chosen time range.",
                    f"sum(increase(tcpscope_agent_events_lost_total[{RANGE}]))",
                    red_from=1), 6, 4)
    layout.add(table("Agents", "Each host the service knows: 1 connected, 0 disconnected.",
                     f"sort({agents})", "agent", link_host=True,
                     mappings={"0": ("down", "red"), "1": ("up", "green")}), 8, 9)
    layout.add(timeseries(
        "Events applied by host", "Events received from each host's agent and applied, per "
        "second.",
        targets((f"sum by (host) (rate(tcpscope_agent_events_total[{RATE}]))", "{{host}}")),
        unit="ops"), 8, 9)
    layout.add(timeseries(
        "Events lost by stage",
        "Events lost per second: kernel (eBPF ring buffer or socket map full), agent (resend "
        "buffer overflowed during an outage).",
        targets((f"sum by (stage) (rate(tcpscope_agent_events_lost_total[{RATE}]))",
                 "{{stage}}")), unit="ops", stacked=True), 8, 9)
    layout.add(table("Hosts that lost events",
                     "Events lost in the chosen time range by host and stage.",
                     f"sort_desc(sum by (host, stage) "
                     f"(increase(tcpscope_agent_events_lost_total[{RANGE}])) > 0)",
                     "lost", link_host=True), 12, 8)
    layout.add(timeseries(
        "Loss ratio", "Lost / (applied + lost) events.",
        targets((f"sum(rate(tcpscope_agent_events_lost_total[{RATE}]))\n/\n"
                 f"(sum(rate(tcpscope_agent_events_total[{RATE}])) + "
                 f"sum(rate(tcpscope_agent_events_lost_total[{RATE}])))", "lost")),
        unit="percentunit"), 12, 8)

    layout.row("Service")
    layout.add(timeseries(
        "Agent streams", "Agent ingest streams open now, and hosts known.",
        targets(("sum(tcpscope_service_ingest_streams)", "streams"),
                (f"count({agents})", "hosts"))), 8, 8)
    layout.add(timeseries(
        "Batches by result",
        "Agent batches per second: applied, or duplicate (resent after a reconnect and "
        "recognised, so never counted twice).",
        targets((f"sum by (result) (rate(tcpscope_service_batches_total[{RATE}]))",
                 "{{result}}")), unit="ops", stacked=True), 8, 8)
    layout.add(timeseries(
        "Rejected by reason",
        "Messages and streams the service refused per second: malformed, protocol, "
        "invalid_hello, invalid_batch, duplicate_host (two agents claim one host name), "
        "rate_limited, too_many_streams, query_token.",
        targets((f"sum by (reason) (rate(tcpscope_service_rejected_total[{RATE}]))",
                 "{{reason}}")), unit="ops", stacked=True), 8, 8)
    layout.add(timeseries(
        "Event watchers",
        "Open `tcpscope events --follow` streams (GetEvents with follow), and live events they "
        "missed per second because they read too slowly.",
        targets(("sum(tcpscope_service_event_watchers)", "watchers"),
                (f"sum(rate(tcpscope_service_watch_events_missed_total[{RATE}]))",
                 "missed events /s"))), 8, 8)
    layout.add(timeseries(
        "Host expiry", "Hosts whose series were removed after --host_expiry, per interval.",
        targets((f"sum(increase(tcpscope_service_hosts_expired_total[{RATE}]))", "expired"))),
        8, 8)
    layout.add(timeseries(
        "Event history", "Events held in memory for `tcpscope events --last/--since` "
        "(--event_history).",
        targets(("sum(tcpscope_service_event_history_events)", "events"))), 8, 8)
    replica_panels(layout)
    return dashboard("tcpscope-health", "tcpscope / Health",
                     "tcpscope's own health: agents, event rates and losses, the service's ingest "
                     "and query side.", layout.numbered())


DASHBOARDS = {
    "tcpscope-fleet-overview.json": fleet_overview,
    "tcpscope-host.json": host_drill_down,
    "tcpscope-health.json": health,
}


def render(build):
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="fail (exit 1) when a dashboard file differs from what is generated")
    args = parser.parse_args()
    stale = []
    for name, build in DASHBOARDS.items():
        path = DASHBOARD_DIR / name
        text = render(build)
        if args.check:
            old = path.read_text(encoding="utf-8") if path.exists() else ""
            if old != text:
                stale.append(name)
                sys.stdout.writelines(difflib.unified_diff(
                    old.splitlines(True), text.splitlines(True), f"{name} (committed)",
                    f"{name} (generated)", n=1))
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"\nstale: {', '.join(stale)}; run deploy/grafana/generate_dashboards.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
