#!/usr/bin/env python3
"""check_logits.py - adamas-run's logits against a PyTorch forward of the same weights.

Loads a trained model (model.pt and config.json written by train.py, or with --gguf the
weights a GGUF file holds, Q8_0 dequantized, Q/K rows back in rotate-half order) into
train.py's PyTorch Llama, exports it as an F32 GGUF file, runs `adamas-run logits` with full
attention and an f32 KV cache over the first --tokens bytes of a text (all but --tail
prefilled as one batch, the last --tail decoded one step at a time), and compares every
position's logits with PyTorch's float32 forward: ||a - b|| / ||b|| per position must
stay within --tolerance (1e-4).  Prints the numbers (and --markdown writes them as a
record for docs/).

    python3 tools/train/check_logits.py --run build/tools/adamas-run \\
        --model-dir build-train/run --text build-train/corpus/heldout.txt
    python3 tools/train/check_logits.py --run build/tools/adamas-run \\
        --gguf tools/model/adamas-ref.gguf --text build-train/corpus/heldout.txt
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    ap.add_argument("--run", required=True, help="the adamas-run executable")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-dir", help="folder with model.pt and config.json")
    src.add_argument("--gguf", help="a GGUF file of the model (its weights, dequantized)")
    ap.add_argument("--text", required=True, help="text whose bytes are the tokens")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--tail", type=int, default=64, help="positions decoded one at a time")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--markdown", help="write the result as a markdown record here")
    args = ap.parse_args()

    import numpy as np
    import torch
    sys.path.insert(0, HERE)
    import export_gguf
    import json
    import train

    if args.gguf:
        arrays, cfg = export_gguf.state_from_gguf(args.gguf)
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        source = args.gguf
    else:
        with open(os.path.join(args.model_dir, "config.json")) as f:
            cfg = json.load(f)
        state = torch.load(os.path.join(args.model_dir, "model.pt"), map_location="cpu",
                           weights_only=True)
        source = os.path.join(args.model_dir, "model.pt")
    model = train.build_model(cfg)
    model.load_state_dict(state)
    model = model.float().to(args.device).eval()
    with open(args.text, "rb") as f:
        data = f.read(args.tokens)
    if len(data) < args.tokens:
        sys.exit(f"check_logits: {args.text} holds fewer than {args.tokens} bytes")
    tokens = export_gguf.encode_bytes(data)
    with torch.no_grad():
        x = torch.tensor(tokens, dtype=torch.long, device=args.device)[None]
        ref = model(x)[0].double().cpu().numpy()

    with tempfile.TemporaryDirectory() as tmp:
        gguf = os.path.join(tmp, "model-f32.gguf")
        export_gguf.export(state, cfg, gguf, "f32")
        text = os.path.join(tmp, "text.bin")
        with open(text, "wb") as f:
            f.write(data)
        out = os.path.join(tmp, "logits.f32")
        cmd = [args.run, "logits", text, "-m", gguf, "--out", out, "--select", "full", "--kv", "f32",
               "--ctx", str(args.tokens), "--tail", str(args.tail)]
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        if r.returncode:
            sys.exit(f"check_logits: {' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
        got = np.fromfile(out, dtype="<f4").reshape(args.tokens, -1).astype(np.float64)
    rel = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
    n_pre = args.tokens - args.tail
    summary = (f"{args.tokens} tokens ({n_pre} prefilled, {args.tail} decoded), "
               f"{got.shape[1]} logits each: relative error max {rel.max():.2e} "
               f"(prefill {rel[:n_pre].max():.2e}, decode {rel[n_pre:].max():.2e}), "
               f"mean {rel.mean():.2e}; argmax agrees at "
               f"{(got.argmax(1) == ref.argmax(1)).mean() * 100:.1f}% of positions")
    print(summary)
    ok = rel.max() <= args.tolerance
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("# adamas-run against PyTorch on the reference model\n\n")
            f.write(f"torch {torch.__version__} on {args.device}, float32 forward of "
                    f"`{source}` ({cfg}); adamas-run on the same weights "
                    f"exported as F32 GGUF, full attention, f32 KV cache.\n\n")
            f.write("```\n" + " ".join(os.path.basename(c) if i == 0 else c
                                       for i, c in enumerate(cmd)) + "\n")
            f.write(r.stdout + summary + "\n```\n\n")
            f.write(f"Tolerance {args.tolerance}: {'passed' if ok else 'FAILED'} "
                    f"({time.strftime('%Y-%m-%d')}).\n")
    if not ok:
        sys.exit(f"check_logits: beyond the tolerance {args.tolerance}")


if __name__ == "__main__":
    main()
