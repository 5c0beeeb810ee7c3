#!/usr/bin/env python3
"""train.py - the reference model of adamas-run: a small Llama trained on Linux kernel source.

Two steps, usually on two machines:

  prepare  (CPU, where Debian's packages can be installed)
      apt-get install linux-source-6.1
      python3 tools/train/train.py prepare --source /usr/src/linux-source-6.1.tar.xz \\
          --out build-train/corpus
    reads the kernel source (a tarball or a directory), keeps text files that are valid
    UTF-8 (C, headers, assembly, Kconfig, Makefiles, documentation), holds out whole
    directories (--heldout-dirs, default fs/btrfs and net/ipv4) and writes
      train.txt.xz   the training files, concatenated in path order (xz, to travel light)
      heldout.txt    the held-out files, concatenated in path order (for adamas-run)
      manifest.json  what went where

  train    (GPU; CPU works for a smoke test)
      python3 tools/train/train.py train --corpus build-train/corpus --out build-train/run
    trains a Llama-architecture model (byte-level vocabulary: token b is byte b, plus
    <|endoftext|> for the GGUF's bos/eos; head_dim 128) on random windows of
    --short-ctx tokens for the first --short-frac of the time, then of --ctx tokens,
    for --time-budget seconds of training in all, then evaluates held-out bits per byte
    at the full context and with a sliding window of --window tokens, and writes
      model.pt, config.json   the state dict (LlamaForCausalLM names) and its config
      adamas-ref.gguf          the GGUF file (export_gguf.py; Q8_0 by default)
      report.json              the losses, speeds and the held-out evaluation

The model: RMSNorm, RoPE (Hugging Face's rotate-half layout; export_gguf.py permutes q
and k to llama.cpp's), SwiGLU, grouped-query attention, untied output.  The defaults
(dim 256: 2 heads of 128, as many kv heads, 28 layers, feed-forward 320; 14.4 M
parameters, 14.6 MiB as Q8_0) keep the file under 16 MiB while making the KV cache,
not the weights, what a decode step at 32K context mostly reads (with one kv head the
weights would dominate and no selector could speed decoding up much), and make the
model deep: adamas-run decodes its first 2 layers with full attention, which bounds
the speed-up of a model of N layers by N/2.  The first half of the time on 2K-token
windows (as many tokens per step, 1.6 times as many steps per second) is what let so
deep a model learn in 10 minutes; deep models trained at 16K throughout learned far
less (docs/model-training.md).
"""
import argparse
import json
import lzma
import math
import os
import sys
import tarfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

N_VOCAB = 257  # the 256 bytes and <|endoftext|> (never a training target)

TEXT_SUFFIXES = (".c", ".h", ".S", ".rst", ".txt", ".py", ".sh", ".rs", ".dts", ".dtsi",
                 ".yaml", ".awk", ".pl", ".lds")
TEXT_NAMES = ("Kconfig", "Makefile", "Kbuild")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- prepare


def is_text_file(path):
    base = os.path.basename(path)
    return base.endswith(TEXT_SUFFIXES) or base.startswith(TEXT_NAMES)


def source_files(source):
    """(relative path, bytes) of every text file of a tarball or directory, path order."""
    if os.path.isdir(source):
        paths = []
        for root, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                full = os.path.join(root, f)
                rel = os.path.relpath(full, source)
                if is_text_file(rel) and os.path.isfile(full):
                    paths.append((rel, full))
        for rel, full in sorted(paths):
            with open(full, "rb") as f:
                yield rel, f.read()
        return
    with tarfile.open(source, "r:*") as tar:
        entries = []
        for member in tar:
            if not member.isfile():
                continue
            # linux-source-6.1/fs/btrfs/ctree.c -> fs/btrfs/ctree.c
            rel = member.name.split("/", 1)[1] if "/" in member.name else member.name
            if is_text_file(rel):
                entries.append((rel, tar.extractfile(member).read()))
        for rel, data in sorted(entries):
            yield rel, data


def in_dirs(rel, dirs):
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in dirs)


def prepare(args):
    heldout_dirs = [d for d in args.heldout_dirs.split(",") if d]
    os.makedirs(args.out, exist_ok=True)
    train, heldout = [], []
    n_skipped = 0
    t0 = time.time()
    for rel, data in source_files(args.source):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            n_skipped += 1  # llama.cpp would read such bytes as U+FFFD: keep the text exact
            continue
        if b"\0" in data or not data:
            n_skipped += 1
            continue
        (heldout if in_dirs(rel, heldout_dirs) else train).append((rel, data))
    # beyond --max-train-bytes, a sample of files from every directory (chosen by a hash
    # of the path, so the same every time) rather than the first ones in path order
    total = sum(len(d) for _, d in train)
    if total > args.max_train_bytes:
        keep = args.max_train_bytes / total
        train = [(r, d) for r, d in train if zlib.crc32(r.encode()) / 2**32 < keep]
    size_heldout, kept = 0, []
    for rel, data in heldout:  # held-out directories: whole files, in path order
        if size_heldout >= args.max_heldout_bytes:
            break
        kept.append((rel, data))
        size_heldout += len(data)
    heldout = [d for _, d in kept]
    train = [d for _, d in train]
    n_train, n_heldout = len(train), len(heldout)
    size_train = sum(len(d) for d in train)
    if not train or not heldout:
        sys.exit(f"train.py prepare: {n_train} training and {n_heldout} held-out files: "
                 f"check --source and --heldout-dirs")
    log(f"{n_train} training files ({size_train / 1e6:.1f} MB), {n_heldout} held-out "
        f"({size_heldout / 1e6:.1f} MB), {n_skipped} skipped; {time.time() - t0:.0f} s")
    with lzma.open(os.path.join(args.out, "train.txt.xz"), "wb", preset=args.xz_preset) as f:
        for data in train:
            f.write(data)
    with open(os.path.join(args.out, "heldout.txt"), "wb") as f:
        for data in heldout:
            f.write(data)
    manifest = {"source": os.path.basename(args.source), "heldout_dirs": heldout_dirs,
                "train_files": n_train, "train_bytes": size_train, "heldout_files": n_heldout,
                "heldout_bytes": size_heldout, "skipped_files": n_skipped}
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    log(f"wrote {args.out}: train.txt.xz "
        f"({os.path.getsize(os.path.join(args.out, 'train.txt.xz')) / 1e6:.1f} MB), "
        f"heldout.txt, manifest.json; {time.time() - t0:.0f} s")


# ------------------------------------------------------------------ model


def build_model(cfg):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    dim, n_heads, n_kv = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"]
    head_dim = dim // n_heads

    class RMSNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            xf = x.float()
            xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + cfg["norm_eps"])
            return (xf * self.weight.float()).type_as(x)

    def rotate_half(x):
        a, b = x.chunk(2, dim=-1)
        return torch.cat((-b, a), dim=-1)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(dim, n_heads * head_dim, bias=False)
            self.k_proj = nn.Linear(dim, n_kv * head_dim, bias=False)
            self.v_proj = nn.Linear(dim, n_kv * head_dim, bias=False)
            self.o_proj = nn.Linear(n_heads * head_dim, dim, bias=False)

        def forward(self, x, cos, sin, mask):
            B, T, _ = x.shape
            q = self.q_proj(x).view(B, T, n_heads, head_dim).transpose(1, 2)
            k = self.k_proj(x).view(B, T, n_kv, head_dim).transpose(1, 2)
            v = self.v_proj(x).view(B, T, n_kv, head_dim).transpose(1, 2)
            q = (q * cos + rotate_half(q) * sin).to(v.dtype)
            k = (k * cos + rotate_half(k) * sin).to(v.dtype)
            if n_kv != n_heads:
                k = k.repeat_interleave(n_heads // n_kv, dim=1)
                v = v.repeat_interleave(n_heads // n_kv, dim=1)
            if mask is None:
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return self.o_proj(o.transpose(1, 2).reshape(B, T, n_heads * head_dim))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate_proj = nn.Linear(dim, cfg["hidden_dim"], bias=False)
            self.up_proj = nn.Linear(dim, cfg["hidden_dim"], bias=False)
            self.down_proj = nn.Linear(cfg["hidden_dim"], dim, bias=False)

        def forward(self, x):
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    class DecoderLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.self_attn = Attention()
            self.mlp = MLP()
            self.input_layernorm = RMSNorm()
            self.post_attention_layernorm = RMSNorm()

        def forward(self, x, cos, sin, mask):
            x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
            return x + self.mlp(self.post_attention_layernorm(x))

    class Body(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(N_VOCAB, dim)
            self.layers = nn.ModuleList(DecoderLayer() for _ in range(cfg["n_layers"]))
            self.norm = RMSNorm()

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Body()
            self.lm_head = nn.Linear(dim, N_VOCAB, bias=False)
            inv_freq = 1.0 / (cfg["rope_base"] ** (torch.arange(0, head_dim, 2).float() / head_dim))
            self.register_buffer("inv_freq", inv_freq, persistent=False)

        def forward(self, tokens, window=None):
            T = tokens.shape[1]
            pos = torch.arange(T, device=tokens.device, dtype=torch.float32)
            freqs = torch.outer(pos, self.inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos()[None, None], emb.sin()[None, None]
            mask = None
            if window is not None:  # causal and at most `window` tokens back
                i = torch.arange(T, device=tokens.device)
                mask = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < window)
            x = self.model.embed_tokens(tokens)
            for layer in self.model.layers:
                x = layer(x, cos, sin, mask)
            return self.lm_head(self.model.norm(x))

    model = Llama()
    for name, p in model.named_parameters():  # small init, scaled residual projections
        if p.dim() == 2:
            std = 0.02 / math.sqrt(2 * cfg["n_layers"]) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
            torch.nn.init.normal_(p, std=std)
    return model


# ------------------------------------------------------------------- train


def load_corpus(corpus):
    import numpy as np
    with lzma.open(os.path.join(corpus, "train.txt.xz"), "rb") as f:
        train = np.frombuffer(f.read(), dtype=np.uint8)
    with open(os.path.join(corpus, "heldout.txt"), "rb") as f:
        heldout = np.frombuffer(f.read(), dtype=np.uint8)
    return train, heldout


def evaluate(model, heldout, ctx, tail, windows, device, window=None):
    """Bits per byte of the last `tail` tokens of `windows` windows of ctx tokens of the
    held-out text, each predicted from the window's tokens before it (all of them, or
    the last `window`)."""
    import numpy as np
    import torch
    n = len(heldout) // ctx
    if n == 0:
        raise SystemExit(f"train.py: the held-out text is shorter than one window of {ctx}")
    starts = np.linspace(0, (n - 1) * ctx, num=min(windows, n)).astype(np.int64)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for s in starts:
            x = torch.from_numpy(heldout[s:s + ctx].astype(np.int64))[None].to(device)
            logits = model(x[:, :-1], window=window).float()
            lp = torch.nn.functional.cross_entropy(logits[0, -tail:], x[0, -tail:], reduction="sum")
            total += lp.item()
            count += tail
    model.train()
    return total / count / math.log(2)


def train(args):
    import numpy as np
    import torch
    sys.path.insert(0, HERE)
    import export_gguf

    torch.manual_seed(args.seed)
    device = torch.device(args.device if args.device else ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = {"dim": args.dim, "n_layers": args.layers, "n_heads": args.dim // 128 if args.heads == 0 else args.heads,
           "hidden_dim": args.hidden, "context_length": args.ctx, "rope_base": args.rope_base,
           "norm_eps": 1e-5}
    cfg["n_kv_heads"] = args.kv_heads or cfg["n_heads"]
    head_dim = cfg["dim"] // cfg["n_heads"]
    if head_dim * cfg["n_heads"] != cfg["dim"] or head_dim & (head_dim - 1) or head_dim < 16:
        raise SystemExit(f"train.py: dim {args.dim} over {cfg['n_heads']} heads is not a "
                         f"power-of-two head dimension")
    if args.short_ctx and not (0 < args.short_ctx < args.ctx and args.ctx % args.short_ctx == 0
                               and 0 < args.short_frac < 1):
        raise SystemExit("train.py: --short-ctx must divide --ctx and be shorter, and "
                         "--short-frac lie between 0 and 1")
    if cfg["n_heads"] % cfg["n_kv_heads"]:
        raise SystemExit("train.py: --heads must be a multiple of --kv-heads")
    os.makedirs(args.out, exist_ok=True)
    train_data, heldout = load_corpus(args.corpus)
    log(f"corpus: {len(train_data) / 1e6:.1f} MB training, {len(heldout) / 1e6:.1f} MB held out")
    if len(train_data) <= args.ctx + 1:
        raise SystemExit("train.py: the training text is shorter than one window")

    model = build_model(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f} M parameters, head_dim {head_dim}, {cfg}; device {device}")
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), fused=device.type == "cuda")
    step_fn = torch.compile(model) if args.compile else model
    rng = np.random.default_rng(args.seed)
    data_t = torch.from_numpy(train_data.astype(np.int16))  # bytes fit int16; widened per batch

    def batch(ctx, rows):
        starts = rng.integers(0, len(train_data) - ctx - 1, size=rows)
        idx = torch.from_numpy(starts)[:, None] + torch.arange(ctx + 1)[None]
        xy = data_t[idx].long().to(device, non_blocking=True)
        return xy[:, :-1], xy[:, 1:]

    t_start = time.time()
    step, tokens_seen, history, phase_switch = 0, 0, [], None
    while True:
        elapsed = time.time() - t_start
        if (args.time_budget and elapsed >= args.time_budget) or (args.max_steps and step >= args.max_steps):
            break
        progress = min(1.0, elapsed / args.time_budget) if args.time_budget else step / max(1, args.max_steps)
        warm = min(1.0, (step + 1) / args.warmup_steps)
        lr = args.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        # The first short_frac of the run trains on short windows, as many tokens per step:
        # attention's cost grows with the window, so they are several times cheaper per
        # token, and the model learns the local statistics of the text there; the rest of
        # the run trains at the full context, where it learns to use the distant tokens.
        short = args.short_ctx and progress < args.short_frac
        ctx = args.short_ctx if short else args.ctx
        if not short and phase_switch is None and args.short_ctx:
            phase_switch = {"step": step, "seconds": round(elapsed, 1), "tokens": tokens_seen}
            log(f"step {step}: from here on windows of {args.ctx} tokens")
        for _ in range(args.accum):
            x, y = batch(ctx, args.batch * args.ctx // ctx)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = step_fn(x)
            loss = torch.nn.functional.cross_entropy(logits.float().view(-1, N_VOCAB), y.reshape(-1))
            (loss / args.accum).backward()
            tokens_seen += x.numel()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % args.log_every == 0 or step == 1:
            el = time.time() - t_start
            bpb = loss.item() / math.log(2)
            history.append({"step": step, "seconds": round(el, 1), "train_bits_per_byte": bpb, "lr": lr})
            log(f"step {step}: {bpb:.4f} bits/byte, lr {lr:.2e}, {tokens_seen / el / 1e3:.1f} K tokens/s, "
                f"{el:.0f} s")
    train_seconds = time.time() - t_start
    log(f"trained {step} steps, {tokens_seen / 1e6:.1f} M tokens in {train_seconds:.0f} s")

    eval_ctx = args.eval_ctx or args.ctx
    tail = min(args.eval_tail, eval_ctx - 1)
    report = {"config": cfg, "parameters": n_params, "steps": step, "tokens": tokens_seen,
              "train_seconds": train_seconds, "history": history,
              "schedule": {"short_ctx": args.short_ctx, "short_frac": args.short_frac,
                           "switch": phase_switch, "lr": args.lr, "batch": args.batch},
              "eval": {"ctx": eval_ctx, "tail": tail, "windows": args.eval_windows}}
    t0 = time.time()
    report["eval"]["heldout_bits_per_byte"] = evaluate(model, heldout, eval_ctx + 1, tail,
                                                       args.eval_windows, device)
    report["eval"][f"heldout_bits_per_byte_window{args.window}"] = evaluate(
        model, heldout, eval_ctx + 1, tail, args.eval_windows, device, window=args.window)
    log(f"held-out bits per byte at {eval_ctx} context: {report['eval']['heldout_bits_per_byte']:.4f}; "
        f"with a {args.window}-token window: "
        f"{report['eval'][f'heldout_bits_per_byte_window{args.window}']:.4f} ({time.time() - t0:.0f} s)")

    state = {k: v.detach().to("cpu").float() for k, v in model.state_dict().items()}
    torch.save(state, os.path.join(args.out, "model.pt"))
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    gguf_path = os.path.join(args.out, args.gguf_name)
    export_gguf.export(state, cfg, gguf_path, args.dtype)
    report["gguf"] = {"path": gguf_path, "dtype": args.dtype, "bytes": os.path.getsize(gguf_path)}
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    log(f"wrote {args.out}: model.pt, config.json, {args.gguf_name} "
        f"({os.path.getsize(gguf_path) / 2**20:.2f} MiB), report.json")


# -------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description="Train the reference model of adamas-run.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="build the corpus from the kernel source")
    p.add_argument("--source", default="/usr/src/linux-source-6.1.tar.xz",
                   help="tarball or directory of source (default %(default)s)")
    p.add_argument("--out", default="build-train/corpus", help="corpus folder (default %(default)s)")
    p.add_argument("--heldout-dirs", default="fs/btrfs,net/ipv4",
                   help="comma-separated directories held out whole (default %(default)s)")
    p.add_argument("--max-train-bytes", type=int, default=300_000_000,
                   help="beyond it, a sample of the files of every directory (default %(default)s)")
    p.add_argument("--max-heldout-bytes", type=int, default=8_000_000)
    p.add_argument("--xz-preset", type=int, default=6, help="lzma preset of train.txt.xz")

    t = sub.add_parser("train", help="train, evaluate, export GGUF")
    t.add_argument("--corpus", default="build-train/corpus")
    t.add_argument("--out", default="build-train/run")
    t.add_argument("--time-budget", type=float, default=520.0,
                   help="seconds of training (evaluation and export come after; default %(default)s)")
    t.add_argument("--max-steps", type=int, default=0, help="stop after this many steps too (0: no limit)")
    t.add_argument("--dim", type=int, default=256)
    t.add_argument("--heads", type=int, default=0, help="query heads (default dim/128)")
    t.add_argument("--kv-heads", type=int, default=0, help="kv heads (default: as many as heads)")
    t.add_argument("--layers", type=int, default=28)
    t.add_argument("--hidden", type=int, default=320)
    t.add_argument("--ctx", type=int, default=16384)
    t.add_argument("--rope-base", type=float, default=500000.0)
    t.add_argument("--batch", type=int, default=8, help="windows of --ctx tokens per step")
    t.add_argument("--short-ctx", type=int, default=2048,
                   help="train the first --short-frac of the time on windows this short "
                        "(as many tokens per step; 0: always --ctx; default %(default)s)")
    t.add_argument("--short-frac", type=float, default=0.5)
    t.add_argument("--accum", type=int, default=1)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--weight-decay", type=float, default=0.1)
    t.add_argument("--warmup-steps", type=int, default=50)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--device", default="", help="cuda or cpu (default: cuda when present)")
    t.add_argument("--compile", action="store_true", help="torch.compile the model")
    t.add_argument("--log-every", type=int, default=20)
    t.add_argument("--eval-ctx", type=int, default=0, help="context of the evaluation (default --ctx)")
    t.add_argument("--eval-tail", type=int, default=1024, help="tokens scored per window")
    t.add_argument("--eval-windows", type=int, default=16)
    t.add_argument("--window", type=int, default=1024, help="sliding window compared against")
    t.add_argument("--dtype", choices=["f32", "f16", "q8_0"], default="q8_0")
    t.add_argument("--gguf-name", default="adamas-ref.gguf")
    args = ap.parse_args()
    if args.command == "prepare":
        prepare(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
