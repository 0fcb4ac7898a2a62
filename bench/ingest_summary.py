#!/usr/bin/env python3
"""Summarises bench/ingest_bench's results.jsonl as Markdown tables (printed on stdout).

Per batch size, tcpscope-service is compared with the bare server of the same run: the ratio of
the median rates, and the median of the per-round ratios (service round r against bare round r,
which ran next to it), since the machine is shared and its speed drifts. Server CPU is
utime+stime from /proc/PID/stat over the generator's run, per million acknowledged events.
"""
import json
import statistics
import sys

TARGET_BATCH = 256
TARGET_RATIO = 0.6


def median(values):
    return statistics.median(values) if values else None


def fmt(value, digits=0, suffix=""):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def cpu_per_million(row):
    acked = row["load"]["events_acked"]
    seconds = (row["server_utime"] + row["server_stime"]) / row["clk_tck"]
    return seconds / acked * 1e6 if acked else None


def other_cores(row):
    """Cores kept busy by anything but the server and the generator during the run (the script's
    window is a little longer than the generator's measured one, so this is approximate)."""
    if "machine_busy_ticks" not in row:
        return None
    seconds = row["load"]["seconds"]
    server = (row["server_utime"] + row["server_stime"]) / row["clk_tck"]
    machine = row["machine_busy_ticks"] / row["clk_tck"]
    return max(0.0, (machine - server - row["load"]["generator_cpu_s"]) / seconds)


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    good = [r for r in rows if "load" in r and not r["load"].get("error") and r["load"]["events_acked"]]
    bad = [r for r in rows if r not in good]
    sizes = sorted({r["batch_size"] for r in rows})
    servers = [s for s in ("service", "bare", "bare-arena") if any(r["server"] == s for r in rows)]

    def of(server, batch):
        return {r["round"]: r for r in good if r["server"] == server and r["batch_size"] == batch}

    print("| batch | server | events/s per round | median events/s | server CPU s per M events (median) | server cores busy (median) | generator cores busy (median) | other processes' cores busy (median, approx.) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for batch in sizes:
        for server in servers:
            runs = of(server, batch)
            if not runs:
                print(f"| {batch} | {server} | no successful run | n/a | n/a | n/a | n/a | n/a |")
                continue
            rates = [runs[k]["load"]["events_per_s"] for k in sorted(runs)]
            cpu = [cpu_per_million(runs[k]) for k in sorted(runs)]
            busy = [(r["server_utime"] + r["server_stime"]) / r["clk_tck"] / r["load"]["seconds"] for r in runs.values()]
            generator = [r["load"]["generator_cpu_s"] / r["load"]["seconds"] for r in runs.values()]
            others = [other_cores(r) for r in runs.values()]
            print(f"| {batch} | {server} | {', '.join(fmt(x) for x in rates)} | {fmt(median(rates))} | "
                  f"{fmt(median(cpu), 3)} | {fmt(median(busy), 2)} | {fmt(median(generator), 2)} | "
                  f"{fmt(median([o for o in others if o is not None]), 2)} |")

    print()
    print("| batch | service/bare, ratio of median events/s | service/bare, median per-round ratio | service/bare, server CPU per event (median) |")
    print("| --- | --- | --- | --- |")
    verdict = None
    for batch in sizes:
        service, bare = of("service", batch), of("bare", batch)
        if not service or not bare:
            print(f"| {batch} | n/a | n/a | n/a |")
            continue
        ratio = median([r["load"]["events_per_s"] for r in service.values()]) / median(
            [r["load"]["events_per_s"] for r in bare.values()])
        pairs = [service[k]["load"]["events_per_s"] / bare[k]["load"]["events_per_s"] for k in sorted(service) if k in bare]
        cpu_ratio = median([cpu_per_million(r) for r in service.values()]) / median(
            [cpu_per_million(r) for r in bare.values()])
        print(f"| {batch} | {fmt(ratio, 3, '×')} | {fmt(median(pairs), 3, '×')} ({', '.join(fmt(p, 3) for p in pairs)}) | {fmt(cpu_ratio, 2, '×')} |")
        if batch == TARGET_BATCH:
            verdict = ratio

    if "bare-arena" in servers:
        print()
        print("Experiment, not a target: the bare server parsing into an arena (`--arena`) against the bare server.")
        print()
        print("| batch | bare-arena/bare, ratio of median events/s | bare-arena/bare, server CPU per event (median) |")
        print("| --- | --- | --- |")
        for batch in sizes:
            arena, bare = of("bare-arena", batch), of("bare", batch)
            if not arena or not bare:
                print(f"| {batch} | n/a | n/a |")
                continue
            ratio = median([r["load"]["events_per_s"] for r in arena.values()]) / median(
                [r["load"]["events_per_s"] for r in bare.values()])
            cpu_ratio = median([cpu_per_million(r) for r in arena.values()]) / median(
                [cpu_per_million(r) for r in bare.values()])
            print(f"| {batch} | {fmt(ratio, 3, '×')} | {fmt(cpu_ratio, 2, '×')} |")

    mismatched = [r for r in good if r["server"] == "service" and r["service_events_applied"] >= 0
                  and r["service_events_applied"] != r["load"]["events_acked"]]
    checked = sum(1 for r in good if r["server"] == "service" and r["service_events_applied"] >= 0)
    print(f"\nService runs where tcpscope_agent_events_total equals the events acknowledged: "
          f"{checked - len(mismatched)} of {checked}")
    for r in mismatched:
        print(f"  batch {r['batch_size']} round {r['round']}: applied {r['service_events_applied']}, acknowledged {r['load']['events_acked']}")
    if verdict is not None:
        met = "met" if verdict >= TARGET_RATIO else "MISSED"
        print(f"Target service >= {TARGET_RATIO}x bare at batch {TARGET_BATCH}: {fmt(verdict, 3, 'x')}, {met}")
    for r in bad:
        error = r.get("error") or r.get("load", {}).get("error") or "no events acknowledged"
        print(f"Failed run: {r['server']} batch {r['batch_size']} round {r['round']}: {error}")


if __name__ == "__main__":
    main(sys.argv[1])
