#!/usr/bin/env python3
"""Markdown tables from a bench/compare.sh results directory.

    bench/compare/table.py bench/results/compare-YYYYMMDD-HHMM [MORE_DIRS...]

Reads every TOOL-HOSTS-PHASE.json that bench/measure.py wrote (plus the
fields compare.sh added: tool, hosts, phase, forks) and prints seconds per
phase per tool per size, drover's ratio to each peer (peer time / drover
time: above 1 means drover is faster), the Ansible forks sweeps, and peak
controller memory. Several directories (e.g. a 20-host and a 100-host
invocation) make one table. Kept separate from the driver so a partial or merged
results directory can be re-tabulated without re-running anything.
"""

import glob
import json
import os
import sys

TOOLS = ["drover", "drover-warm", "mitogen", "ansible", "pyinfra"]
LABEL = {"drover": "drover", "drover-warm": "drover (resident)", "mitogen": "Ansible+mitogen", "ansible": "Ansible",
         "pyinfra": "pyinfra"}
DROVERS = ["drover", "drover-warm"]
PHASES = ["first", "noop", "change", "rollback"]


def main():
    paths = [p for out in sys.argv[1:] for p in sorted(glob.glob(os.path.join(out, "*.json")))]
    runs = [json.load(open(p)) for p in paths]
    # Runs from before BENCH_INIT existed were all on runit hosts.
    main_runs = {(r["tool"], (r.get("init", "runit"), r["hosts"]), r["phase"]): r for r in runs if r["phase"] in PHASES}
    tools = [t for t in TOOLS if any(k[0] == t for k in main_runs)]
    sizes = sorted({k[1] for k in main_runs})
    drovers = [t for t in tools if t in DROVERS]
    peers = [t for t in tools if t not in DROVERS]
    forks = {(k[0], k[1]): r["forks"] for k, r in main_runs.items()}

    head = "| init | hosts | phase | " + " | ".join(LABEL[t] for t in tools) + " | " + \
        " | ".join(f"{LABEL[p]} ÷ {LABEL[d]}" for d in drovers for p in peers) + " | load (1 min) at start |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for size in sizes:
        for ph in PHASES:
            row = [size[0], str(size[1]), ph]
            walls = {t: main_runs.get((t, size, ph), {}).get("wall_s") for t in tools}
            row += [f"{walls[t]:.3f} s" if walls[t] is not None else "–" for t in tools]
            row += [f"{walls[p] / walls[d]:.1f}×" if walls[d] and walls[p] else "–" for d in drovers for p in peers]
            loads = [main_runs[(t, size, ph)]["loadavg_start"].split()[0] for t in tools if (t, size, ph) in main_runs]
            row.append(", ".join(loads))
            print("| " + " | ".join(row) + " |")
    print()
    # drover takes no forks: it runs with its default (`apply.parallel`, 512).
    used = [f"{LABEL[t]} {n[1]} {n[0]} hosts: {'--parallel ' if t == 'pyinfra' else 'forks '}{forks[(t, n)]}"
            for n in sizes for t in tools if (t, n) in forks and t not in DROVERS]
    print("drover: default parallelism (512). " + "; ".join(used) + ".")

    sweep = sorted((r for r in runs if r["phase"] == "tune-noop"), key=lambda r: (r["tool"], r["hosts"], r["forks"]))
    if sweep:
        print()
        print("Forks sweep (no-op after one apply, same lab):")
        print()
        print("| tool | hosts | forks | no-op | load (1 min) at start |")
        print("|---|---|---|---|---|")
        for r in sweep:
            print(f"| {LABEL[r['tool']]} | {r['hosts']} | {r['forks']} | {r['wall_s']:.2f} s | {r['loadavg_start'].split()[0]} |")

    print()
    print("Controller memory, peak PSS of the process tree (MiB), first / noop / change / rollback:")
    print()
    print("| init | hosts | " + " | ".join(LABEL[t] for t in tools) + " |")
    print("|---|---|" + "---|" * len(tools))
    for n in sizes:
        cells = []
        for t in tools:
            v = [main_runs.get((t, n, ph), {}).get("peak_pss_kb") for ph in PHASES]
            cells.append(" / ".join(f"{x / 1024:.0f}" if x is not None else "–" for x in v))
        print(f"| {n[0]} | {n[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
