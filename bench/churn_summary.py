#!/usr/bin/env python3
"""Summarises bench/churn_bench's results.jsonl as Markdown tables (printed on stdout).

Rates are compared with the "none" mode of the same run: the ratio of the medians, and the
median of the per-round ratios (each mode's round r against none's round r, which ran next to
it), since the machine is shared and its speed drifts.
"""
import json
import statistics
import sys


def median(values):
    return statistics.median(values) if values else None


def fmt(value, digits=0, suffix=""):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def agent_rows(mode, agent):
    """The per-round table of an agent mode: events, losses and CPU per event."""
    if not agent:
        return
    print("\n| " + mode + " round | connections | events expected (4 × conn) | generated | received by service | lost (expected − received) | kernel drops | agent user µs/event | agent user+sys µs/event | service user+sys µs/event | snapshot dumps | agent context switches per event |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    totals = dict(conn=0, exp=0, gen=0, recv=0, drop=0, au=0.0, at=0.0, st=0.0)
    user_per_event, total_per_event = [], []
    for r in sorted(agent, key=lambda r: r["round"]):
        tick_us = 1e6 / r["clk_tck"]
        au = r["agent_utime"] * tick_us
        at = (r["agent_utime"] + r["agent_stime"]) * tick_us
        st = (r["service_utime"] + r["service_stime"]) * tick_us
        events = r["events_generated"]
        u = au / events if events else None
        t = at / events if events else None
        s = st / events if events else None
        if u is not None:
            user_per_event.append(u)
            total_per_event.append(t)
        lost = r["events_expected"] - r["events_received"]
        print(f"| {r['round']} | {fmt(r['churn']['connections'])} | {fmt(r['events_expected'])} | "
              f"{fmt(events)} | {fmt(r['events_received'])} | {fmt(lost)} | {fmt(r['kernel_dropped'])} | "
              f"{fmt(u, 3)} | {fmt(t, 3)} | {fmt(s, 3)} | {r['dumps']} | "
              f"{fmt(r.get('agent_context_switches', 0) / events if events else None, 3)} |")
        totals["conn"] += r["churn"]["connections"]
        totals["exp"] += r["events_expected"]
        totals["gen"] += events
        totals["recv"] += r["events_received"]
        totals["drop"] += r["kernel_dropped"]
        totals["au"] += au
        totals["at"] += at
        totals["st"] += st
    g = totals["gen"]
    print(f"| all | {fmt(totals['conn'])} | {fmt(totals['exp'])} | {fmt(g)} | {fmt(totals['recv'])} | "
          f"{fmt(totals['exp'] - totals['recv'])} | {fmt(totals['drop'])} | "
          f"{fmt(totals['au'] / g if g else None, 3)} | {fmt(totals['at'] / g if g else None, 3)} | "
          f"{fmt(totals['st'] / g if g else None, 3)} | | |")
    print(f"\n{mode} CPU per event, median of rounds: user {fmt(median(user_per_event), 3)} µs, "
          f"user+sys {fmt(median(total_per_event), 3)} µs.")


def main(path):
    everything = [json.loads(line) for line in open(path) if line.strip()]
    rows = [r for r in everything if not r["mode"].endswith("-diag")]
    diag = [r for r in everything if r["mode"].endswith("-diag") and "churn" in r]
    modes = []
    for row in rows:
        if row["mode"] not in modes:
            modes.append(row["mode"])
    ok = {m: [r for r in rows if r["mode"] == m and "churn" in r] for m in modes}
    errors = {m: sorted({r["error"] for r in rows if r["mode"] == m and "error" in r}) for m in modes}
    rate = {m: {r["round"]: r["churn"]["rate"] for r in ok[m]} for m in modes}
    none = rate.get("none", {})

    print("| mode | conn/s per round | median conn/s | ratio of medians vs none | median per-round ratio vs none |")
    print("| --- | --- | --- | --- | --- |")
    for m in modes:
        if not ok[m]:
            print(f"| {m} | failed: {'; '.join(errors[m])} | n/a | n/a | n/a |")
            continue
        per_round = ", ".join(fmt(rate[m][k]) for k in sorted(rate[m]))
        med = median(list(rate[m].values()))
        if m == "none" or not none:
            ratio = paired = "—" if m == "none" else "n/a"
        else:
            ratio = fmt(med / median(list(none.values())), 3, "×")
            pairs = [rate[m][k] / none[k] for k in rate[m] if k in none]
            paired = fmt(median(pairs), 3, "×") + " (" + ", ".join(fmt(p, 3) for p in pairs) + ")"
        print(f"| {m} | {per_round} | {fmt(med)} | {ratio} | {paired} |")
    failed = sum(r["churn"]["connect_failed"] + r["churn"]["io_failed"] for m in modes for r in ok[m])
    print(f"\nFailed connections (connect or I/O), all rounds: {failed}")

    for agent_mode in ("agent", "baseline"):
        agent_rows(agent_mode, ok.get(agent_mode, []))

    bpf = ok.get("bpftrace", [])
    if bpf:
        counts = ", ".join(f"r{r['round']}: {r['inet_sock_set_state'] / max(1, r['churn']['connections']):.2f}"
                           for r in sorted(bpf, key=lambda r: r["round"]))
        print(f"\nbpftrace sock:inet_sock_set_state hits per connection (all namespaces): {counts}")
    if diag:
        print("\nDiagnostic rounds (kernel.bpf_stats_enabled=1, not in the ratios): time the observer's "
              "BPF programs ran, in the churning threads' context.")
        print("\n| observer | connections | program runs per connection | BPF ns per run | BPF µs per connection |")
        print("| --- | --- | --- | --- | --- |")
        for r in diag:
            conns = r["churn"]["connections"]
            runs, ns = r.get("bpf_run_cnt", 0), r.get("bpf_run_time_ns", 0)
            name = {"agent": "tcpscope-agent", "baseline": "tcpscope-agent (baseline)"}.get(
                r["mode"].removesuffix("-diag"), "bpftrace count()")
            print(f"| {name} | {fmt(conns)} | {fmt(runs / conns if conns else None, 2)} | "
                  f"{fmt(ns / runs if runs else None, 0)} | {fmt(ns / 1000 / conns if conns else None, 2)} |")
    others = [r.get("other_bpf_progs", -1) for r in rows]
    if any(o > 0 for o in others):
        print(f"\nWarning: other BPF tracing programs were loaded during some rounds (max {max(others)}): "
              "another observer's cost was in those rounds.")
    elif others and min(others) == 0:
        print("\nNo other BPF tracing programs were loaded during the rounds.")
    for m in modes:
        for error in errors[m]:
            print(f"\n{m}: {error}")


if __name__ == "__main__":
    main(sys.argv[1])
