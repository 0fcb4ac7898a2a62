#!/usr/bin/env python3
"""Tables of bench/replica_bench's results.jsonl: each replica's cost, and the fleet's totals
through the CLI and PromQL against what the simulator acknowledged."""
import json
import sys

MIB = 1048576


def expected_totals(sim):
    kinds = sim.get("events_acked_by_kind", {})
    return {
        "events": sim.get("events_acked"),
        "handshakes": kinds.get("handshake"),
        "handshake_failures": kinds.get("handshake_failed"),
        "closes": kinds.get("close"),
        "keepalive_probes": kinds.get("keepalive_probe"),
        "keepalive_timeouts": kinds.get("keepalive_timeout"),
        "half_open": 0,
        "hosts": sim.get("hosts"),
    }


def main(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    single = next((r for r in runs if r["replicas"] == 1), None)
    single_cores = single["window"]["replicas"][0].get("cores") if single and single[
        "window"]["replicas"] else None
    single_rss = single["window"]["replicas"][0].get("rss_bytes") if single and single[
        "window"]["replicas"] else None

    print()
    print("| run | replica | hosts homed | cores | RSS MiB | peak RSS MiB | pair-index entries "
          "(ends) | simulator checks |")
    print("| --- " * 8 + "|")
    for r in runs:
        sim = r["sim"]
        checks = "passed" if sim.get("checks_passed") else "FAILED: " + "; ".join(
            sim.get("failures", []) + ([sim["error"]] if sim.get("error") else []))
        replicas = r["window"]["replicas"]
        killed = any(rep.get("killed") for rep in replicas)
        for i, rep in enumerate(replicas):
            if rep.get("killed"):
                print(f"| {r['run']} | {i} | killed during the window | | | | | "
                      f"{checks if i == 0 else ''} |")
                continue
            print(f"| {r['run']} | {i} | {rep.get('hosts_up', 0):.0f} | "
                  f"{rep.get('cores', 0):.2f} | {rep.get('rss_bytes', 0) / MIB:,.0f} | "
                  f"{rep.get('hwm_bytes', 0) / MIB:,.0f} | "
                  f"{rep.get('pair_index_entries', 0):,.0f} ({rep.get('pair_index_ends', 0):,.0f}) "
                  f"| {checks if i == 0 else ''} |")
        if len(replicas) > 1 or single_cores:
            cores = sum(rep.get("cores", 0) for rep in replicas)
            rss = sum(rep.get("rss_bytes", 0) for rep in replicas)
            hwm = sum(rep.get("hwm_bytes", 0) for rep in replicas)
            entries = sum(rep.get("pair_index_entries", 0) for rep in replicas)
            ends = sum(rep.get("pair_index_ends", 0) for rep in replicas)
            expected = sim.get("expected_pairs", 0)
            pairs = "= expected" if entries == expected and ends == 2 * expected else (
                f"expected {expected:,}")
            print(f"| {r['run']} | **sum** | {sum(rep.get('hosts_up', 0) for rep in replicas):.0f} "
                  f"| **{cores:.2f}** | **{rss / MIB:,.0f}** | {hwm / MIB:,.0f} | "
                  f"**{entries:,.0f}** ({ends:,.0f}) {pairs} | |")
            if single_cores and len(replicas) > 1 and not killed:
                print(f"| {r['run']} | sum / 1 replica | | {cores / single_cores:.2f}x | "
                      f"{rss / single_rss:.2f}x | | | |")
                print(f"| {r['run']} | mean replica / 1 replica | | "
                      f"{cores / len(replicas) / single_cores:.2f}x | "
                      f"{rss / len(replicas) / single_rss:.2f}x | | | |")
        busy = r["machine_busy_ticks"] / r["clk_tck"] / r["wall_s"] if r["wall_s"] else 0
        print(f"| {r['run']} | simulator | {sim.get('hosts', 0)} x {sim.get('ends_per_host', 0)} "
              f"| {sim.get('sim_cores', 0):.2f} | | | {sim.get('events_per_s', 0):,.0f} events/s "
              f"acked in the window | machine busy {busy:.2f} cores |")
        if sim.get("replicas_lost"):
            print(f"| {r['run']} | failover | {sim.get('hosts_rehomed', 0)} hosts rehomed | | | | "
                  f"rehomed {sim.get('rehome_median_s', -1):.2f} s (median), "
                  f"{sim.get('rehome_max_s', -1):.2f} s (max) after their stream broke; "
                  f"{sim.get('events_lost_with_replicas', 0):,} events acknowledged by the killed "
                  f"replica are lost with it | |")

    print()
    names = list(expected_totals({}).keys())
    print("| run | source | " + " | ".join(names) + " | equal to the simulator's |")
    print("| --- " * (len(names) + 3) + "|")
    for r in runs:
        if r["sim"].get("replicas_lost"):
            print(f"| {r['run']} | not compared here: a replica was killed (--kill-after); the "
                  f"simulator's own checks compared what the replicas still up acknowledged |"
                  + " |" * (len(names) + 1))
            continue
        expected = expected_totals(r["sim"])
        rows = [("simulator acknowledged", expected)]
        rows.append(("`tcpscope summary` (fleet, via replica 0)", r["totals"].get("cli", {})))
        rows.append(("PromQL sums (every replica scraped)", r["totals"].get("promql", {})))
        for source, totals in rows:
            cells = [f"{totals.get(n):,}" if isinstance(totals.get(n), int) else str(
                totals.get(n)) for n in names]
            equal = "" if source.startswith("simulator") else (
                "**yes**" if all(totals.get(n) == expected[n] for n in names) else "**NO**")
            if totals.get("unanswered_replicas"):
                equal += f" (partial: {totals['unanswered_replicas']} replica(s) unanswered)"
            print(f"| {r['run']} | {source} | " + " | ".join(cells) + f" | {equal} |")


if __name__ == "__main__":
    main(sys.argv[1])
