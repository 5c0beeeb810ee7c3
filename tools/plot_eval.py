#!/usr/bin/env python3
"""plot_eval.py - attention mass against budget per selector, from adamas-eval's JSON.

    python3 tools/plot_eval.py eval.json mass.png
    python3 tools/plot_eval.py eval.json layer5.png --layer 5 --metric recall

One line per selector: the mean over every layer ("all", the default) or one layer,
budgets on a log2 axis.  Needs matplotlib.
"""
import argparse
import json
import sys

METRICS = {"mass": "attention mass captured", "recall": "recall of the oracle's set",
           "out_err": "relative output error"}


def main():
    ap = argparse.ArgumentParser(description="Plot adamas-eval results: a metric against "
                                 "budget, one line per selector.")
    ap.add_argument("json", help="adamas-eval --json output")
    ap.add_argument("png", help="image to write")
    ap.add_argument("--layer", default="all", help='"all" (default) or a layer index')
    ap.add_argument("--metric", choices=sorted(METRICS), default="mass",
                    help="what to plot (default mass)")
    ap.add_argument("--title", help="title (default: the dump's model name)")
    args = ap.parse_args()

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_eval: matplotlib is needed (apt-get install python3-matplotlib, or pip)")

    with open(args.json) as f:
        doc = json.load(f)
    layer = args.layer if args.layer == "all" else int(args.layer)
    lines = {}
    for r in doc.get("results", []):
        if r["layer"] == layer:
            lines.setdefault(r["selector"], []).append((r["budget"], r[args.metric]))
    if not lines:
        sys.exit(f"plot_eval: no results for layer {args.layer} in {args.json}")

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, points in lines.items():
        points.sort()
        style = "--" if name in ("oracle", "full") else "-"
        ax.plot([b for b, _ in points], [m for _, m in points], style, marker="o", label=name)
    ax.set_xscale("log", base=2)
    budgets = sorted({b for pts in lines.values() for b, _ in pts})
    ax.set_xticks(budgets)
    ax.set_xticklabels([str(b) for b in budgets])
    ax.set_xlabel("budget (tokens attended per query head)")
    ax.set_ylabel(METRICS[args.metric])
    if args.metric == "out_err":
        ax.set_yscale("log")
    else:
        ax.set_ylim(0, 1.02)
    where = "all layers" if layer == "all" else f"layer {layer}"
    title = args.title or doc.get("model") or doc.get("dump", "")
    ax.set_title(f"{title}\n{doc.get('tokens', '?')} tokens, last {doc.get('steps', '?')} "
                 f"positions, {where}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(args.png)
    print(f"plot_eval: wrote {args.png}")


if __name__ == "__main__":
    main()
