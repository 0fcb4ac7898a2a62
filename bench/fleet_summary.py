#!/usr/bin/env python3
"""Tables of bench/fleet_bench's results.jsonl: the fleet run(s) and the saturation runs."""
import json
import sys


def mib(value):
    return f"{value / 1048576:,.0f}" if value and value > 0 else "-"


def main(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    fleet = [r for r in runs if not r["sim"].get("saturate")]
    saturate = [r for r in runs if r["sim"].get("saturate")]
    if fleet:
        print()
        print("| run | hosts x ends | measured | events/s acked | events acked (all kinds) | "
              "checks | service cores | service RSS MiB (bytes/end) | peak RSS MiB (bytes/end) | "
              "scrape s (MB) | ListConnections host+paired s (max) | ListConnections host s | "
              "simulator cores | machine busy cores |")
        print("| --- " * 14 + "|")
        for r in fleet:
            s = r["sim"]
            if s.get("error") and "hosts" not in s:
                print(f"| {r['run']} | error: {s['error']} |" + " |" * 12)
                continue
            busy = r["machine_busy_ticks"] / r["clk_tck"] / r["wall_s"] if r["wall_s"] else 0
            checks = "passed" if s["checks_passed"] else "FAILED: " + "; ".join(
                s["failures"] + ([s["error"]] if s["error"] else []))
            print(f"| {r['run']} | {s['hosts']} x {s['ends_per_host']} | {s['window_s']:.0f} s | "
                  f"{s['events_per_s']:,.0f} | {s['events_acked']:,} | {checks} | "
                  f"{s['service_cores']:.2f} | {mib(s['service_rss_bytes'])} "
                  f"({s['service_rss_bytes_per_end']:.0f}) | {mib(s['service_hwm_bytes'])} "
                  f"({s['service_hwm_bytes_per_end']:.0f}) | {s['scrape_s']:.2f} "
                  f"({s['scrape_bytes'] / 1e6:.1f}) | {s['query_paired_s']:.2f} "
                  f"({s['query_paired_max_s']:.2f}) | {s['query_host_s']:.3f} | "
                  f"{s['sim_cores']:.2f} | {busy:.2f} |")
    if saturate:
        print()
        print("| run | service CPUs | hosts x ends | saturating events/s acked | all events/s "
              "acked | ratio to the first | service cores | simulator cores | checks |")
        print("| --- " * 9 + "|")
        first = None
        for r in saturate:
            s = r["sim"]
            if "saturation_events_per_s" not in s:
                print(f"| {r['run']} | {r['cores']} | error: {s.get('error')} |" + " |" * 6)
                continue
            rate = s["saturation_events_per_s"]
            first = first or rate
            checks = "passed" if s["checks_passed"] else "FAILED: " + "; ".join(
                s["failures"] + ([s["error"]] if s["error"] else []))
            print(f"| {r['run']} | {r['cores']} | {s['hosts']} x {s['ends_per_host']} | "
                  f"{rate:,.0f} | {s['events_per_s']:,.0f} | {rate / first:.2f}x | "
                  f"{s['service_cores']:.2f} | {s['sim_cores']:.2f} | {checks} |")


if __name__ == "__main__":
    main(sys.argv[1])
