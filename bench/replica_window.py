#!/usr/bin/env python3
"""Each replica's cost over tcpscope-fleet-sim's measured window (bench/replica_bench).

Follows the simulator's stderr log: at "measuring for" it samples every replica's CPU time
(/proc/PID/stat utime + stime), at "measuring scrape time" (the window's end) CPU time and RSS
again; at "checking" (churn stopped, every batch acknowledged) it scrapes every replica's
/metrics for its pair-index entries and ends and its hosts (tcpscope_agent_up). When the
simulator exits: each replica's peak RSS (VmHWM). A replica killed meanwhile
(replica_bench --kill-after) is marked "killed" and measured up to its death only.
Prints one JSON object.

Usage: replica_window.py --log=SIM_LOG --sim_pid=PID --pids=P1,P2,.. --metrics=URL1,URL2,..
"""
import argparse
import json
import os
import re
import sys
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """None once the process is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def status_bytes(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def metric_sum(body, name):
    """Sum of every sample of `name` (no labels or any labels) in an exposition."""
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)")
    for line in body.splitlines():
        match = pattern.match(line)
        if match:
            total += float(match.group(1))
    return total


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--sim_pid", type=int, required=True)
    parser.add_argument("--pids", required=True)
    parser.add_argument("--metrics", required=True)
    args = parser.parse_args()
    pids = [int(p) for p in args.pids.split(",")]
    urls = args.metrics.split(",")
    replicas = [{"pid": pid, "metrics_url": url} for pid, url in zip(pids, urls)]
    start = end = None
    checked = False
    offset = 0
    while True:
        running = alive(args.sim_pid)
        try:
            with open(args.log) as f:
                f.seek(offset)
                text = f.read()
                offset = f.tell()
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            now = time.time()
            if start is None and "measuring for" in line:
                start = now
                for r in replicas:
                    r["cpu_start_s"] = cpu_seconds(r["pid"])
            elif start is not None and end is None and "measuring scrape time" in line:
                end = now
                for r in replicas:
                    cpu = cpu_seconds(r["pid"])
                    if cpu is None:
                        r["killed"] = True
                        continue
                    r["cores"] = (cpu - r["cpu_start_s"]) / (end - start)
                    r["rss_bytes"] = status_bytes(r["pid"], "VmRSS")
            elif not checked and "checking" in line:
                checked = True
                for r in replicas:
                    if r.get("killed"):
                        continue
                    body = urllib.request.urlopen(r["metrics_url"], timeout=60).read().decode()
                    r["pair_index_entries"] = metric_sum(body, "tcpscope_service_pair_index_entries")
                    r["pair_index_ends"] = metric_sum(body, "tcpscope_service_pair_index_ends")
                    r["hosts_up"] = metric_sum(body, "tcpscope_agent_up")
        if not running and not text:
            break
        time.sleep(0.2)
    for r in replicas:
        r["hwm_bytes"] = status_bytes(r["pid"], "VmHWM") if alive(r["pid"]) else 0
    json.dump({"window_s": (end - start) if start and end else 0, "replicas": replicas},
              sys.stdout)
    print()


if __name__ == "__main__":
    main()
