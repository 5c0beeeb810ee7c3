#!/usr/bin/env python3
"""bench_gpu.py - decode-step latency of the CUDA module against torch's SDPA.

Drives libadamas_cuda.so through ctypes (the table of adamas/gpu_module.h and the
extra exports of gpu/adamas_cuda.h) and measures, on one GPU, one decode step (one
query per head) of
  - Adamas, budget B (plain, and two-stage with rerank R),
  - dense attention in the module (selector FULL),
  - torch.nn.functional.scaled_dot_product_attention on the same keys and values,
at each context length, plus the scan stage alone against the device's measured
copy bandwidth.

Each step is timed two ways, both with CUDA events: `graph`, a CUDA graph of `reps`
steps replayed (no launch overhead, as an engine that captures its decode step sees),
and `stream`, `reps` steps queued behind a sleep kernel so that the GPU never waits
for the CPU (the launches' gaps included).  The caches rotate among several copies so
that no step finds its codes or keys in the L2 cache left by the previous one.

usage: python3 bench/bench_gpu.py [--module build/gpu/libadamas_cuda.so]
                                  [--contexts 32768,131072] [--heads 32] [--dim 128]
                                  [--budget 128] [--rerank 4] [--reps 100]
"""
import argparse
import ctypes as C
import os
import statistics
import sys
import time

F16, ADAMAS, FULL = 1, 0, 1


class Config(C.Structure):
    _fields_ = [("n_heads", C.c_uint32), ("n_kv_heads", C.c_uint32), ("head_dim", C.c_uint32),
                ("max_tokens", C.c_uint32), ("kv_dtype", C.c_int),
                ("q_thresholds", C.c_float * 3), ("k_thresholds", C.c_float * 3),
                ("metric", C.c_int), ("page_size", C.c_uint32), ("transform", C.c_int)]


class Step(C.Structure):
    _fields_ = [("selector", C.c_int), ("n", C.c_uint32), ("budget", C.c_uint32),
                ("sink", C.c_uint32), ("recent", C.c_uint32), ("rerank", C.c_uint32),
                ("query_tau", C.c_float)]


class Table(C.Structure):
    _fields_ = [("abi", C.c_uint32), ("name", C.c_char_p)] + [
        (f, C.c_void_p) for f in ("error", "probe", "cache_create", "cache_destroy",
                                  "cache_append", "cache_recode", "cache_codes", "distances",
                                  "decode", "decode_dev", "sync")]


class Module:
    """The entry points of libadamas_cuda.so that the benchmark uses."""

    def __init__(self, path):
        lib = C.CDLL(path)
        lib.adamas_gpu_module_get.restype = C.POINTER(Table)
        t = lib.adamas_gpu_module_get().contents
        fn = lambda addr, res, *args: C.CFUNCTYPE(res, *args)(addr)
        vp, u32 = C.c_void_p, C.c_uint32
        self._error = fn(t.error, C.c_char_p)
        self._probe = fn(t.probe, C.c_int, C.c_char_p, C.c_size_t)
        self._create = fn(t.cache_create, C.c_int, C.POINTER(Config), C.POINTER(vp))
        self.destroy = fn(t.cache_destroy, None, vp)
        self._append = fn(t.cache_append, C.c_int, vp, vp, vp, u32, vp)
        self._decode_dev = fn(t.decode_dev, C.c_int, vp, C.POINTER(Step), vp, vp, vp)
        self._sync = fn(t.sync, C.c_int, vp)
        lib.adamas_cuda_stream.restype = vp
        lib.adamas_cuda_stream.argtypes = [vp]
        lib.adamas_cuda_set_stream.restype = C.c_int
        lib.adamas_cuda_set_stream.argtypes = [vp, vp]
        lib.adamas_cuda_stages_dev.restype = C.c_int
        lib.adamas_cuda_stages_dev.argtypes = [vp, C.POINTER(Step), vp, vp, u32]
        self.lib = lib

    def check(self, status, what):
        if status != 0:
            raise RuntimeError(f"{what}: status {status}: {self._error().decode()}")

    def probe(self):
        name = C.create_string_buffer(256)
        self.check(self._probe(name, len(name)), "probe")
        return name.value.decode()

    def create(self, cfg):
        g = vp_out = C.c_void_p()
        self.check(self._create(C.byref(cfg), C.byref(vp_out)), "cache_create")
        return g

    def append(self, g, k, v, n, thresholds):
        self.check(self._append(g, k, v, n, thresholds), "cache_append")

    def decode_dev(self, g, step, q, out, selected=None):
        self.check(self._decode_dev(g, C.byref(step), q, out, selected), "decode_dev")

    def stages_dev(self, g, step, q, out, stages):
        self.check(self.lib.adamas_cuda_stages_dev(g, C.byref(step), q, out, stages),
                   "stages_dev")

    def set_stream(self, g, stream):
        self.check(self.lib.adamas_cuda_set_stream(g, stream), "set_stream")

    def sync(self, g):
        self.check(self._sync(g), "sync")


def parse():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--module", default=os.environ.get(
        "ADAMAS_CUDA_MODULE", os.path.join(here, "..", "build", "gpu", "libadamas_cuda.so")))
    ap.add_argument("--contexts", default="32768,131072")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--budget", type=int, default=128)
    ap.add_argument("--rerank", type=int, default=4)
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--l2-bytes", type=float, default=160e6,
                    help="rotate among enough caches to read at least this many code bytes")
    return ap.parse_args()


def time_graph(torch, stream, fn, reps, warm, rounds=5):
    """Median per-step time (ms) of a CUDA graph of `reps` calls of fn on stream
    (fn(i) for i < warm first, so that every cache has its buffers)."""
    with torch.cuda.stream(stream):
        for i in range(warm):
            fn(i)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        for i in range(reps):
            fn(i)
    times = []
    with torch.cuda.stream(stream):
        graph.replay()
        for _ in range(rounds):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(stream)
            graph.replay()
            b.record(stream)
            b.synchronize()
            times.append(a.elapsed_time(b) / reps)
    del graph
    return statistics.median(times)


def time_stream(torch, stream, fn, reps, warm, rounds=5):
    """Median per-step time (ms) of `reps` calls queued behind a sleep kernel."""
    times = []
    with torch.cuda.stream(stream):
        for i in range(warm):
            fn(i)
        for _ in range(rounds):
            torch.cuda.synchronize()
            torch.cuda._sleep(40_000_000)  # ~20 ms: the CPU queues every step meanwhile
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(stream)
            for i in range(reps):
                fn(i)
            b.record(stream)
            b.synchronize()
            times.append(a.elapsed_time(b) / reps)
    return statistics.median(times)


def copy_bandwidth(torch):
    """Device-to-device copy bandwidth, bytes read plus written per second."""
    n = 2 << 30
    x = torch.empty(n, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        y.copy_(x)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    del x, y
    return 2 * n / statistics.median(times)


def measure(torch, stream, fn, reps, warm):
    """(graph ms, stream ms) per call of fn(i); nan where graph capture fails."""
    try:
        g_ms = time_graph(torch, stream, fn, reps, warm)
    except Exception as e:  # report it, and keep the stream timing
        print(f"  graph capture failed: {e}", file=sys.stderr)
        torch.cuda.synchronize()
        g_ms = float("nan")
    return g_ms, time_stream(torch, stream, fn, reps, warm)


def build_caches(torch, mod, n, H, D, copies, th, kth):
    """`copies` caches of n random tokens, and the same f16 keys and values laid out
    for SDPA ([1, H, n, D])."""
    caches, kv16 = [], []
    for _ in range(copies):
        g = mod.create(Config(H, H, D, n, F16, th, th, 0, 16, 0))
        caches.append(g)
        ks, vs = [], []
        for s in range(0, n, 4096):
            m = min(4096, n - s)
            k = torch.randn(m, H, D, device="cuda")
            v = torch.randn(m, H, D, device="cuda")
            kc, vc = k.cpu(), v.cpu()
            mod.append(g, kc.data_ptr(), vc.data_ptr(), m, kth)
            ks.append(k.half())
            vs.append(v.half())
        kv16.append((torch.cat(ks).permute(1, 0, 2).unsqueeze(0).contiguous(),
                     torch.cat(vs).permute(1, 0, 2).unsqueeze(0).contiguous()))
    torch.cuda.synchronize()
    return caches, kv16


def bench_context(torch, F, mod, args, n, copy_bw):
    H, D, B = args.heads, args.dim, args.budget
    words = 2 * ((D + 63) // 64)
    th = (C.c_float * 3)(-0.6745, 0.0, 0.6745)
    kth = ((C.c_float * 3) * H)(*[th] * H)
    code_bytes = n * H * words * 8
    copies = max(2, min(8, int(args.l2_bytes // code_bytes) + 1))
    t0 = time.time()
    caches, kv16 = build_caches(torch, mod, n, H, D, copies, th, kth)
    build_s = time.time() - t0
    print(f"context {n}: {copies} caches built in {build_s:.1f} s", flush=True)

    # every cache queues on one torch stream, on which the timings record events
    stream = torch.cuda.Stream()
    for g in caches:
        mod.set_stream(g, stream.cuda_stream)
    q = torch.randn(H, D, device="cuda")
    out = torch.empty(H, D, device="cuda")
    q16 = q.half().view(1, H, 1, D)
    warm = 2 * copies
    step = lambda sel, rerank: Step(sel, n, B, 0, 1, rerank, 0.0)
    plain, rr, full = step(ADAMAS, 0), step(ADAMAS, args.rerank), step(FULL, 0)

    res = {}
    for name, st in (("adamas", plain), (f"adamas R={args.rerank}", rr), ("full", full)):
        def run(i, st=st):
            mod.decode_dev(caches[i % copies], st, q.data_ptr(), out.data_ptr())
        res[name] = measure(torch, stream, run, args.reps, warm)
        print(f"  {name}: graph {res[name][0]:.4f} ms, stream {res[name][1]:.4f} ms", flush=True)

    # stages of the plain step: the scan, then the selection too
    stages = {}
    for k in (1, 2):
        def part(i, k=k):
            mod.stages_dev(caches[i % copies], plain, q.data_ptr(), out.data_ptr(), k)
        stages[k] = measure(torch, stream, part, args.reps, warm)
    n_cand = n - 1
    scan_bytes = n_cand * H * words * 8 + n_cand * H * 2

    sdpa_stream = torch.cuda.Stream()

    def sdpa(i):
        k, v = kv16[i % copies]
        return F.scaled_dot_product_attention(q16, k, v)
    sd = measure(torch, sdpa_stream, sdpa, args.reps, warm)
    print(f"  torch SDPA: graph {sd[0]:.4f} ms, stream {sd[1]:.4f} ms", flush=True)

    # sanity: the module's dense output against float32 attention on the same values
    with torch.cuda.stream(stream):
        mod.decode_dev(caches[0], full, q.data_ptr(), out.data_ptr())
    mod.sync(caches[0])
    ref = F.scaled_dot_product_attention(q.view(1, H, 1, D), kv16[0][0].float(),
                                         kv16[0][1].float()).view(H, D)
    full_err = ((out - ref).norm() / ref.norm()).item()
    for g in caches:
        mod.destroy(g)
    del kv16
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return dict(n=n, res=res, sd=sd, stages=stages, scan_bytes=scan_bytes, full_err=full_err,
                copies=copies, build_s=build_s)


def main():
    args = parse()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("bench_gpu: torch is not installed", file=sys.stderr)
        return 77
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device", file=sys.stderr)
        return 77
    mod = Module(args.module)
    device = mod.probe()
    torch.manual_seed(1)
    copy_bw = copy_bandwidth(torch)
    print(f"device: {device}; torch {torch.__version__}; device copy {copy_bw / 1e12:.2f} TB/s "
          f"(bytes read + written); ADAMAS_CUDA_OFF={os.environ.get('ADAMAS_CUDA_OFF', '')!r}")
    print(f"shape: {args.heads} query and kv heads, d={args.dim}, f16 keys and values, one "
          f"query per head, budget {args.budget}, rerank {args.rerank}; {args.reps} steps per "
          f"timing, median of 5\n", flush=True)
    rows = []
    for n in [int(x) for x in args.contexts.split(",")]:
        try:
            rows.append(bench_context(torch, F, mod, args, n, copy_bw))
        except Exception:
            import traceback
            traceback.print_exc()
    if not rows:
        return 1

    nan = float("nan")
    print("\n| context | decode step | graph ms | stream ms | speed-up vs SDPA (graph) "
          "| (stream) |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        sd = r["sd"]
        print(f"| {r['n']} | torch SDPA | {sd[0]:.4f} | {sd[1]:.4f} | 1.00x | 1.00x |")
        for name, (g, s) in r["res"].items():
            print(f"| {r['n']} | {name} | {g:.4f} | {s:.4f} | {sd[0] / g:.2f}x | "
                  f"{sd[1] / s:.2f}x |")
    print("\n| context | scan ms | + select ms | + attend ms (plain step) | scan bytes "
          "| scan TB/s | of copy bw | FULL vs f32 rel. err | caches |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        # graph timings where capture worked, else stream
        pick = lambda t: t[0] if t[0] == t[0] else t[1]
        scan, sel, whole = pick(r["stages"][1]), pick(r["stages"][2]), pick(r["res"]["adamas"])
        bw = r["scan_bytes"] / (scan / 1e3) if scan > 0 else nan
        print(f"| {r['n']} | {scan:.4f} | {sel - scan:.4f} | {whole - sel:.4f} | "
              f"{r['scan_bytes'] / 1e6:.1f} MB | {bw / 1e12:.2f} | {100 * bw / copy_bw:.0f}% | "
              f"{r['full_err']:.2e} | {r['copies']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
