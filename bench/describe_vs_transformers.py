#!/usr/bin/env python3
"""Describe speed: bftkit describe against transformers' generate, same model, same prompts.

Made for a GPU machine (nothing is downloaded): a random-weight decoder of a real shape is
written there with PyTorch (seeded), with the tiny ChatML tokenizer of `bftkit fixtures
--models`; both tools write greedy profiles for the same N genes with the same prompt (the
gene-profile prompt bftkit's describe report records) and the same number of new tokens, and
the script prints generated tokens per second for each batch size. Random weights rarely emit
the end-of-turn token, so nearly every profile runs to the limit in both tools (the counts are
printed). In f32 it also checks that both tools wrote the same text for every gene.

  python bench/describe_vs_transformers.py --bftkit target/release/bftkit \\
      --shape qwen2-1.5b --device cuda --dtype bf16 --prompts 512 --new-tokens 256 \\
      --batch-sizes 64,128,512
  # a CPU dry run of the whole script (seconds):
  python bench/describe_vs_transformers.py --bftkit target/release/bftkit --shape tiny \\
      --device cpu --dtype f32 --prompts 16 --new-tokens 8 --batch-sizes 4,16

Needs torch and transformers (and safetensors).
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

SHAPES = {
    # hidden, layers, heads, kv heads, intermediate, vocab, tied
    # the tiny shape uses the tokenizer's own vocabulary, so every generated id decodes to text
    # and the f32 agreement check compares real words
    "tiny": (64, 2, 4, 2, 128, None, True),
    "smollm2-135m": (576, 30, 9, 3, 1536, 49152, True),
    "qwen2-1.5b": (1536, 28, 12, 2, 8960, 151936, True),
}


def make_model(shape, out, tokenizer_json, seed):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    h, layers, heads, kv, inter, vocab, tied = SHAPES[shape]
    if vocab is None:
        tok = json.load(open(tokenizer_json))
        vocab = len(tok["model"]["vocab"]) + sum(
            t["id"] >= len(tok["model"]["vocab"]) for t in tok.get("added_tokens", []))
    cfg = Qwen2Config(
        hidden_size=h,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        vocab_size=vocab,
        tie_word_embeddings=tied,
        max_position_embeddings=4096,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        # Wide random weights make the tiny model's greedy choices vary from step to step and
        # gene to gene (with the usual 0.02 it repeats one token), so its agreement check bites.
        initializer_range=0.5 if shape == "tiny" else 0.02,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(out, safe_serialization=True)
    shutil.copy(tokenizer_json, os.path.join(out, "tokenizer.json"))


def chatml(system, user):
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


def run_transformers(model_dir, prompts, new_tokens, batch, device, dtype):
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    tok.pad_token = tok.pad_token or "<|im_end|>"
    tok.padding_side = "left"
    # bftkit's ChatML stop tokens: <|im_end|> and, when the vocabulary has it, <|endoftext|>.
    vocab = tok.backend_tokenizer.get_vocab(with_added_tokens=True)
    stops = [vocab[t] for t in ("<|im_end|>", "<|endoftext|>") if t in vocab]
    end = stops[0]
    torch_dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype).to(device).eval()
    # Longest prompts first, as bftkit takes them.
    enc = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(enc[i]))
    texts = [None] * len(prompts)
    generated = stopped = 0

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    sync()
    start = time.perf_counter()
    for k in range(0, len(order), batch):
        idx = order[k : k + batch]
        batch_enc = tok.pad({"input_ids": [enc[i] for i in idx]}, return_tensors="pt").to(device)
        with torch.no_grad():
            out = model.generate(
                **batch_enc,
                max_new_tokens=new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=end,
            )
        new = out[:, batch_enc["input_ids"].shape[1] :].tolist()
        for i, row in zip(idx, new):
            cut = [row.index(t) for t in stops if t in row]
            if cut:
                row = row[: min(cut)]
                stopped += 1
            generated += len(row)
            # The tokenizers library's own decoding, as bftkit's (transformers' wrapper skips
            # more tokens as "special").
            text = tok.backend_tokenizer.decode(row, skip_special_tokens=True)
            texts[i] = " ".join(text.split())
    sync()
    seconds = time.perf_counter() - start
    return texts, generated, stopped, seconds, sum(len(e) for e in enc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bftkit", required=True)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="qwen2-1.5b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="bf16")
    ap.add_argument("--prompts", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--batch-sizes", default="64,128,512")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="work folder [default: a temporary one]")
    a = ap.parse_args()
    work = a.out or tempfile.mkdtemp()
    os.makedirs(work, exist_ok=True)
    bftkit = os.path.abspath(a.bftkit)
    subprocess.run([bftkit, "fixtures", "--out", os.path.join(work, "fx"), "--models"],
                   check=True, stdout=subprocess.DEVNULL)
    model_dir = os.path.join(work, f"model-{a.shape}")
    t0 = time.perf_counter()
    make_model(a.shape, model_dir, os.path.join(work, "fx/models/tiny-qwen2/tokenizer.json"), a.seed)
    print(f"random-weight {a.shape} written in {time.perf_counter() - t0:.1f} s (seed {a.seed})")
    if a.shape == "tiny":
        # Words the tiny tokenizer knows, so prompts differ from gene to gene.
        vocab = json.load(open(os.path.join(work, "fx/models/tiny-qwen2/tokenizer.json")))
        words = [w for w in vocab["model"]["vocab"] if w.isalpha() and not w.startswith("[")]
        genes = words[: a.prompts]
    else:
        genes = [f"GENE{i:04d}" for i in range(a.prompts)]
    genes_file = os.path.join(work, "genes.txt")
    with open(genes_file, "w") as f:
        f.write("\n".join(genes) + "\n")
    device = "cuda:0" if a.device == "cuda" else a.device
    rows = []
    same = None
    for b in [int(x) for x in a.batch_sizes.split(",")]:
        out = os.path.join(work, f"bftkit-b{b}.tsv")
        start = time.perf_counter()
        subprocess.run(
            [bftkit, "describe", genes_file, "--model", model_dir, "--out", out,
             "--max-new-tokens", str(a.new_tokens), "--batch-size", str(b),
             "--device", device, "--dtype", a.dtype],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        rep = json.load(open(out + ".describe.json"))
        prompts = [chatml(rep["system"], rep["user"].replace("{gene}", g)) for g in genes]
        texts, gen, stopped, secs, prompt_tokens = run_transformers(
            model_dir, prompts, a.new_tokens, b, device, a.dtype)
        ours = {}
        for line in open(out).read().splitlines()[1:]:
            g, _, p = line.partition("\t")
            ours[g] = p
        if a.dtype == "f32":
            # The tokenizers crate and its Python binding differ on whether the tiny
            # vocabulary's [PAD]/[CLS]/[SEP]/[MASK] are skipped when decoding: compare without
            # bracketed markers.
            def words(t):
                return [w for w in t.split() if not (w.startswith("[") and w.endswith("]"))]

            agree = sum(words(ours[g]) == words(t) for g, t in zip(genes, texts))
            same = agree if same is None else min(same, agree)
        rows.append((b, rep["generated_tokens"], rep["stopped"], rep["tokens_per_s"], wall,
                     gen, stopped, gen / secs, prompt_tokens))
    print(f"\n{len(genes)} prompts x {a.new_tokens} new tokens, {a.shape}, {a.device}, {a.dtype}")
    print("| batch | bftkit tokens (ended) | bftkit tokens/s | bftkit wall s (load incl.) "
          "| transformers tokens (ended) | transformers tokens/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for b, gt, st, tps, wall, gen, stp, ttps, _ in rows:
        print(f"| {b} | {gt} ({st}) | {tps:.0f} | {wall:.1f} | {gen} ({stp}) | {ttps:.0f} "
              f"| {tps / ttps:.2f} |")
    print(f"prompt tokens (transformers' tokenisation): {rows[0][8]}")
    if same is not None:
        print(f"same text in both tools (f32): {same} of {len(genes)} genes (worst batch size); "
              "with a real shape's vocabulary most ids do not decode with the tiny tokenizer, "
              "so only the tiny shape's check means something")


if __name__ == "__main__":
    main()
