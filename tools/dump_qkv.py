#!/usr/bin/env python3
"""dump_qkv.py - attention dumps from a Hugging Face transformers causal LM (Llama family).

Runs the model once over a text and writes, for every layer, the post-RoPE queries and
keys and the values exactly as the attention consumed them, in the dump format of
adamas-eval (README.md, "Attention dumps"):

    layers.{i}.q [N, Hq, d]    layers.{i}.k, layers.{i}.v [N, Hkv, d]

Forward hooks on each attention module record the projections q_proj, k_proj, v_proj,
the (cos, sin) the module is given, and the input of o_proj (the attention output);
the queries and keys are then rotated by the model's own apply_rotary_pos_emb, the
function its forward calls, on those very tensors.

With --check it then verifies, for every layer and head, that the dump reproduces what
transformers computed: first by recomputing causal softmax attention from the dump in
double precision, then through the library: adamas-eval replays every position with
full attention (--save-full), and each head's output must match transformers' own
attention output within --tolerance (1e-4) relative.  adamas-eval also reports every
selector on the dump.

Without --model, a small randomly initialised LlamaForCausalLM is built (head_dim 128,
grouped-query attention, eager attention); the text becomes token ids byte by byte.

    python3 tools/dump_qkv.py --out dump.safetensors --check
    python3 tools/dump_qkv.py --model /path/to/llama --text-file prompt.txt --out d.safetensors
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

DEFAULT_TEXT = (
    "Adamas attends to a few cached tokens per query head: the query and every key are "
    "rotated by a Hadamard matrix, bucketized into two-bit codes, and the keys nearest in "
    "Manhattan distance are kept. The password is 7421. Long documents hide such needles "
    "between paragraphs of ordinary prose, and a sparse attention method must still find "
    "them when the question comes at the end. What is the password? "
)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_args():
    ap = argparse.ArgumentParser(
        description="Export post-RoPE q, k, v of a transformers causal LM to an attention "
                    "dump; optionally check the library against transformers on it.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--out", required=True, help="dump to write (.safetensors)")
    ap.add_argument("--model", help="local model directory (weights and tokenizer); "
                    "without it a small random LlamaForCausalLM")
    ap.add_argument("--text", help="text to run (default: a built-in paragraph, repeated)")
    ap.add_argument("--text-file", help="read the text from this file")
    ap.add_argument("--tokens", type=int, default=256,
                    help="tokens to run: the text is cut or repeated to this length "
                         "(default 256; 0 keeps the text's own length)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                    help="model and dump dtype (default float32; --check needs float32 to "
                         "meet 1e-4)")
    ap.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random model")
    ap.add_argument("--layers", type=int, default=4, help="random model: layers (default 4)")
    ap.add_argument("--heads", type=int, default=8, help="random model: query heads (8)")
    ap.add_argument("--kv-heads", type=int, default=2, help="random model: kv heads (2)")
    ap.add_argument("--head-dim", type=int, default=128, help="random model: head_dim (128)")
    ap.add_argument("--hidden", type=int, default=512, help="random model: hidden size (512)")
    ap.add_argument("--init-std", type=float, default=0.05,
                    help="random model: weight init std (default 0.05, which makes the "
                         "attention peaked rather than uniform)")
    ap.add_argument("--rope-theta", type=float, default=500000.0,
                    help="random model: RoPE base (default 500000)")
    ap.add_argument("--check", action="store_true",
                    help="verify the library's full attention on the dump against "
                         "transformers' attention output, and run adamas-eval")
    ap.add_argument("--eval", dest="eval_exe",
                    help="adamas-eval to use (default: build*/tools/adamas-eval next to "
                         "this script's repository, else on PATH)")
    ap.add_argument("--tolerance", type=float, default=1e-4,
                    help="largest relative error per head and position (default 1e-4)")
    ap.add_argument("--budgets", default="32,64,128", help="budgets for adamas-eval")
    ap.add_argument("--report", help="also write the check's numbers to this JSON file")
    return ap.parse_args()


# ----------------------------------------------------------------------------- model

def build_model(args, torch, transformers):
    dtype = getattr(torch, args.dtype)
    if args.model:
        log(f"dump_qkv: loading {args.model}")
        tok = transformers.AutoTokenizer.from_pretrained(args.model)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            args.model, torch_dtype=dtype, attn_implementation="eager")
        return model, tok, os.path.basename(os.path.normpath(args.model))
    torch.manual_seed(args.seed)
    cfg = transformers.LlamaConfig(
        vocab_size=512, hidden_size=args.hidden, intermediate_size=2 * args.hidden,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, head_dim=args.head_dim,
        max_position_embeddings=max(4096, args.tokens), initializer_range=args.init_std,
        attn_implementation="eager")
    # RoPE base: transformers 5 keeps it in rope_parameters, 4.x in rope_theta
    if isinstance(getattr(cfg, "rope_parameters", None), dict):
        cfg.rope_parameters["rope_theta"] = args.rope_theta
    else:
        cfg.rope_theta = args.rope_theta
    model = transformers.LlamaForCausalLM(cfg).to(dtype)
    name = (f"random LlamaForCausalLM (seed {args.seed}, {args.layers} layers, {args.heads} "
            f"heads, {args.kv_heads} kv heads, head_dim {args.head_dim}, transformers "
            f"{transformers.__version__})")
    return model, None, name


def token_ids(args, tok, torch):
    if args.text_file:
        with open(args.text_file, encoding="utf-8") as f:
            text = f.read()
    else:
        text = args.text or DEFAULT_TEXT
    if tok is not None:
        ids = tok(text, return_tensors="pt").input_ids[0].tolist()
    else:
        ids = [1] + [2 + b for b in text.encode("utf-8")]  # byte-level ids of the random model
    if args.tokens > 0:
        while len(ids) < args.tokens:
            ids = ids + ids[1:] if len(ids) > 1 else ids * 2
        ids = ids[:args.tokens]
    return torch.tensor([ids]), text


# ----------------------------------------------------------------------------- hooks

def attention_modules(model):
    """The self-attention module of every decoder layer, in order."""
    layers = model.model.layers
    return [layer.self_attn for layer in layers]


def capture(model, input_ids, torch):
    """Run the model once; return per layer (q, k, v, attn_out) as [N, H, d] tensors."""
    mods = attention_modules(model)
    rec = [dict() for _ in mods]
    handles = []

    def on_attention(i):
        def hook(module, args, kwargs):
            pe = kwargs.get("position_embeddings")
            if pe is None and len(args) > 1:
                pe = args[1]
            rec[i]["rope"] = pe
        return hook

    def on_output(i, name):
        def hook(module, args, output):
            rec[i][name] = output.detach()
        return hook

    def on_o_proj(i):
        def hook(module, args):
            rec[i]["attn"] = args[0].detach()
        return hook

    for i, m in enumerate(mods):
        handles.append(m.register_forward_pre_hook(on_attention(i), with_kwargs=True))
        handles.append(m.q_proj.register_forward_hook(on_output(i, "q")))
        handles.append(m.k_proj.register_forward_hook(on_output(i, "k")))
        handles.append(m.v_proj.register_forward_hook(on_output(i, "v")))
        handles.append(m.o_proj.register_forward_pre_hook(on_o_proj(i)))
    try:
        with torch.no_grad():
            model(input_ids=input_ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()

    out = []
    for i, m in enumerate(mods):
        r = rec[i]
        d = m.head_dim
        n = input_ids.shape[1]
        # exactly the forward's own steps: view, transpose, the module's RoPE function
        q = r["q"].view(1, n, -1, d).transpose(1, 2)
        k = r["k"].view(1, n, -1, d).transpose(1, 2)
        v = r["v"].view(1, n, -1, d).transpose(1, 2)
        if r.get("rope") is None:
            # older transformers: the module computes (cos, sin) itself
            pos = torch.arange(n, device=v.device)[None]
            r["rope"] = model.model.rotary_emb(v, pos)
        cos, sin = r["rope"]
        rope_fn = sys.modules[type(m).__module__].apply_rotary_pos_emb
        with torch.no_grad():
            q, k = rope_fn(q, k, cos, sin)
        to_dump = lambda x: x[0].transpose(0, 1).contiguous().cpu()  # [N, H, d]
        attn = r["attn"].view(n, -1, d).cpu()  # [N, Hq, d]
        out.append((to_dump(q), to_dump(k), to_dump(v), attn))
    return out


# ----------------------------------------------------------------------------- checks

def recompute_attention(q, k, v, torch):
    """Causal softmax attention in float64 from dumped q [N,Hq,d], k, v [N,Hkv,d]."""
    n, hq, d = q.shape
    group = hq // k.shape[1]
    q64, k64, v64 = q.double(), k.double(), v.double()
    kk = k64.repeat_interleave(group, dim=1)
    vv = v64.repeat_interleave(group, dim=1)
    s = torch.einsum("nhd,mhd->hnm", q64, kk) / d ** 0.5
    mask = torch.ones(n, n, dtype=torch.bool).triu(1)
    s = s.masked_fill(mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("hnm,mhd->nhd", p, vv)


def rel_err_per_head(a, b, torch):
    """max over positions of ||a-b|| / ||b|| per head: [H]."""
    a, b = a.double(), b.double()
    num = (a - b).norm(dim=-1)
    den = b.norm(dim=-1).clamp_min(1e-30)
    return (num / den).max(dim=0).values


def find_eval(args):
    if args.eval_exe:
        return args.eval_exe
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for build in ("build", "build-lab", "build-tests"):
        exe = os.path.join(root, build, "tools", "adamas-eval")
        if os.access(exe, os.X_OK):
            return exe
    exe = shutil.which("adamas-eval")
    if exe:
        return exe
    sys.exit("dump_qkv: adamas-eval not found: build it (meson compile -C build) or pass --eval")


def check(args, layers, torch, safetensors_torch):
    n = layers[0][0].shape[0]
    report = {"tokens": n, "layers": []}
    ok = True

    print(f"causal attention recomputed in double precision from the dump against "
          f"transformers' attention output (max over positions and heads):")
    for i, (q, k, v, attn) in enumerate(layers):
        err = rel_err_per_head(attn, recompute_attention(q, k, v, torch), torch)
        report["layers"].append({"layer": i, "dump_vs_transformers": err.max().item()})
        status = "ok" if err.max().item() <= args.tolerance else "FAIL"
        ok &= status == "ok"
        print(f"  layer {i}: {err.max().item():.2e}  {status}")
    sys.stdout.flush()

    exe = find_eval(args)
    with tempfile.TemporaryDirectory() as tmp:
        full_path = os.path.join(tmp, "full.safetensors")
        json_path = os.path.join(tmp, "eval.json")
        cmd = [exe, args.out, "--steps", str(n), "--budgets", args.budgets,
               "--selectors", "all,full", "--save-full", full_path, "--json", json_path]
        log("dump_qkv: " + " ".join(cmd))
        t0 = time.time()
        run = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # progress: stderr
        print(run.stdout)
        if run.returncode != 0:
            sys.exit(f"dump_qkv: adamas-eval failed with status {run.returncode}")
        report["eval_seconds"] = round(time.time() - t0, 2)
        full = safetensors_torch.load_file(full_path)
        with open(json_path) as f:
            report["eval"] = json.load(f)["results"]

    print(f"library full attention against transformers' attention output, max over "
          f"{n} positions of ||o_lib - o_hf|| / ||o_hf|| (tolerance {args.tolerance:g}):")
    for i, (q, k, v, attn) in enumerate(layers):
        lib = full[f"layers.{i}.full"]
        err = rel_err_per_head(lib, attn, torch)
        entry = report["layers"][i]
        entry["library_vs_transformers_per_head"] = [float(f"{e:.3e}") for e in err.tolist()]
        entry["library_vs_transformers"] = err.max().item()
        worst = int(err.argmax())
        status = "ok" if err.max().item() <= args.tolerance else "FAIL"
        ok &= status == "ok"
        print(f"  layer {i}: heads " + " ".join(f"{e:.1e}" for e in err.tolist()) +
              f"  max {err.max().item():.2e} (head {worst})  {status}")
    report["passed"] = ok
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
    return ok


# ----------------------------------------------------------------------------- main

def main():
    args = parse_args()
    try:
        import torch
        import transformers
        import safetensors.torch as safetensors_torch
    except ImportError as e:
        sys.exit(f"dump_qkv: {e}: install torch and transformers "
                 "(tools/check_transformers.sh makes a virtual environment with them)")
    if args.check and args.dtype != "float32":
        log("dump_qkv: note: a {} model is compared at {} tolerance; rounding of the "
            "model's own attention output may exceed it".format(args.dtype, args.tolerance))

    t0 = time.time()
    model, tok, name = build_model(args, torch, transformers)
    model.eval().to(args.device)
    ids, text = token_ids(args, tok, torch)
    log(f"dump_qkv: {name}; {ids.shape[1]} tokens on {args.device}")
    layers = capture(model, ids.to(args.device), torch)

    tensors = {}
    for i, (q, k, v, _) in enumerate(layers):
        tensors[f"layers.{i}.q"] = q
        tensors[f"layers.{i}.k"] = k
        tensors[f"layers.{i}.v"] = v
    safetensors_torch.save_file(tensors, args.out, metadata={"model": name, "text": text})
    q0, k0 = layers[0][0], layers[0][1]
    log(f"dump_qkv: wrote {args.out}: {len(layers)} layers, q {list(q0.shape)}, "
        f"k/v {list(k0.shape)}, {str(q0.dtype).replace('torch.', '')} "
        f"({time.time() - t0:.1f} s)")

    if args.check:
        ok = check(args, layers, torch, safetensors_torch)
        log(f"dump_qkv: check {'passed' if ok else 'FAILED'} ({time.time() - t0:.1f} s)")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
