#!/usr/bin/env python3
"""check_run.py ADAMAS_RUN - adamas-run against a plain numpy forward of the same weights.

Builds a small random Llama model (Hugging Face layout: rotate-half RoPE, unpermuted q
and k), exports it with tools/train/export_gguf.py as F32, F16 and Q8_0 GGUF files, runs
`adamas-run logits` with full attention and an f32 KV cache over a few hundred tokens
(most prefilled as one batch, the last ones decoded one at a time), and compares every
position's logits with a float64 numpy forward of the same weights (for F16 and Q8_0: of
the weights as stored).  The relative error ||a - b|| / ||b|| of each
position must stay within 1e-4.  Then the sparse selectors must run, match full
attention while the budget covers the context, and perplexity and passkey must run.

Needs numpy: it uses LAB_PYTHON, else ~/.cache/adamas-c/lab-venv, else this python;
without numpy anywhere it exits 77 (skipped), or 1 with --require.
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOLERANCE = 1e-4


def find_numpy_python():
    candidates = [os.environ.get("LAB_PYTHON"),
                  os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                               "adamas-c", "lab-venv", "bin", "python3"),
                  sys.executable]
    for py in candidates:
        if py and os.path.exists(py) and subprocess.run(
                [py, "-c", "import numpy"], capture_output=True).returncode == 0:
            return py
    return None


def main():
    args = [a for a in sys.argv[1:] if a != "--require"]
    require = "--require" in sys.argv[1:]
    if len(args) != 1:
        print(__doc__)
        sys.exit(2)
    try:
        import numpy  # noqa: F401
    except ImportError:
        py = find_numpy_python()
        if py is None or os.environ.get("CHECK_RUN_REEXEC"):
            print("check_run: numpy is not available (set LAB_PYTHON); skipped")
            sys.exit(1 if require else 77)
        env = dict(os.environ, CHECK_RUN_REEXEC="1")
        sys.exit(subprocess.run([py, os.path.abspath(__file__)] + sys.argv[1:], env=env).returncode)
    run_checks(os.path.abspath(args[0]))


# --------------------------------------------------------------- the model

CFG = {"dim": 128, "n_layers": 3, "n_heads": 4, "n_kv_heads": 2, "hidden_dim": 352,
       "context_length": 1024, "rope_base": 10000.0, "norm_eps": 1e-5}
N_VOCAB = 257


def random_state(np, seed):
    """LlamaForCausalLM-style weights, scaled so that attention is far from uniform."""
    rng = np.random.default_rng(seed)
    dim, hidden = CFG["dim"], CFG["hidden_dim"]
    d = dim // CFG["n_heads"]
    kv = CFG["n_kv_heads"] * d

    def mat(rows, cols, gain=1.0):
        return (rng.standard_normal((rows, cols)) * gain / np.sqrt(cols)).astype(np.float32)

    state = {"model.embed_tokens.weight": rng.standard_normal((N_VOCAB, dim)).astype(np.float32),
             "model.norm.weight": (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32),
             "lm_head.weight": mat(N_VOCAB, dim, 2.0)}
    for i in range(CFG["n_layers"]):
        p = f"model.layers.{i}."
        state[p + "input_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
        state[p + "post_attention_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
        state[p + "self_attn.q_proj.weight"] = mat(dim, dim, 3.0)
        state[p + "self_attn.k_proj.weight"] = mat(kv, dim, 3.0)
        state[p + "self_attn.v_proj.weight"] = mat(kv, dim)
        state[p + "self_attn.o_proj.weight"] = mat(dim, dim)
        state[p + "mlp.gate_proj.weight"] = mat(hidden, dim)
        state[p + "mlp.up_proj.weight"] = mat(hidden, dim)
        state[p + "mlp.down_proj.weight"] = mat(dim, hidden)
    return state


def stored(np, export_gguf, state, dtype):
    """The weights as a GGUF engine reads them back (Q8_0 matrices dequantized)."""
    if dtype == "f32":
        return state
    out = {}
    for k, w in state.items():
        if w.ndim == 2 and dtype == "f16":
            out[k] = w.astype(np.float16).astype(np.float32)
        elif w.ndim == 2 and w.shape[1] % 32 == 0:
            out[k] = export_gguf.dequantize_q8_0(export_gguf.quantize_q8_0(w), *w.shape)
        else:
            out[k] = w
    return out


def forward(np, w, tokens):
    """Logits [n, vocab] of a float64 Llama forward in Hugging Face's layout."""
    dim, n_layers = CFG["dim"], CFG["n_layers"]
    H, Hkv = CFG["n_heads"], CFG["n_kv_heads"]
    d = dim // H
    eps = CFG["norm_eps"]
    n = len(tokens)
    W = {k: v.astype(np.float64) for k, v in w.items()}

    def rmsnorm(x, g):
        return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * g

    inv_freq = CFG["rope_base"] ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    angles = np.arange(n, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos = np.concatenate([np.cos(angles)] * 2, axis=1)[:, None, :]
    sin = np.concatenate([np.sin(angles)] * 2, axis=1)[:, None, :]

    def rope(x):  # rotate_half
        half = x.shape[-1] // 2
        rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rot * sin

    x = W["model.embed_tokens.weight"][tokens]
    mask = np.triu(np.full((n, n), -np.inf), k=1)
    for i in range(n_layers):
        p = f"model.layers.{i}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"])
        q = rope((h @ W[p + "self_attn.q_proj.weight"].T).reshape(n, H, d))
        k = rope((h @ W[p + "self_attn.k_proj.weight"].T).reshape(n, Hkv, d))
        v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(n, Hkv, d)
        att = np.empty((n, H, d))
        for head in range(H):
            g = head // (H // Hkv)
            s = q[:, head, :] @ k[:, g, :].T / np.sqrt(d) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            att[:, head, :] = s @ v[:, g, :]
        x = x + att.reshape(n, dim) @ W[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"])
        gate = h @ W[p + "mlp.gate_proj.weight"].T
        up = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ W[p + "mlp.down_proj.weight"].T
    return rmsnorm(x, W["model.norm.weight"]) @ W["lm_head.weight"].T


# ---------------------------------------------------------------- the checks

TEXT = ("Adamas attends to a few cached tokens per query head: the query and every key are "
        "rotated by a Hadamard matrix, bucketized into two-bit codes, and the keys nearest in "
        "Manhattan distance are kept. The password is 7421. What is the password? ")


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if r.returncode != 0:
        print(" ".join(cmd))
        print(r.stdout + r.stderr)
        fail(f"{os.path.basename(cmd[0])} {cmd[1]} exited with {r.returncode}")
    return r.stdout


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def run_checks(adamas_run):
    import numpy as np
    sys.path.insert(0, os.path.join(HERE, "train"))
    import export_gguf

    text = (TEXT * 2).encode()[:320]
    tokens = export_gguf.encode_bytes(text)
    n, tail = len(tokens), 48
    state = random_state(np, 7)
    with tempfile.TemporaryDirectory() as tmp:
        text_path = os.path.join(tmp, "text.txt")
        with open(text_path, "wb") as f:
            f.write(text)
        for dtype in ("f32", "f16", "q8_0"):
            model = os.path.join(tmp, f"random-{dtype}.gguf")
            export_gguf.export(state, CFG, model, dtype, name="random-llama")
            ref = forward(np, stored(np, export_gguf, state, dtype), tokens)
            out = os.path.join(tmp, f"logits-{dtype}.f32")
            base = [adamas_run, "logits", text_path, "-m", model, "--kv", "f32", "--threads", "2",
                    "--ctx", str(n), "--tail", str(tail)]
            print(run(base + ["--out", out, "--select", "full"]).strip())
            got = np.fromfile(out, dtype="<f4").reshape(n, N_VOCAB).astype(np.float64)
            rel = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
            print(f"{dtype}: {n} positions ({n - tail} prefilled, {tail} decoded), logits "
                  f"relative error max {rel.max():.2e} (prefill {rel[:n - tail].max():.2e}, "
                  f"decode {rel[n - tail:].max():.2e}), mean {rel.mean():.2e}; argmax agrees at "
                  f"{(got.argmax(1) == ref.argmax(1)).mean() * 100:.1f}% of positions")
            if not rel.max() <= TOLERANCE:
                fail(f"{dtype}: logits differ from the numpy forward by {rel.max():.2e} relative "
                     f"(position {rel.argmax()}), beyond {TOLERANCE}")

            # a budget that covers the context attends to everything: same logits (F32)
            for sel in ("adamas", "adamas-calibrated", "adamas-rerank4", "quest", "oracle",
                        "streaming") if dtype == "f32" else ():
                out_sparse = os.path.join(tmp, f"logits-{dtype}-{sel}.f32")
                run(base + ["--out", out_sparse, "--select", sel, "--budget", "512",
                            "--dense-layers", "0"])
                same = np.fromfile(out_sparse, dtype="<f4").reshape(n, N_VOCAB)
                err = np.abs(same - got).max() / np.abs(got).max()
                if err > 1e-5:
                    fail(f"{dtype} {sel}: budget 512 over {n} tokens differs from full by {err:.2e}")
            # small budgets run and stay finite (Q8_0)
            for sel in ("adamas", "adamas-calibrated", "adamas-rerank4", "quest", "oracle",
                        "streaming") if dtype == "q8_0" else ():
                out_sparse = os.path.join(tmp, f"logits-{dtype}-{sel}-32.f32")
                run(base + ["--out", out_sparse, "--select", sel, "--budget", "32"])
                sparse = np.fromfile(out_sparse, dtype="<f4").reshape(n, N_VOCAB)
                if not np.isfinite(sparse).all():
                    fail(f"{dtype} {sel}: non-finite logits at budget 32")
                if not np.array_equal(sparse[:n - tail], got[:n - tail].astype(np.float32)):
                    fail(f"{dtype} {sel}: the prefill's logits depend on the selector")

        model = os.path.join(tmp, "random-q8_0.gguf")
        # one prefill per window, every selector x budget x dense layers decoded from it:
        # the same numbers as a run of each alone
        ppl_args = [adamas_run, "perplexity", text_path, "-m", model, "--ctx", "128", "--tail",
                    "32", "--threads", "2"]
        out = run(ppl_args + ["--select", "full,adamas,adamas-calibrated,quest", "--budget",
                              "32,64", "--dense-layers", "2,0"])
        print(out.strip())
        rows = {tuple(line.split()[:3]): line.split()[3] for line in out.splitlines()
                if line.split() and line.split()[0] in ("full", "adamas", "adamas-calibrated", "quest")}
        if len(rows) != 1 + 3 * 2 * 2:
            fail(f"perplexity printed {len(rows)} rows for 13 combinations")
        for sel, budget, dense in (("adamas-calibrated", "64", "0"), ("quest", "32", "2")):
            alone = run(ppl_args + ["--select", sel, "--budget", budget, "--dense-layers", dense])
            line = [x for x in alone.splitlines() if x.startswith(sel + " ")][0].split()
            if line[3] != rows[(sel, budget, dense)]:
                fail(f"perplexity of {sel} {budget} {dense}: {line[3]} alone, "
                     f"{rows[(sel, budget, dense)]} among others")
        out = run([adamas_run, "passkey", "-m", model, "--ctx", "256", "--depths", "0.5",
                   "--trials", "1", "--select", "adamas", "--budget", "64", "--threads", "2"])
        print(out.strip())
        if "accuracy" not in out:
            fail("passkey printed no accuracy")
        out = run([adamas_run, "generate", "-m", model, "--prompt", "The password", "-n", "16",
                   "--temperature", "0.8", "--seed", "3", "--threads", "2"])
    print("check_run: ok")


if __name__ == "__main__":
    main()
