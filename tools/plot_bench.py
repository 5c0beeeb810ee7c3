#!/usr/bin/env python3
"""plot_bench.py - figures and README tables from bench_decode's JSON lines.

  plot_bench.py plot RESULTS.jsonl [-o docs/bench_decode.png]
      speed-up over the library's dense decode (f16 KV) against context: one panel
      per shape and thread count, one line per selector and budget (matplotlib)
  plot_bench.py table RESULTS.jsonl [--long]
      the README table (markdown) on stdout: one row per shape, thread count and
      context (--long: one row per measured row, as bench_decode printed it)

RESULTS.jsonl is what `bench_decode --json FILE` wrote: a "run" object, one
"bandwidth" object per thread count, then one "decode" object per row.
"""
import argparse
import json
import sys


def load(path):
    run, bandwidth, rows = {}, {}, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            obj = json.loads(line)
            kind = obj.get("kind")
            if kind == "run":
                run = obj
            elif kind == "bandwidth":
                bandwidth[obj["threads"]] = obj["gbps"]
            elif kind == "decode":
                rows.append(obj)
    if not rows:
        sys.exit(f"plot_bench: {path} holds no decode rows")
    return run, bandwidth, rows


def shape_name(r):
    return f"{r['heads']}/{r['kv_heads']} heads, d={r['dim']}"


def context_name(n):
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def series_name(r):
    return f"{r['selector']} B={r['budget']}"


# ------------------------------------------------------------------ plot

def plot(path, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_bench: matplotlib is needed (Debian: apt-get install python3-matplotlib)")
    run, bandwidth, rows = load(path)
    sparse = [r for r in rows if r["dtype"] == "f16" and r["budget"] > 0]
    panels = sorted({(r["heads"], r["kv_heads"], r["dim"], r["threads"]) for r in sparse},
                    key=lambda p: (-p[1], p[3]))
    cols = 2 if len(panels) > 1 else 1
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6.4 * cols, 4.6 * nrows), squeeze=False,
                             sharey=True)
    styles = {"adamas": "-", "quest": ":", "streaming": ":", "oracle": "-."}
    markers = {"adamas": "o", "quest": "s", "streaming": "v", "oracle": "D"}
    budgets = sorted({r["budget"] for r in sparse})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (h, g, d, t) in enumerate(panels):
        ax = axes[i // cols][i % cols]
        mine = [r for r in sparse if (r["heads"], r["kv_heads"], r["dim"], r["threads"]) ==
                (h, g, d, t)]
        order = ["adamas", "quest", "streaming", "oracle"]
        names = sorted({series_name(r) for r in mine},
                       key=lambda x: (order.index(x.split(" B=")[0])
                                      if x.split(" B=")[0] in order else len(order),
                                      x.split(" B=")[0], int(x.split(" B=")[1])))
        for name in names:
            pts = sorted((r["context"], r["vs_dense"]) for r in mine if series_name(r) == name)
            sel, budget = name.split(" B=")
            base = "adamas" if sel.startswith("adamas") else sel
            style = "--" if "rerank" in sel else styles.get(base, "-")
            color = colors[budgets.index(int(budget)) % len(colors)] if base == "adamas" else \
                {"quest": "tab:gray", "streaming": "tab:olive", "oracle": "black"}.get(base)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color,
                    marker=markers.get(base, "o"), markersize=4, label=name)
        ax.axhline(1.0, color="tab:red", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ctx = sorted({r["context"] for r in mine})
        ax.set_xticks(ctx)
        ax.set_xticklabels([context_name(n) for n in ctx])
        bw = bandwidth.get(t)
        ax.set_title(f"{h}/{g} heads, d={d}, {t} thread{'s' if t > 1 else ''}" +
                     (f" ({bw:.0f} GB/s)" if bw else ""), fontsize=10)
        ax.set_xlabel("context (tokens)")
        ax.set_ylabel("speed-up over dense (f16 KV)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    for j in range(len(panels), nrows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(f"adamas decode, one layer: {run.get('cpu', '?')}, kernels "
                 f"{run.get('kernels', '?')}, {run.get('date', '')[:10]}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot_bench: wrote {out}", file=sys.stderr)


# ----------------------------------------------------------------- tables

def find(rows, **key):
    for r in rows:
        if all(r.get(k) == v for k, v in key.items()):
            return r
    return None


def ms(r):
    v = r["ms"]
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def cpu_ms(r):
    v = r.get("cpu_ms")
    return "" if v is None else (f"{v:.3g}" if v < 100 else f"{v:.0f}")


def dense_cell(r):
    return f"{ms(r)} ms, {r['bw_pct']:.0f}%" if r else ""


def sparse_cell(r):
    return f"{ms(r)} ms, {r['vs_dense']:.1f}x" if r else ""


def table(path, long):
    run, bandwidth, rows = load(path)
    bw = ", ".join(f"{t} thread{'s' if t > 1 else ''} {v:.1f} GB/s"
                   for t, v in sorted(bandwidth.items()))
    print(f"{run.get('cpu', '?')}, {run.get('logical_cpus', '?')} logical CPUs, kernels "
          f"{run.get('kernels', '?')}, OpenBLAS {run.get('openblas', '?')}, "
          f"{run.get('cache', '?')} caches; memory read bandwidth: {bw}.\n")
    if long:
        print("| shape | threads | context | selector | KV | budget | ms/step | cpu ms | MB/step "
              "| GB/s | % bw | vs dense | mass |")
        print("|---|--:|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
        for r in rows:
            mass = "" if r["mass"] is None else f"{r['mass']:.4f}"
            print(f"| {r['heads']}/{r['kv_heads']} | {r['threads']} | "
                  f"{context_name(r['context'])} | {r['selector']} | {r['dtype']} | "
                  f"{r['budget'] or '-'} | {ms(r)} | {cpu_ms(r)} | {r['bytes'] / 1e6:.1f} | "
                  f"{r['gbps']:.1f} | {r['bw_pct']:.0f}% | {r['vs_dense']:.1f}x | {mass} |")
        return

    budgets = sorted({r["budget"] for r in rows if r["selector"] == "adamas"})
    reranks = sorted({r["selector"] for r in rows if r["selector"].startswith("adamas-rerank")})
    base_budget = next((r["budget"] for r in rows if r["selector"] == "oracle"),
                       next((r["budget"] for r in rows if r["selector"] == "quest"), 128))
    mid = 128 if 128 in budgets else (budgets[len(budgets) // 2] if budgets else base_budget)
    head = ["shape", "threads", "context", "full f16", "full f32", "OpenBLAS f32", "scan"]
    head += [f"adamas B={b}" for b in budgets]
    head += [f"{s[len('adamas-'):]} B={mid}" for s in reranks]
    head += [f"{s} B={base_budget}" for s in ("quest", "streaming", "oracle")]
    head += [f"mass B={mid}: adamas / {' / '.join(s[len('adamas-'):] for s in reranks)}"
             f"{' / ' if reranks else ''}quest / oracle"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|")
    blocks = []
    for r in rows:
        key = (r["heads"], r["kv_heads"], r["dim"], r["threads"], r["context"])
        if key not in blocks:
            blocks.append(key)
    blocks.sort(key=lambda k: (-k[1], k[3], k[4]))
    for h, g, d, t, n in blocks:
        b = [r for r in rows if (r["heads"], r["kv_heads"], r["dim"], r["threads"],
                                 r["context"]) == (h, g, d, t, n)]
        scan = find(b, selector="scan")
        cells = [f"{h}/{g}" + (f" d={d}" if d != 128 else ""), str(t), context_name(n),
                 dense_cell(find(b, selector="full", dtype="f16")),
                 dense_cell(find(b, selector="full", dtype="f32")),
                 sparse_cell(find(b, selector="blas")),
                 f"{ms(scan)} ms, {scan['bw_pct']:.0f}%" if scan else ""]
        cells += [sparse_cell(find(b, selector="adamas", budget=x)) for x in budgets]
        cells += [sparse_cell(find(b, selector=s, budget=mid)) for s in reranks]
        cells += [sparse_cell(find(b, selector=s, budget=base_budget))
                  for s in ("quest", "streaming", "oracle")]
        masses = [find(b, selector="adamas", budget=mid)]
        masses += [find(b, selector=s, budget=mid) for s in reranks]
        masses += [find(b, selector="quest", budget=base_budget),
                   find(b, selector="oracle", budget=base_budget)]
        cells.append(" / ".join("-" if m is None or m["mass"] is None else f"{m['mass']:.3f}"
                                for m in masses))
        print("| " + " | ".join(cells) + " |")
    print("\nCells: time per decode step of one layer (median), then for dense rows the share "
          "of the measured bandwidth, for the others the speed-up over the library's dense "
          "decode of the same KV dtype and threads (OpenBLAS: over full f32).")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plot", help="speed-up against context (PNG)")
    p.add_argument("results")
    p.add_argument("-o", "--output", default="docs/bench_decode.png")
    t = sub.add_parser("table", help="the README table (markdown)")
    t.add_argument("results")
    t.add_argument("--long", action="store_true", help="one row per measured row")
    a = ap.parse_args()
    if a.cmd == "plot":
        plot(a.results, a.output)
    else:
        table(a.results, a.long)


if __name__ == "__main__":
    main()
