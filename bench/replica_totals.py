#!/usr/bin/env python3
"""The fleet's totals as a user reads them, for bench/replica_bench: from `tcpscope summary -o
json` through one replica (its fleet block) and from PromQL sums over a Prometheus that scrapes
every replica. Prints one JSON object: {"cli": {...}, "promql": {...}}.

Usage: replica_totals.py --summary=FILE --prometheus=http://127.0.0.1:PORT
"""
import argparse
import json
import urllib.parse
import urllib.request

# The same totals from both sources: (name, CLI fleet field or list of Counts, PromQL).
TOTALS = [
    ("events", "events", "sum(tcpscope_agent_events_total)"),
    ("handshakes", "handshakes", "sum(tcpscope_handshakes_total)"),
    ("handshake_failures", "handshake_failures", "sum(tcpscope_handshake_failures_total)"),
    ("closes", "closes_by_reason", "sum(tcpscope_closes_total)"),
    ("keepalive_probes", "keepalive_probes", "sum(tcpscope_keepalive_probes_total)"),
    ("keepalive_timeouts", "keepalive_timeouts", "sum(tcpscope_keepalive_timeouts_total)"),
    ("half_open", "half_open", "sum(tcpscope_half_open_detected_total) or vector(0)"),
    # Hosts: each counted once however many replicas export it.
    ("hosts", "agents", "count(count by (host) (tcpscope_agent_events_total))"),
]


def cli_totals(path):
    with open(path) as f:
        answer = json.load(f)
    fleet = answer.get("fleet", {})
    totals = {}
    for name, field, _ in TOTALS:
        value = fleet.get(field, 0)
        if isinstance(value, list):  # Counts by reason
            value = sum(int(count.get("value", 0)) for count in value)
        totals[name] = int(value)
    totals["unanswered_replicas"] = len(answer.get("unanswered_replicas", []))
    return totals


def promql(prometheus, expr):
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    data = json.load(urllib.request.urlopen(url, timeout=30))
    result = data["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--summary", required=True)
    parser.add_argument("--prometheus", required=True)
    args = parser.parse_args()
    prom = {name: promql(args.prometheus, expr) for name, _, expr in TOTALS}
    prom = {name: (int(v) if v is not None and v == int(v) else v) for name, v in prom.items()}
    print(json.dumps({"cli": cli_totals(args.summary), "promql": prom}))


if __name__ == "__main__":
    main()
