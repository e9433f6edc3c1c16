#!/usr/bin/python3
"""Draws the benchmark charts from the saved runs (bench/runs/*.json).

    bench/plot.py                 # the latest run of each kind
    bench/plot.py RUN.json ...    # these runs instead

docs/performance.png: authoritative QPS (skydns vs Knot DNS), forwarding QPS
(skydns vs unbound), private memory idle and at peak. docs/soak.png: memory
and open files over a soak run. Needs Debian's python3-matplotlib
(`apt-get install python3-matplotlib`; hence /usr/bin/python3).
"""
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNS = ROOT / "bench" / "runs"
OURS, REF1, REF2, MANY = "#d1495b", "#00798c", "#edae49", "#f08a99"


def latest(paths):
    """The newest run of each kind among the given files."""
    runs = {}
    for p in sorted(paths):
        run = json.loads(pathlib.Path(p).read_text())
        if run["kind"] not in runs or run["started"] >= runs[run["kind"]]["started"]:
            runs[run["kind"]] = run
    return runs


def median_of(results, query, server):
    """The medians of one server on one query: from the run's medians, or
    (runs saved before every server was listed there) from its samples."""
    m = results["medians"].get(query, {}).get(server)
    if m:
        return m
    xs = [x for x in results.get("runs", []) if x["query"] == query and x["server"] == server]
    if not xs:
        return None
    qps = sorted(x["qps"] for x in xs)
    peak = {k: max(x["server_peak"][k] for x in xs) for k in xs[0]["server_peak"]}
    return {"qps": qps[len(qps) // 2], "server_peak": peak}


def bars(ax, groups, series, title, ylabel):
    n = len(series)
    width = 0.8 / n
    for i, (label, values, color) in enumerate(series):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        rects = ax.bar(xs, [v or 0 for v in values], width, label=label, color=color)
        for r, v in zip(rects, values):
            if v:
                txt = f"{v / 1000:.0f}k" if v >= 1000 else f"{v:.1f}"
                ax.annotate(txt, (r.get_x() + r.get_width() / 2, r.get_height()), ha="center",
                            va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    top = max((v or 0 for _, vs, _ in series for v in vs), default=1)
    ax.set_ylim(0, top * 1.35)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)


def mib(kib):
    return kib / 1024


def performance(runs, png):
    auth, fwd = runs.get("auth"), runs.get("forward")
    if not auth and not fwd:
        return
    panels = [p for p in (auth and "auth", fwd and "fwd") if p] + ["mem"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels) + 1, 4.8))
    axes = list(axes) if len(panels) > 1 else [axes]
    cols = []
    if auth:
        r = auth["results"]
        best = r["best"]
        qs = [q for q in ("a", "srv", "nx") if q in best]
        many = {q: median_of(r, q, "skydns-100k") for q in qs}
        names = {"a": "A (10 answers)", "srv": "SRV + glue\n(EDNS0)", "nx": "NXDOMAIN"}
        shipped = {q: median_of(r, q, "skydns") for q in qs}
        series = [("skydns (best setting)", [best[q]["ours_qps"] for q in qs], OURS),
                  ("skydns as shipped, 10 services", [(shipped[q] or {}).get("qps") for q in qs], "#e0707f"),
                  (f"skydns as shipped, {r['many']['services']:,} services",
                   [(many[q] or {}).get("qps") for q in qs], MANY),
                  ("Knot DNS (best setting)", [best[q]["reference_qps"] for q in qs], REF1)]
        bars(axes.pop(0), [names[q] for q in qs], series,
             f"Authoritative QPS (median, {auth['started'][:10]})", "queries/s")
        mem = r["memory"]
        knot = best["a"]["reference"]
        cols.append(("skydns\n10 services", mem["with_services"]["skydns"]["anon_kib"],
                     median_of(r, "a", "skydns")["server_peak"]["anon_kib"], OURS))
        if many["a"]:
            cols.append((f"skydns\n{r['many']['services']:,}", mem["with_services"]["skydns-100k"]["anon_kib"],
                         many["a"]["server_peak"]["anon_kib"], MANY))
        cols.append(("Knot DNS\n(best)", mem["with_services"][knot]["anon_kib"],
                     median_of(r, "a", knot)["server_peak"]["anon_kib"], REF1))
    if fwd:
        r = fwd["results"]
        best = r["best"]
        qs = [q for q in ("cached", "miss") if q in best]
        names = {"cached": "answered from cache", "miss": "cache miss\n(stub upstream)"}
        series = [("skydns (best setting)", [best[q]["ours_qps"] for q in qs], OURS),
                  ("unbound (best setting)", [best[q]["reference_qps"] for q in qs], REF2)]
        bars(axes.pop(0), [names[q] for q in qs], series,
             f"Forwarding QPS (median, {fwd['started'][:10]})", "queries/s")
        sk, ub = best["cached"]["ours"], best["cached"]["reference"]
        cols.append(("skydns\nforwarder", r["memory"]["idle"][sk]["anon_kib"],
                     max(median_of(r, q, sk)["server_peak"]["anon_kib"] for q in qs), OURS))
        cols.append(("unbound\n(best)", r["memory"]["idle"][ub]["anon_kib"],
                     max(median_of(r, q, ub)["server_peak"]["anon_kib"] for q in qs), REF2))
    ax = axes.pop(0)
    xs = range(len(cols))
    ax.bar([x - 0.2 for x in xs], [mib(c[1]) for c in cols], 0.4, color=[c[3] for c in cols], alpha=0.55,
           label="idle (RssAnon)")
    ax.bar([x + 0.2 for x in xs], [mib(c[2]) for c in cols], 0.4, color=[c[3] for c in cols],
           label="peak under load (RssAnon, sampled)")
    for x, c in zip(xs, cols):
        for dx, v in ((-0.2, mib(c[1])), (0.2, mib(c[2]))):
            ax.annotate(f"{v:.1f}", (x + dx, v), ha="center", va="bottom", fontsize=6.5, xytext=(0, 1),
                        textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([c[0] for c in cols], fontsize=7.5)
    ax.set_ylabel("MiB, private (log scale)")
    ax.set_ylim(top=max(mib(c[2]) for c in cols) * 6)
    ax.set_title("Private memory (light: idle, dark: peak)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle("skydns vs Knot DNS and unbound, same machine, same run (docs/performance.md)", fontsize=11)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def soak(run, png):
    samples = run["results"].get("samples", [])
    if not samples:
        return
    t = [s.get("t", 0) for s in samples]
    fig, ax = plt.subplots(figsize=(8, 4))
    for key, label in (("rss_kib", "VmRSS"), ("anon_kib", "RssAnon")):
        if key in samples[0]:
            ax.plot(t, [mib(s[key]) for s in samples], label=label)
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB")
    if "fds" in samples[0]:
        ax2 = ax.twinx()
        ax2.plot(t, [s["fds"] for s in samples], color="grey", linestyle=":", label="open fds")
        ax2.set_ylabel("open file descriptors")
        ax2.set_ylim(0, max(s["fds"] for s in samples) * 2)
    ax.set_title(f"Soak {run['started'][:16]}: memory over time")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main():
    runs = latest(sys.argv[1:] or RUNS.glob("*.json"))
    performance(runs, ROOT / "docs" / "performance.png")
    if "soak" in runs:
        soak(runs["soak"], ROOT / "docs" / "soak.png")


if __name__ == "__main__":
    main()
