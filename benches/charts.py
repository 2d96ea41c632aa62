"""Draws BENCHMARKS.md's side-by-side tables as SVG charts from an e2e.sh results file.

Usage: benches/charts.sh [RESULTS.tsv]  (default: the run the tables show). Writes
benches/charts/throughput.svg, cpu.svg and memory.svg. Medians over repeats, as the tables.
"""

import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

# Same bytes for the same numbers: no date, fixed ids.
plt.rcParams["svg.hashsalt"] = "redis-auth-proxy"
METADATA = {"Date": None, "Creator": None}
PROXIES = [("haproxy", "haproxy", "#9e9e9e"), ("stunnel", "stunnel", "#cfcfcf"),
           ("proxy", "redis-auth-proxy", "#c0392b")]
WORKLOADS = ["no pipelining", "pipeline 16", "one client", "new connection per request",
             "new connection per request, TLS 1.2", "100 KB values"]


def medians(path):
    samples = defaultdict(list)
    with open(path) as results:
        for line in results:
            workload, target, _repeat, metric, value = line.rstrip("\n").split("\t")
            samples[(workload, target, metric)].append(float(value))
    return {key: statistics.median(values) for key, values in samples.items()}


def grouped(ax, values, label):
    """Horizontal bars, one group per workload, one bar per proxy."""
    height = 0.8 / len(PROXIES)
    for i, (target, name, colour) in enumerate(PROXIES):
        ys = [w + (i - 1) * height for w in range(len(WORKLOADS))]
        xs = [values.get((workload, target), 0) for workload in WORKLOADS]
        bars = ax.barh(ys, xs, height, label=name, color=colour, edgecolor="black", linewidth=0.4)
        ax.bar_label(bars, fmt=label, fontsize=7, padding=2)
    ax.set_yticks(range(len(WORKLOADS)), WORKLOADS, fontsize=8)
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="best")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "benches/results/2026-11-28.tsv"
    m = medians(path)
    ratio = {(w, t): m[(w, t, "rps")] / m[(w, "direct", "rps")]
             for w in WORKLOADS for t, _, _ in PROXIES if (w, t, "rps") in m}
    fig, ax = plt.subplots(figsize=(8, 5))
    grouped(ax, ratio, "%.2f")
    ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xlabel("requests/s relative to a direct TLS connection (1.0, dashed); higher is better")
    ax.set_title(f"Throughput ({path})", fontsize=9)
    fig.tight_layout()
    fig.savefig("benches/charts/throughput.svg", metadata=METADATA)

    cpu = {(w, t): m[(w, t, "cpu_us_per_req")]
           for w in WORKLOADS for t, _, _ in PROXIES if (w, t, "cpu_us_per_req") in m}
    fig, ax = plt.subplots(figsize=(8, 5))
    grouped(ax, cpu, "%.1f")
    ax.set_xscale("log")
    ax.set_xlabel("CPU of the proxy process per request, µs (log scale); lower is better")
    ax.set_title(f"CPU per request ({path})", fontsize=9)
    fig.tight_layout()
    fig.savefig("benches/charts/cpu.svg", metadata=METADATA)

    fig, ax = plt.subplots(figsize=(8, 2.2))
    names = [name for _, name, _ in PROXIES]
    kib = [m[("idle", target, "kib_per_conn")] for target, _, _ in PROXIES]
    bars = ax.barh(names, kib, color=[c for _, _, c in PROXIES], edgecolor="black", linewidth=0.4)
    ax.bar_label(bars, fmt="%.1f KiB", fontsize=8, padding=2)
    ax.invert_yaxis()
    connections = int(m[("idle", "proxy", "connections")])
    ax.set_xlabel(f"RSS per idle connection, KiB ({connections:,} open); lower is better")
    ax.set_title(f"Memory ({path})", fontsize=9)
    fig.tight_layout()
    fig.savefig("benches/charts/memory.svg", metadata=METADATA)


if __name__ == "__main__":
    main()
