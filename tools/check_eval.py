#!/usr/bin/env python3
"""check_eval.py ADAMAS_GEN ADAMAS_EVAL - the meson test of the selection lab.

Writes a small synthetic dump with adamas-gen, runs adamas-eval on it with every
selector, and checks the JSON: every row present, recall and mass in [0, 1], errors
finite, the oracle's recall 1 and its mass the largest at each budget, full attention
through the library equal to the double-precision reference (error ~1e-7).
"""
import json
import math
import os
import subprocess
import sys
import tempfile

SELECTORS = ["adamas", "adamas-xorw", "adamas-calibrated", "adamas-rerank4",
             "adamas-calibrated-rerank4", "adamas-nohadamard", "quest", "streaming",
             "oracle", "full"]
BUDGETS = [32, 64]
LAYERS = 2


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    gen, evaluate = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "small.safetensors")
        out = os.path.join(tmp, "eval.json")
        subprocess.run([gen, dump, "--layers", str(LAYERS), "--tokens", "700", "--heads", "4",
                        "--kv-heads", "2", "--dim", "64", "--dtype", "f16", "--seed", "7"],
                       check=True)
        run = subprocess.run([evaluate, dump, "--budgets", ",".join(map(str, BUDGETS)),
                              "--selectors", ",".join(SELECTORS), "--steps", "5",
                              "--json", out], check=True, capture_output=True, text=True)
        print(run.stdout)
        with open(out) as f:
            doc = json.load(f)

    rows = {(r["selector"], r["budget"], r["layer"]): r for r in doc["results"]}
    want = len(SELECTORS) * len(BUDGETS) * (LAYERS + 1)
    if len(doc["results"]) != want:
        fail(f"{len(doc['results'])} results, expected {want}")
    for s in SELECTORS:
        for b in BUDGETS:
            for layer in ["all"] + list(range(LAYERS)):
                r = rows.get((s, b, layer))
                if r is None:
                    fail(f"no row for {s} budget {b} layer {layer}")
                for key in ("recall", "mass"):
                    if not 0.0 <= r[key] <= 1.0 + 1e-9:
                        fail(f"{s} {b} {layer}: {key} = {r[key]} is not in [0, 1]")
                if not (math.isfinite(r["out_err"]) and r["out_err"] >= 0.0):
                    fail(f"{s} {b} {layer}: out_err = {r['out_err']}")
    for b in BUDGETS:
        oracle = rows[("oracle", b, "all")]
        if oracle["recall"] != 1.0:
            fail(f"oracle recall at budget {b} is {oracle['recall']}, expected 1")
        full = rows[("full", b, "all")]
        if full["out_err"] > 1e-5 or full["mass"] != 1.0:
            fail(f"full attention: out_err {full['out_err']}, mass {full['mass']}")
        for s in SELECTORS:
            if s != "full" and rows[(s, b, "all")]["mass"] > oracle["mass"] + 1e-6:
                fail(f"{s} holds more mass than the oracle at budget {b}")
    for s in SELECTORS:
        if rows[(s, BUDGETS[1], "all")]["mass"] + 1e-9 < rows[(s, BUDGETS[0], "all")]["mass"] \
                and s in ("oracle", "streaming"):
            fail(f"{s}: mass falls as the budget grows")
    # the structure of the synthetic dump: the oracle finds the sinks and needles
    if rows[("oracle", BUDGETS[0], "all")]["mass"] < 0.5:
        fail("the oracle holds less than half the mass: the generator lost its structure")
    print("check_eval: ok")


if __name__ == "__main__":
    main()
