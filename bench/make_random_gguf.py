"""A random-weight, already-quantised Llama decoder written as a GGUF file: the model that
bench/gpu_vs_torch.sh fine-tunes over a q4_k (or q8_0) base at the 70B shape, which neither fits
in bf16 on one GPU nor could be quantised from bf16 on the GPU machine in minutes.

Every linear layer (and the token embedding and output layer) is written as random quantised
blocks, streamed tensor by tensor, so writing a 40 GB file needs a few MB of memory:
  q4_k: 256 weights per 144-byte block = f16 scale d, f16 offset scale dmin, twelve bytes of
        packed 6-bit sub-block scales and offsets, 128 bytes of 4-bit quants; weight =
        d * scale * q - dmin * offset. Random bytes everywhere except d = 7.7e-5 and dmin =
        5.8e-4, which centre the weights near 0 with a standard deviation near 0.02 (transformers'
        own initialisation).
  q8_0: 32 weights per 34-byte block = f16 scale (2.7e-4) and 32 random int8 quants.
Norm weights are ones (f32). The tokenizer (byte-level BPE, pre-tokenizer "smollm") comes from
--tokenizer's tokenizer.json, whose ids must fit the vocabulary. Only numpy is needed.

  python bench/make_random_gguf.py --shape llama3-70b --quant q4_k \\
      --tokenizer models/smollm2-tokenizer --out bench/out/gpu/models/llama3-70b-q4_k.gguf
"""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np

SHAPES = {
    # the smallest shape q4_k blocks allow (rows of 256): a dry run on any machine
    "tiny-q": dict(hidden=256, mlp=512, layers=2, heads=4, kv_heads=2, rope_theta=10000.0, eps=1e-5),
    "llama3-8b": dict(hidden=4096, mlp=14336, layers=32, heads=32, kv_heads=8, rope_theta=500000.0, eps=1e-5),
    "llama3-70b": dict(hidden=8192, mlp=28672, layers=80, heads=64, kv_heads=8, rope_theta=500000.0, eps=1e-5),
}
# GGUF value and tensor type codes
U32, I32, F32V, BOOL, STR, ARR = 4, 5, 6, 7, 8, 9
GGML = {"f32": (0, 1, 4), "q8_0": (8, 32, 34), "q4_k": (12, 256, 144)}  # code, block weights, block bytes
ALIGN = 32


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    out = gstr(key) + struct.pack("<I", vtype)
    if vtype == STR:
        return out + gstr(value)
    if vtype == ARR:
        etype, items = value
        out += struct.pack("<IQ", etype, len(items))
        if etype == STR:
            return out + b"".join(gstr(x) for x in items)
        return out + np.asarray(items, dtype="<i4" if etype == I32 else "<u4").tobytes()
    fmt = {U32: "<I", I32: "<i", F32V: "<f", BOOL: "<?"}[vtype]
    return out + struct.pack(fmt, value)


def tokenizer_kvs(folder):
    tok = json.load(open(os.path.join(folder, "tokenizer.json")))
    cfg_path = os.path.join(folder, "tokenizer_config.json")
    cfg = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
    model = tok["model"]
    if model.get("type") != "BPE":
        sys.exit(f"{folder}/tokenizer.json: a BPE tokenizer is needed, found {model.get('type')}")
    vocab = dict(model["vocab"])
    special = set()
    for a in tok.get("added_tokens", []):
        vocab[a["content"]] = a["id"]
        if a.get("special"):
            special.add(a["id"])
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    for t, i in vocab.items():
        tokens[i] = t
    types = [3 if i in special else 1 for i in range(n)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    ids = {name: vocab.get(cfg.get(name)) for name in ("bos_token", "eos_token", "pad_token", "unk_token")}
    out = [kv("tokenizer.ggml.model", STR, "gpt2"), kv("tokenizer.ggml.pre", STR, "smollm"),
           kv("tokenizer.ggml.tokens", ARR, (STR, tokens)), kv("tokenizer.ggml.token_type", ARR, (I32, types)),
           kv("tokenizer.ggml.merges", ARR, (STR, merges)), kv("tokenizer.ggml.add_bos_token", BOOL, False)]
    for name, key in [("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                      ("pad_token", "padding_token_id"), ("unk_token", "unknown_token_id")]:
        if ids[name] is not None:
            out.append(kv(f"tokenizer.ggml.{key}", U32, ids[name]))
    return out, n


def tensors(s, vocab, quant):
    """(GGUF name, ne = [columns, rows], type) in file order."""
    h, hd = s["hidden"], s["hidden"] // s["heads"]
    out = [("token_embd.weight", [h, vocab], quant)]
    for i in range(s["layers"]):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", [h], "f32"),
                (b + "attn_q.weight", [h, s["heads"] * hd], quant),
                (b + "attn_k.weight", [h, s["kv_heads"] * hd], quant),
                (b + "attn_v.weight", [h, s["kv_heads"] * hd], quant),
                (b + "attn_output.weight", [s["heads"] * hd, h], quant),
                (b + "ffn_norm.weight", [h], "f32"),
                (b + "ffn_gate.weight", [h, s["mlp"]], quant),
                (b + "ffn_up.weight", [h, s["mlp"]], quant),
                (b + "ffn_down.weight", [s["mlp"], h], quant)]
    out += [("output_norm.weight", [h], "f32"), ("output.weight", [h, vocab], quant)]
    return out


def nbytes(ne, kind):
    _, per, size = GGML[kind]
    if ne[0] % per:
        sys.exit(f"a row of {ne[0]} weights is not a whole number of {kind} blocks ({per})")
    return int(np.prod(ne)) // per * size


def write_data(f, ne, kind, rng):
    """Streams one tensor's random blocks in chunks of at most 64 MiB."""
    if kind == "f32":
        f.write(np.ones(int(np.prod(ne)), dtype="<f4").tobytes())
        return
    _, per, size = GGML[kind]
    blocks = int(np.prod(ne)) // per
    chunk = max(1, (64 << 20) // size)
    for start in range(0, blocks, chunk):
        n = min(chunk, blocks - start)
        b = np.frombuffer(rng.bytes(n * size), dtype=np.uint8).reshape(n, size).copy()
        if kind == "q4_k":
            b[:, 0:2] = np.frombuffer(np.float16(7.7e-5).tobytes(), np.uint8)
            b[:, 2:4] = np.frombuffer(np.float16(5.8e-4).tobytes(), np.uint8)
        else:
            b[:, 0:2] = np.frombuffer(np.float16(2.7e-4).tobytes(), np.uint8)
        f.write(b.tobytes())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), required=True)
    p.add_argument("--quant", choices=["q4_k", "q8_0"], default="q4_k")
    p.add_argument("--tokenizer", required=True, help="folder with tokenizer.json (and tokenizer_config.json)")
    p.add_argument("--out", required=True, help="the .gguf file to write")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    s = SHAPES[args.shape]
    tok_kvs, vocab = tokenizer_kvs(args.tokenizer)
    arch = [kv("general.architecture", STR, "llama"), kv("general.name", STR, f"random {args.shape} {args.quant}"),
            kv("general.alignment", U32, ALIGN),
            kv("llama.block_count", U32, s["layers"]), kv("llama.context_length", U32, 8192),
            kv("llama.embedding_length", U32, s["hidden"]), kv("llama.feed_forward_length", U32, s["mlp"]),
            kv("llama.attention.head_count", U32, s["heads"]), kv("llama.attention.head_count_kv", U32, s["kv_heads"]),
            kv("llama.rope.freq_base", F32V, s["rope_theta"]),
            kv("llama.attention.layer_norm_rms_epsilon", F32V, s["eps"]),
            kv("llama.rope.dimension_count", U32, s["hidden"] // s["heads"]), kv("llama.vocab_size", U32, vocab)]
    kvs = arch + tok_kvs
    ts = tensors(s, vocab, args.quant)
    infos, offset = [], 0
    for name, ne, kind in ts:
        infos.append(gstr(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
                     + struct.pack("<IQ", GGML[kind][0], offset))
        offset += -(-nbytes(ne, kind) // ALIGN) * ALIGN
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    tmp = args.out + ".part"
    with open(tmp, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(ts), len(kvs)))
        for x in kvs + infos:
            f.write(x)
        f.write(b"\0" * (-f.tell() % ALIGN))
        for name, ne, kind in ts:
            write_data(f, ne, kind, rng)
            f.write(b"\0" * (-nbytes(ne, kind) % ALIGN))
    os.replace(tmp, args.out)
    params = sum(int(np.prod(ne)) for _, ne, _ in ts)
    print(f"{args.shape} ({args.quant}): {params / 1e9:.2f} B parameters, {offset / 1e9:.1f} GB of tensors, "
          f"vocabulary {vocab} -> {args.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
