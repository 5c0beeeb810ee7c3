#!/usr/bin/env python3
"""export_gguf.py - a llama-architecture GGUF (v3) file from a Hugging Face-style state dict.

Writes the format directly (no gguf package needed), following llama.cpp's conventions
for the llama architecture:

  metadata   general.architecture "llama", llama.block_count, llama.context_length,
             llama.embedding_length, llama.feed_forward_length,
             llama.attention.head_count, llama.attention.head_count_kv,
             llama.rope.freq_base, llama.rope.dimension_count,
             llama.attention.layer_norm_rms_epsilon, llama.vocab_size
  tensors    token_embd.weight, blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,
             ffn_norm,ffn_gate,ffn_up,ffn_down}.weight, output_norm.weight,
             output.weight (left out when the embeddings are tied)
  q and k    rows permuted from Hugging Face's rotate-half layout to llama.cpp's, where
             RoPE rotates adjacent pairs (2i, 2i+1): what convert_hf_to_gguf.py does
  vocabulary byte-level BPE as llama.cpp reads it: tokenizer.ggml.model "gpt2", token
             i < 256 is byte i under its GPT-2 byte-to-unicode name, then
             "<|endoftext|>" (control; bos and eos) and "[PADn]" (unused) up to the
             embedding's rows; tokenizer.ggml.pre "default"; tokenizer.ggml.merges
             present and empty (no merge is ever used)

Matrices are stored as F32, F16 or Q8_0 (blocks of 32 int8 values and an f16 scale,
rounded as llama.cpp's quantize_row_q8_0_ref rounds); norm weights stay F32.

State dict names (LlamaForCausalLM): model.embed_tokens.weight,
model.layers.N.self_attn.{q,k,v,o}_proj.weight, model.layers.N.mlp.{gate,up,down}_proj.weight,
model.layers.N.{input,post_attention}_layernorm.weight, model.norm.weight, lm_head.weight.

    python3 tools/train/export_gguf.py model.pt config.json out.gguf --dtype q8_0

config.json: {"dim", "n_layers", "n_heads", "n_kv_heads", "hidden_dim", "context_length",
"rope_base", "norm_eps"} (train.py writes it beside the state dict).
"""
import argparse
import json
import struct
import sys

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32

# value types
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
# ggml tensor types
GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8
# token types
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_UNUSED = 1, 3, 5
# general.file_type
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7}

N_BYTES = 256
EOT = "<|endoftext|>"


def bytes_to_unicode():
    """GPT-2's byte-to-unicode map: printable bytes stand for themselves, the others
    for U+0100, U+0101, ... in byte order."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def byte_vocabulary(n_vocab):
    """Tokens and token types of a byte-level vocabulary of n_vocab >= 256 entries."""
    if n_vocab < N_BYTES:
        raise ValueError(f"a byte-level vocabulary needs 256 tokens, the embedding has {n_vocab}")
    names = bytes_to_unicode()
    tokens = [names[b] for b in range(N_BYTES)]
    types = [TOKEN_NORMAL] * N_BYTES
    if n_vocab > N_BYTES:
        tokens.append(EOT)
        types.append(TOKEN_CONTROL)
    for i in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{i}]")
        types.append(TOKEN_UNUSED)
    return tokens, types


def encode_bytes(data):
    """Token ids of raw bytes for this vocabulary (byte b is token b)."""
    return list(data)


# ------------------------------------------------------------------ tensors


def permute_rope(w, n_heads):
    """Rows of a q or k projection [n_heads * d, dim] from rotate-half order (row
    j*d/2 + i of a head pairs with the one d/2 away) to adjacent pairs (rows 2i, 2i+1),
    as llama.cpp's convert_hf_to_gguf.py permutes them."""
    rows = w.shape[0]
    return (w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def quantize_q8_0(w):
    """Q8_0 blocks of a float32 matrix [rows, cols] (cols a multiple of 32): per block
    d = max|x| / 127 stored as f16, q = round(x / d) away from zero; bytes, row by row."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    rows, cols = w.shape
    if cols % 32:
        raise ValueError(f"Q8_0 needs rows of a multiple of 32 values, not {cols}")
    blocks = w.reshape(rows, cols // 32, 32)
    amax = np.abs(blocks).max(axis=2)
    d = (amax / np.float32(127)).astype(np.float32)
    inv = np.where(d > 0, np.float32(1) / np.where(d > 0, d, 1), 0).astype(np.float32)
    x = blocks * inv[:, :, None]
    q = (np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))).astype(np.int8)
    out = np.empty((rows, cols // 32, 34), dtype=np.uint8)
    out[:, :, 0:2] = d.astype("<f2")[:, :, None].view(np.uint8)
    out[:, :, 2:] = q.view(np.uint8)
    return out.tobytes()


def dequantize_q8_0(raw, rows, cols):
    """The float32 matrix a Q8_0 engine reads from quantize_q8_0's bytes."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols // 32, 34)
    d = b[:, :, 0:2].copy().view("<f2").astype(np.float32)
    q = b[:, :, 2:].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(rows, cols)


def tensor_bytes(w, dtype):
    """(ggml type, bytes) of a float32 array stored as dtype ("f32", "f16", "q8_0");
    vectors stay f32, matrices whose rows Q8_0 cannot hold fall back to f16."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    if w.ndim == 1 or dtype == "f32":
        return GGML_F32, w.astype("<f4").tobytes()
    if dtype == "q8_0" and w.shape[-1] % 32 == 0:
        return GGML_Q8_0, quantize_q8_0(w)
    return GGML_F16, w.astype("<f2").tobytes()


# -------------------------------------------------------------------- writer


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(vtype, v):
    if vtype == STRING:
        return _str(v)
    fmt = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
           FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}[vtype]
    return struct.pack(fmt, v)


class GGUFWriter:
    def __init__(self):
        self.kv = []       # (key, bytes of type + value)
        self.tensors = []  # (name, shape in numpy order, ggml type, bytes)

    def add(self, key, vtype, value):
        self.kv.append((key, struct.pack("<I", vtype) + _value(vtype, value)))

    def add_array(self, key, etype, values):
        body = struct.pack("<IIQ", ARRAY, etype, len(values))
        body += b"".join(_value(etype, v) for v in values)
        self.kv.append((key, body))

    def add_tensor(self, name, shape, gtype, data):
        self.tensors.append((name, tuple(shape), gtype, data))

    def write(self, path):
        out = bytearray()
        out += GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(self.kv))
        for key, body in self.kv:
            out += _str(key) + body
        offset = 0
        offsets = []
        for name, shape, gtype, data in self.tensors:
            offsets.append(offset)
            out += _str(name) + struct.pack("<I", len(shape))
            for n in reversed(shape):  # ggml order: innermost first
                out += struct.pack("<Q", n)
            out += struct.pack("<IQ", gtype, offset)
            offset += (len(data) + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
        out += b"\0" * (-len(out) % ALIGNMENT)
        with open(path, "wb") as f:
            f.write(out)
            for (name, shape, gtype, data), off in zip(self.tensors, offsets):
                f.write(data)
                f.write(b"\0" * (-len(data) % ALIGNMENT))


# -------------------------------------------------------------------- reader


def read_gguf(path):
    """(metadata dict, {name: float32 array in numpy order}) of a GGUF file this module
    wrote (F32, F16 and Q8_0 tensors; Q8_0 dequantized as an engine reads it)."""
    with open(path, "rb") as f:
        raw = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from(fmt, raw, pos)
        pos += struct.calcsize(fmt)
        return vals if len(vals) > 1 else vals[0]

    def string():
        nonlocal pos
        n = take("<Q")
        pos += n
        return raw[pos - n:pos].decode("utf-8")

    scalar = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
              FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}

    def value(vtype):
        if vtype == STRING:
            return string()
        if vtype == ARRAY:
            etype, n = take("<IQ")
            return [value(etype) for _ in range(n)]
        return take(scalar[vtype])

    if raw[:4] != GGUF_MAGIC:
        raise ValueError(f"{path}: not a GGUF file")
    pos = 4
    _, n_tensors, n_kv = take("<IQQ")
    meta = {}
    for _ in range(n_kv):
        key = string()
        meta[key] = value(take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("<Q") for _ in range(take("<I"))]
        gtype, offset = take("<IQ")
        infos.append((name, tuple(reversed(dims)), gtype, offset))
    align = meta.get("general.alignment", ALIGNMENT)
    base = pos + (-pos % align)
    tensors = {}
    for name, shape, gtype, offset in infos:
        count = int(np.prod(shape))
        at = base + offset
        if gtype == GGML_F32:
            a = np.frombuffer(raw, "<f4", count, at).astype(np.float32)
        elif gtype == GGML_F16:
            a = np.frombuffer(raw, "<f2", count, at).astype(np.float32)
        elif gtype == GGML_Q8_0:
            a = dequantize_q8_0(raw[at:at + count // 32 * 34], count // shape[-1], shape[-1])
        else:
            raise ValueError(f"{path}: tensor {name} has ggml type {gtype}")
        tensors[name] = a.reshape(shape)
    return meta, tensors


def unpermute_rope(w, n_heads):
    """The inverse of permute_rope: llama.cpp's adjacent pairs back to rotate-half."""
    rows = w.shape[0]
    return (w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def state_from_gguf(path):
    """(state dict with LlamaForCausalLM names, config) of the weights a GGUF file
    holds: the inverse of export(), up to the rounding of its dtype."""
    meta, t = read_gguf(path)
    n_layers = meta["llama.block_count"]
    n_heads, n_kv_heads = meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]
    cfg = {"dim": meta["llama.embedding_length"], "n_layers": n_layers, "n_heads": n_heads,
           "hidden_dim": meta["llama.feed_forward_length"],
           "context_length": meta["llama.context_length"],
           "rope_base": meta["llama.rope.freq_base"],
           "norm_eps": meta["llama.attention.layer_norm_rms_epsilon"], "n_kv_heads": n_kv_heads}
    state = {"model.embed_tokens.weight": t["token_embd.weight"],
             "model.norm.weight": t["output_norm.weight"],
             "lm_head.weight": t.get("output.weight", t["token_embd.weight"])}
    for i in range(n_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        state[p + "input_layernorm.weight"] = t[b + "attn_norm.weight"]
        state[p + "self_attn.q_proj.weight"] = unpermute_rope(t[b + "attn_q.weight"], n_heads)
        state[p + "self_attn.k_proj.weight"] = unpermute_rope(t[b + "attn_k.weight"], n_kv_heads)
        state[p + "self_attn.v_proj.weight"] = t[b + "attn_v.weight"]
        state[p + "self_attn.o_proj.weight"] = t[b + "attn_output.weight"]
        state[p + "post_attention_layernorm.weight"] = t[b + "ffn_norm.weight"]
        state[p + "mlp.gate_proj.weight"] = t[b + "ffn_gate.weight"]
        state[p + "mlp.up_proj.weight"] = t[b + "ffn_up.weight"]
        state[p + "mlp.down_proj.weight"] = t[b + "ffn_down.weight"]
    return state, cfg


# -------------------------------------------------------------------- export


def _np(t):
    """A tensor of the state dict (torch or numpy) as float32 numpy."""
    if hasattr(t, "detach"):
        t = t.detach().to("cpu").float().numpy()
    return np.asarray(t, dtype=np.float32)


def export(state, cfg, path, dtype="f32", name="adamas-ref"):
    """Write state (LlamaForCausalLM names -> tensors) with config cfg to path."""
    if dtype not in FILE_TYPES:
        raise ValueError(f"dtype {dtype}: f32, f16 or q8_0")
    dim, n_layers = cfg["dim"], cfg["n_layers"]
    n_heads, n_kv_heads = cfg["n_heads"], cfg.get("n_kv_heads", cfg["n_heads"])
    head_dim = dim // n_heads
    embed = _np(state["model.embed_tokens.weight"])
    n_vocab = embed.shape[0]
    tokens, types = byte_vocabulary(n_vocab)

    w = GGUFWriter()
    w.add("general.architecture", STRING, "llama")
    w.add("general.name", STRING, name)
    w.add("general.alignment", UINT32, ALIGNMENT)
    w.add("general.file_type", UINT32, FILE_TYPES[dtype])
    w.add("llama.block_count", UINT32, n_layers)
    w.add("llama.context_length", UINT32, cfg["context_length"])
    w.add("llama.embedding_length", UINT32, dim)
    w.add("llama.feed_forward_length", UINT32, cfg["hidden_dim"])
    w.add("llama.attention.head_count", UINT32, n_heads)
    w.add("llama.attention.head_count_kv", UINT32, n_kv_heads)
    w.add("llama.rope.freq_base", FLOAT32, float(cfg.get("rope_base", 10000.0)))
    w.add("llama.rope.dimension_count", UINT32, head_dim)
    w.add("llama.attention.layer_norm_rms_epsilon", FLOAT32, float(cfg.get("norm_eps", 1e-5)))
    w.add("llama.vocab_size", UINT32, n_vocab)
    w.add("tokenizer.ggml.model", STRING, "gpt2")
    w.add("tokenizer.ggml.pre", STRING, "default")
    w.add_array("tokenizer.ggml.tokens", STRING, tokens)
    w.add_array("tokenizer.ggml.token_type", INT32, types)
    w.add_array("tokenizer.ggml.merges", STRING, [])
    if n_vocab > N_BYTES:
        w.add("tokenizer.ggml.bos_token_id", UINT32, N_BYTES)
        w.add("tokenizer.ggml.eos_token_id", UINT32, N_BYTES)
    w.add("tokenizer.ggml.add_bos_token", BOOL, False)
    w.add("tokenizer.ggml.add_eos_token", BOOL, False)

    def put(gguf_name, array):
        gtype, data = tensor_bytes(array, dtype)
        w.add_tensor(gguf_name, array.shape, gtype, data)

    put("token_embd.weight", embed)
    for i in range(n_layers):
        p = f"model.layers.{i}."
        put(f"blk.{i}.attn_norm.weight", _np(state[p + "input_layernorm.weight"]))
        put(f"blk.{i}.attn_q.weight", permute_rope(_np(state[p + "self_attn.q_proj.weight"]), n_heads))
        put(f"blk.{i}.attn_k.weight", permute_rope(_np(state[p + "self_attn.k_proj.weight"]), n_kv_heads))
        put(f"blk.{i}.attn_v.weight", _np(state[p + "self_attn.v_proj.weight"]))
        put(f"blk.{i}.attn_output.weight", _np(state[p + "self_attn.o_proj.weight"]))
        put(f"blk.{i}.ffn_norm.weight", _np(state[p + "post_attention_layernorm.weight"]))
        put(f"blk.{i}.ffn_gate.weight", _np(state[p + "mlp.gate_proj.weight"]))
        put(f"blk.{i}.ffn_up.weight", _np(state[p + "mlp.up_proj.weight"]))
        put(f"blk.{i}.ffn_down.weight", _np(state[p + "mlp.down_proj.weight"]))
    put("output_norm.weight", _np(state["model.norm.weight"]))
    lm_head = state.get("lm_head.weight")
    if lm_head is not None and not np.array_equal(_np(lm_head), embed):
        put("output.weight", _np(lm_head))
    w.write(path)


def main():
    ap = argparse.ArgumentParser(description="Write a llama GGUF file from a state dict.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    ap.add_argument("state_dict", help="torch.save'd state dict (LlamaForCausalLM names)")
    ap.add_argument("config", help="config.json of the model (see above)")
    ap.add_argument("out", help="GGUF file to write")
    ap.add_argument("--dtype", choices=sorted(FILE_TYPES), default="q8_0",
                    help="storage of the matrices (default q8_0)")
    ap.add_argument("--name", default="adamas-ref", help="general.name")
    args = ap.parse_args()
    import torch  # only the command line needs it

    state = torch.load(args.state_dict, map_location="cpu", weights_only=True)
    with open(args.config) as f:
        cfg = json.load(f)
    export(state, cfg, args.out, args.dtype, args.name)
    print(f"export_gguf: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
