#!/usr/bin/env python3
"""plot_model.py - the reference model's measurements: JSON, figures and README tables.

  plot_model.py collect DIR [--docs docs]
      gathers what tools/measure_model.sh left in DIR (adamas-run --json files and
      their .meta) into docs/model_perplexity.json, docs/model_passkey.json and
      docs/model_speed.json
  plot_model.py plot [--docs docs]
      docs/model_perplexity.png (bits per byte against budget, every selector),
      docs/model_passkey.png (retrieval against context and depth) and
      docs/model_speed.png (decode and prefill tokens/s against context); matplotlib
      (Debian: python3-matplotlib)
  plot_model.py table [--docs docs]
      the README's tables (markdown) and the goals of the measurements, on stdout

Perplexity comparisons are paired: every selector decodes the same windows from the
same prefill, and each window's loss is kept, so the difference with full attention
comes with a standard error over the windows.
"""
import argparse
import functools
import glob
import json
import math
import os
import sys

MODEL = "tools/model/adamas-ref.gguf"
SELECTOR_ORDER = ["full", "oracle", "adamas-rerank4", "adamas-calibrated", "adamas",
                  "quest", "streaming"]
COLORS = {"full": "black", "oracle": "tab:gray", "adamas": "tab:blue",
          "adamas-calibrated": "tab:green", "adamas-rerank4": "tab:purple",
          "quest": "tab:orange", "streaming": "tab:red"}


def label(r, with_budget=False):
    """The selector, its budget (with_budget) and its dense layers (when not the
    default 2, or always with_budget)."""
    name = r["select"]
    if name == "full":
        return name
    if with_budget:
        return f"{name} B={r['budget']}, {r.get('dense_layers', 2)} dense"
    if r.get("dense_layers", 2) != 2:
        name += f", {r['dense_layers']} dense"
    return name


def order_key(r):
    s = r["select"]
    return (SELECTOR_ORDER.index(s) if s in SELECTOR_ORDER else 99, -r.get("dense_layers", 2),
            r.get("budget", 0))


def ctx_name(n):
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


# --------------------------------------------------------------- collect

def read_meta(path):
    meta = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition(": ")
                if value:
                    meta[key.replace(" ", "_")] = value
    if "seconds" in meta:
        meta["seconds"] = int(meta["seconds"])
    return meta


def model_layers(path):
    """The layer count of the GGUF model the measurements ran (llama.block_count)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "train"))
    import export_gguf
    return export_gguf.read_gguf(path)[0]["llama.block_count"]


def collect(src, docs):
    layers = model_layers(MODEL)
    groups = {"perplexity": [], "passkey": [], "speed": []}
    for path in sorted(glob.glob(os.path.join(src, "*.json"))):
        name = os.path.splitext(os.path.basename(path))[0]
        kind = name.split("-")[0]
        if kind not in groups:
            continue
        with open(path) as f:
            run = json.load(f)
        groups[kind].append({"name": name, "meta": read_meta(os.path.splitext(path)[0] + ".meta"),
                             "result": run})
    for kind, runs in groups.items():
        if not runs:
            continue
        runs.sort(key=lambda r: r["result"].get("ctx", 0))
        out = os.path.join(docs, f"model_{kind}.json")
        with open(out, "w") as f:
            json.dump({"model": MODEL, "model_layers": layers, "runs": runs}, f, indent=1)
            f.write("\n")
        print(f"plot_model: {len(runs)} {kind} run(s) to {out}")


def load(docs, kind, key="runs"):
    path = os.path.join(docs, f"model_{kind}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)[key]


# ----------------------------------------------------------- perplexity

def paired(run, r, base):
    """(bits per byte difference with base, its standard error over the windows,
    perplexity ratio) of result r, paired window by window."""
    nbytes = run["window_bytes"]
    diffs = [(a - b) / math.log(2) / n for a, b, n in
             zip(r["window_nll_nats"], base["window_nll_nats"], nbytes)]
    w = len(diffs)
    mean = sum((a - b) for a, b in zip(r["window_nll_nats"], base["window_nll_nats"])) \
        / math.log(2) / sum(nbytes)
    sd = math.sqrt(sum((d - sum(diffs) / w) ** 2 for d in diffs) / (w - 1)) if w > 1 else 0.0
    ratio = r["perplexity"] / base["perplexity"]
    return mean, sd / math.sqrt(w) if w else 0.0, ratio


def perplexity_series(run):
    full = next(r for r in run["results"] if r["select"] == "full")
    series = {}
    for r in sorted(run["results"], key=order_key):
        if r["select"] != "full":
            series.setdefault(label(r), []).append(r)
    return full, series


def plot_perplexity(plt, runs, out, n_layers):
    run = runs[0]["result"]
    full, series = perplexity_series(run)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, zoom in zip(axes, (False, True)):
        ax.axhline(full["bits_per_byte"], color="black", lw=1.5, label="full attention")
        for name, rs in series.items():
            sel = rs[0]["select"]
            dashed = rs[0]["dense_layers"] != 2
            ax.plot([r["budget"] for r in rs], [r["bits_per_byte"] for r in rs], marker="o",
                    color=COLORS.get(sel, None), ls="--" if dashed else "-", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks([r["budget"] for r in next(iter(series.values()))])
        ax.set_xticklabels([str(r["budget"]) for r in next(iter(series.values()))])
        ax.set_xlabel("budget B (tokens attended per head in each sparse layer)")
        ax.set_ylabel("bits per byte")
        ax.grid(alpha=0.3)
        if zoom:
            f = full["bits_per_byte"]
            # 2% more perplexity per token; bits per byte scale by tokens per byte
            f2 = f + math.log2(1.02) * full["tokens_scored"] / full["bytes_scored"]
            ax.axhline(f2, color="black", lw=0.8, ls=":", label="full + 2% perplexity")
            ax.legend(fontsize=8, loc="upper right")
            ax.set_ylim(f - 0.04, f + 0.12)
            ax.set_title("close-up near full attention")
        else:
            ax.set_title(f"held-out kernel C, {ctx_name(run['ctx'])} context, "
                         f"{run['windows']} windows x {run['tail']} decoded tokens")
            ax.legend(fontsize=8)
    fig.suptitle(f"adamas-run, reference model ({n_layers} layers, 2 of them dense "
                 "unless noted)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def table_perplexity(runs):
    run = runs[0]["result"]
    meta = runs[0]["meta"]
    full, series = perplexity_series(run)
    budgets = [r["budget"] for r in next(iter(series.values()))]
    scored = full["tokens_scored"]
    print(f"Perplexity: {run['windows']} windows of {ctx_name(run['ctx'])} tokens spread over "
          f"{os.path.basename(run['file'])}, the last {run['tail']} of each decoded and scored "
          f"({scored} tokens per row); {meta.get('uptime_before', '')}\n")
    print("Bits per byte (and perplexity relative to full attention):\n")
    print("| selector | " + " | ".join(f"B={b}" for b in budgets) + " |")
    print("|---|" + "--:|" * len(budgets))
    print(f"| full | {full['bits_per_byte']:.4f} (perplexity {full['perplexity']:.4f}) |"
          + " |" * (len(budgets) - 1))
    for name, rs in series.items():
        cells = []
        for r in rs:
            _, _, ratio = paired(run, r, full)
            cells.append(f"{r['bits_per_byte']:.4f} ({(ratio - 1) * 100:+.1f}%)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nPaired difference with full attention, bits per byte, mean ± standard error "
          "over the windows:\n")
    print("| selector | " + " | ".join(f"B={b}" for b in budgets) + " |")
    print("|---|" + "--:|" * len(budgets))
    for name, rs in series.items():
        cells = []
        for r in rs:
            d, se, _ = paired(run, r, full)
            cells.append(f"{d:+.4f} ± {se:.4f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nDecode tokens/s during the run (16K context, every selector in turn):\n")
    print("| selector | " + " | ".join(f"B={b}" for b in budgets) + " |")
    print("|---|" + "--:|" * len(budgets))
    print(f"| full | {full['decode_tokens_per_s']:.1f} |" + " |" * (len(budgets) - 1))
    for name, rs in series.items():
        print(f"| {name} | " + " | ".join(f"{r['decode_tokens_per_s']:.1f}" for r in rs) + " |")
    print()


# --------------------------------------------------------------- passkey

def passkey_grid(runs):
    """{label: {ctx: (found per depth, trials)}}, the depths, the contexts."""
    grid, depths, ctxs = {}, None, []
    for entry in runs:
        run = entry["result"]
        depths = run["depths"]
        ctxs.append(run["ctx"])
        for r in sorted(run["results"], key=order_key):
            grid.setdefault(label(r, with_budget=True), {})[run["ctx"]] = (r["found"], run["trials"])
    return grid, depths, ctxs


def plot_passkey(plt, runs, out):
    import numpy as np
    grid, depths, ctxs = passkey_grid(runs)
    names = list(grid)
    cols = 4
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows + 0.6), squeeze=False)
    for ax, name in zip(axes.flat, names):
        acc = np.full((len(ctxs), len(depths)), np.nan)
        for i, c in enumerate(ctxs):
            if c in grid[name]:
                found, trials = grid[name][c]
                for j, f in enumerate(found):
                    acc[i, j] = f / trials
                    ax.text(j, i, f"{f}/{trials}", ha="center", va="center", fontsize=8,
                            color="white" if f / trials < 0.5 else "black")
        ax.imshow(acc, vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks(range(len(depths)))
        ax.set_xticklabels([f"{d:.1f}" for d in depths], fontsize=8)
        ax.set_yticks(range(len(ctxs)))
        ax.set_yticklabels([ctx_name(c) for c in ctxs], fontsize=8)
        total = sum(sum(grid[name][c][0]) for c in ctxs if c in grid[name])
        n = sum(len(grid[name][c][0]) * grid[name][c][1] for c in ctxs if c in grid[name])
        ax.set_title(f"{name}: {total}/{n}", fontsize=9)
        ax.set_xlabel("depth of the key", fontsize=8)
        ax.set_ylabel("context", fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle("passkey retrieval (found / trials), key planted in held-out kernel C")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def table_passkey(runs):
    grid, depths, ctxs = passkey_grid(runs)
    print("Passkey: keys found / trials per context (all depths "
          + ", ".join(f"{d:.1f}" for d in depths) + "):\n")
    print("| selector | " + " | ".join(ctx_name(c) for c in ctxs) + " | all |")
    print("|---|" + "--:|" * (len(ctxs) + 1))
    for name, per in grid.items():
        cells, tf, tn = [], 0, 0
        for c in ctxs:
            found, trials = per[c]
            cells.append(f"{sum(found)}/{len(found) * trials}")
            tf += sum(found)
            tn += len(found) * trials
        print(f"| {name} | " + " | ".join(cells) + f" | {tf}/{tn} |")
    for entry in runs:
        print(f"\n{ctx_name(entry['result']['ctx'])}: {entry['meta'].get('uptime_before', '')}",
              end="")
    print("\n")


# ----------------------------------------------------------------- speed

def speed_rows(runs):
    """[(ctx, prefill tokens/s, {label: decode tokens/s})] by context."""
    out = []
    for entry in runs:
        run = entry["result"]
        out.append((run["ctx"], run["prefill_tokens_per_s"],
                    {label(r, with_budget=True): r["decode_tokens_per_s"] for r in
                     sorted(run["results"], key=order_key)}))
    return sorted(out)


def plot_speed(plt, runs, out, n_layers):
    rows = speed_rows(runs)
    ctxs = [r[0] for r in rows]
    names = list(rows[0][2])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for name in names:
        sel = name.split(",")[0].split(" ")[0]
        ls = "--" if "0 dense" in name else "-"
        axes[0].plot(ctxs, [r[2][name] for r in rows], marker="o", ls=ls,
                     color=COLORS.get(sel), label=name)
        if sel != "full":
            axes[1].plot(ctxs, [r[2][name] / r[2]["full"] for r in rows], marker="o", ls=ls,
                         color=COLORS.get(sel), label=name)
    axes[1].axhline(5, color="tab:red", lw=0.8, ls=":", label="goal: 5x at 32K")
    # Amdahl: the time of a step that is not attention (weights, norms, logits), taken
    # as the fastest sparse step at the shortest context, and the dense layers' share
    # of full attention bound the speed-up even if sparse layers cost nothing
    fixed = 1.0 / max(v for n, v in rows[0][2].items() if n != "full")
    for dense in sorted({r["dense_layers"] for r in runs[0]["result"]["results"]
                         if r["select"] != "full"}, reverse=True):
        bound = []
        for _, _, dec in rows:
            t_full = 1.0 / dec["full"]
            bound.append(t_full / (fixed + dense / n_layers * max(t_full - fixed, 0.0)))
        axes[1].plot(ctxs, bound, color="tab:gray", lw=1, ls="--" if dense == 0 else "-",
                     label=f"bound with {dense} dense of {n_layers} layers, free sparse layers")
    axes[2].plot(ctxs, [r[1] for r in rows], marker="o", color="black")
    titles = ("decode tokens/s", "decode speed-up over full attention",
              "prefill tokens/s (dense, batched)")
    for ax, t in zip(axes, titles):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ctxs)
        ax.set_xticklabels([ctx_name(c) for c in ctxs])
        ax.set_xlabel("context (tokens)")
        ax.set_title(t)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    threads = runs[0]["result"].get("threads")
    fig.suptitle(f"adamas-run on the 2-core development machine, {threads} threads, f16 KV cache")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def table_speed(runs):
    rows = speed_rows(runs)
    names = list(rows[0][2])
    print("Speed: tokens/s (decode: speed-up over full attention):\n")
    print("| context | prefill | " + " | ".join(f"decode {n}" for n in names) + " |")
    print("|--:|--:|" + "--:|" * len(names))
    for ctx, prefill, dec in rows:
        cells = [f"{dec[n]:.1f}" + ("" if n == "full" else f" ({dec[n] / dec['full']:.1f}x)")
                 for n in names]
        print(f"| {ctx_name(ctx)} | {prefill:.0f} | " + " | ".join(cells) + " |")
    print()
    for entry in runs:
        print(f"{ctx_name(entry['result']['ctx'])}: {entry['meta'].get('uptime_before', '')}")
    print()


# ----------------------------------------------------------------- goals

def goals(ppl, speed):
    print("Goals:\n")
    if ppl:
        run = ppl[0]["result"]
        full, series = perplexity_series(run)
        best = None
        for name, rs in series.items():
            if rs[0]["select"].startswith("adamas"):
                for r in rs:
                    if r["budget"] == 128 and (best is None or r["perplexity"] < best[1]["perplexity"]):
                        best = (name, r)
        if best:
            d, se, ratio = paired(run, best[1], full)
            print(f"- best Adamas at B=128: {best[0]}, perplexity {(ratio - 1) * 100:+.2f}% of "
                  f"full ({d:+.4f} ± {se:.4f} bits/byte): "
                  f"{'met' if ratio <= 1.02 else 'missed'} (goal: within 2%)")
        quest512 = next((r for r in series.get("quest", []) if r["budget"] == 512), None)
        for name in ("adamas", "adamas-calibrated", "adamas-rerank4", "adamas, 0 dense"):
            a64 = next((r for r in series.get(name, []) if r["budget"] == 64), None)
            if a64 and quest512:
                d, se, _ = paired(run, a64, quest512)
                print(f"- {name} B=64 {a64['bits_per_byte']:.4f} against quest B=512 "
                      f"{quest512['bits_per_byte']:.4f} bits/byte ({d:+.4f} ± {se:.4f}): "
                      f"{'met' if a64['bits_per_byte'] < quest512['bits_per_byte'] else 'missed'}")
    if speed:
        ctx, _, dec = speed_rows(speed)[-1]
        for name, v in dec.items():
            if name != "full":
                x = v / dec["full"]
                print(f"- decode at {ctx_name(ctx)}, {name}: {x:.2f}x full "
                      f"({'met' if x >= 5 else 'missed'}; goal 5x)")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["collect", "plot", "table"])
    ap.add_argument("dir", nargs="?", help="collect: what measure_model.sh wrote")
    ap.add_argument("--docs", default="docs")
    a = ap.parse_args()
    if a.command == "collect":
        if not a.dir:
            sys.exit("plot_model: collect needs the directory of the results")
        collect(a.dir, a.docs)
        return
    ppl, passkey, speed = (load(a.docs, k) for k in ("perplexity", "passkey", "speed"))
    if a.command == "table":
        if ppl:
            table_perplexity(ppl)
        if passkey:
            table_passkey(passkey)
        if speed:
            table_speed(speed)
        goals(ppl, speed)
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_model: matplotlib is needed (Debian: apt-get install python3-matplotlib)")
    for kind, runs, fn in (("perplexity", ppl, functools.partial(
                               plot_perplexity, n_layers=load(a.docs, "perplexity", "model_layers"))),
                           ("passkey", passkey, plot_passkey),
                           ("speed", speed, functools.partial(
                               plot_speed, n_layers=load(a.docs, "speed", "model_layers")))):
        if runs:
            out = os.path.join(a.docs, f"model_{kind}.png")
            fn(plt, runs, out)
            print(f"plot_model: {out}")


if __name__ == "__main__":
    main()
