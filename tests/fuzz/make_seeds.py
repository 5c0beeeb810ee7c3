#!/usr/bin/env python3
"""make_seeds.py - write the seed corpora of the fuzz targets (tests/fuzz/corpus/).

Small valid files of each format, so that the fuzzer starts from inputs that reach
deep into the readers: GGUF files with every value type, a byte-level BPE vocabulary
and a whole (tiny) llama model; attention dumps in F32, F16 and BF16 with grouped
heads and metadata; and API programs.  Run it again after changing the targets'
input formats; the output is deterministic."""
import json
import os
import random
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
corpus = os.path.join(here, "corpus")

# ------------------------------------------------------------------ GGUF

def s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b

def kv(key, typ, payload):
    return s(key) + struct.pack("<I", typ) + payload

def kv_u32(k, v): return kv(k, 4, struct.pack("<I", v))
def kv_f32(k, v): return kv(k, 6, struct.pack("<f", v))
def kv_str(k, v): return kv(k, 8, s(v))
def kv_arr(k, typ, items, fmt=None):
    body = b"".join(s(i) for i in items) if typ == 8 else b"".join(struct.pack(fmt, i) for i in items)
    return kv(k, 9, struct.pack("<IQ", typ, len(items)) + body)

def f16(x):
    return struct.pack("<e", x)

def gguf(kvs, tensors, align=32):
    """tensors: (name, ne list, ggml type, data bytes)"""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs)
    infos, data = b"", b""
    for name, ne, typ, blob in tensors:
        data += b"\0" * (-len(data) % align)
        infos += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", typ, len(data))
        data += blob
    out = head + infos
    out += b"\0" * (-len(out) % align)
    return out + data

def byte_names(n):
    # GPT-2 byte-to-unicode names of the first n printable bytes
    return [chr(c) for c in range(33, 33 + n)]

def tokenizer_kvs(tokens, merges, types=None):
    kvs = [kv_str("tokenizer.ggml.model", "gpt2"), kv_str("tokenizer.ggml.pre", "default"),
           kv_arr("tokenizer.ggml.tokens", 8, tokens), kv_arr("tokenizer.ggml.merges", 8, merges),
           kv_u32("tokenizer.ggml.bos_token_id", 0), kv_u32("tokenizer.ggml.eos_token_id", 1)]
    if types:
        kvs.append(kv_arr("tokenizer.ggml.token_type", 5, types, "<i"))
    return kvs

def rand_f16(rng, n):
    return b"".join(f16(rng.uniform(-1, 1)) for _ in range(n))

def q8_0(rng, n):
    out = b""
    for _ in range(n // 32):
        out += f16(0.01) + bytes(rng.randrange(256) for _ in range(32))
    return out

def llama(rng, vocab, dim=16, hidden=32, q8=False):
    toks = byte_names(vocab - 2) + ["!!", "\"\""]
    kvs = [kv_str("general.architecture", "llama"), kv_u32("llama.block_count", 1),
           kv_u32("llama.embedding_length", dim), kv_u32("llama.feed_forward_length", hidden),
           kv_u32("llama.attention.head_count", 1), kv_u32("llama.context_length", 64),
           kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5),
           kv_f32("llama.rope.freq_base", 10000.0)]
    kvs += tokenizer_kvs(toks, ["! !", "\" \""], [3, 3] + [1] * (vocab - 2))
    mat = (lambda r, c: ([c, r], 8, q8_0(rng, r * c))) if q8 else (lambda r, c: ([c, r], 1, rand_f16(rng, r * c)))
    t = [("token_embd.weight",) + mat(vocab, dim),
         ("output_norm.weight", [dim], 0, struct.pack("<%df" % dim, *[1.0] * dim))]
    for name, r, c in [("attn_q", dim, dim), ("attn_k", dim, dim), ("attn_v", dim, dim),
                       ("attn_output", dim, dim), ("ffn_gate", hidden, dim),
                       ("ffn_up", hidden, dim), ("ffn_down", dim, hidden)]:
        t.append(("blk.0.%s.weight" % name,) + mat(r, c))
    for name in ["attn_norm", "ffn_norm"]:
        t.append(("blk.0.%s.weight" % name, [dim], 1, f16(1.0) * dim))
    return gguf(kvs, t)

def gguf_seeds(rng):
    every_type = [kv("u8", 0, b"\x07"), kv("i8", 1, b"\xff"), kv("u16", 2, b"\x01\x02"),
                  kv("i16", 3, b"\xfe\xff"), kv_u32("u32", 7), kv("i32", 5, b"\xff" * 4),
                  kv_f32("f32", 1.5), kv("bool", 7, b"\x01"), kv_str("str", "text"),
                  kv("u64", 10, struct.pack("<Q", 9)), kv("i64", 11, struct.pack("<q", -9)),
                  kv("f64", 12, struct.pack("<d", 2.5)), kv_arr("arr.i32", 5, [1, -2, 3], "<i"),
                  kv_arr("arr.f32", 6, [0.5, 1e30], "<f"), kv_arr("arr.str", 8, ["a", "bc"]),
                  kv_u32("general.alignment", 64)]
    yield "every_type", gguf(every_type, [("t.f32", [4, 2], 0, b"\0" * 32),
                                         ("t.q4k", [256], 12, b"\0" * 144)], align=64)
    yield "empty", gguf([], [])
    toks = byte_names(94) + ["!!", "!!!", "\"#"]
    yield "tokenizer", gguf(tokenizer_kvs(toks, ["! !", "!! !", "\" #"], [1] * len(toks)), [])
    yield "llama_f16", llama(rng, 6)
    yield "llama_q8", llama(rng, 4, dim=32, hidden=32, q8=True)

# ------------------------------------------------------------ safetensors

def dump(tensors, meta=None, pad=True):
    """tensors: (name, dtype, shape, data bytes) in data order"""
    header, data = {}, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, blob in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data

def qkv(rng, layers, tokens, heads, kv_heads, d, dtype):
    size = {"F32": 4, "F16": 2, "BF16": 2}[dtype]
    def blob(n):
        if dtype == "F32":
            return b"".join(struct.pack("<f", rng.uniform(-2, 2)) for _ in range(n))
        if dtype == "F16":
            return rand_f16(rng, n)
        return b"".join(struct.pack("<f", rng.uniform(-2, 2))[2:] for _ in range(n))
    out = []
    for l in range(layers):
        for w, h in (("q", heads), ("k", kv_heads), ("v", kv_heads)):
            out.append(("layers.%d.%s" % (l, w), dtype, [tokens, h, d], blob(tokens * h * d)))
    return out

def dump_seeds(rng):
    yield "f16", dump(qkv(rng, 1, 3, 2, 1, 16, "F16"), {"model": "m", "text": "abc"})
    yield "f32", dump(qkv(rng, 2, 2, 1, 1, 16, "F32"))
    yield "bf16_extra", dump(qkv(rng, 1, 2, 4, 2, 16, "BF16") +
                             [("other", "I8", [3], b"\1\2\3")], {"model": "x"}, pad=False)

# --------------------------------------------------------------------- API

def api_seeds(rng):
    # isa, config (how, n_kv, group, dim, max_tokens u16), then steps
    def prog(isa, how, n_kv, group, dim, max_tokens, extra, steps):
        return bytes([isa, how, n_kv, group, dim]) + struct.pack("<H", max_tokens) + extra + steps
    def append(n, how=0, seed=1):
        return bytes([0, n, 0]) + bytes([how]) + struct.pack("<I", seed) + bytes([how]) + struct.pack("<I", seed + 1)
    def decode(sel, budget, how=0, extra=b"", qhow=0):
        return bytes([3, sel]) + struct.pack("<H", budget) + bytes([how]) + extra + b"\1" + bytes([qhow]) + struct.pack("<I", 7)
    for isa in range(3):
        yield "adamas_%d" % isa, prog(isa, 0, 1, 2, 1, 300, b"", append(30) + append(30) + decode(0, 16) + decode(0, 16, 4, b"\4"))
    yield "selectors", prog(3, 0, 2, 1, 0, 200, b"", append(39) + append(39) + b"".join(decode(s, 20) for s in range(5)))
    yield "calibrate_f16", prog(0, 1, 1, 1, 2, 100, b"\1\0\0\20", append(39) + bytes([2, 0, 64]) + decode(0, 8, 3, b"\2\2") + append(5) + decode(4, 32))
    yield "specials", prog(1, 0, 1, 1, 0, 64, b"", append(10, 0x60, 3) + b"\0\1\0" + bytes([0x60]) + struct.pack("<I", 5) + b"\0\0\0\0\xe0" + decode(2, 4, 0, b"", 0x20))
    yield "overflow", prog(0, 4, 1, 1, 5, 10, b"\3\xfe\xff\xff\xff", b"")

def main():
    rng = random.Random(1)
    for target, seeds in (("gguf", gguf_seeds(rng)), ("dump", dump_seeds(rng)), ("api", api_seeds(rng))):
        d = os.path.join(corpus, target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds:
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)

if __name__ == "__main__":
    sys.exit(main())
