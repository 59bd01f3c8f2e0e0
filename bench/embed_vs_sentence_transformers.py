"""Parity and speed of `bftkit embed` against sentence-transformers (all-MiniLM-L6-v2, CPU).

1. The reference pair: cosine("This is an example sentence", "Each sentence is converted").
2. All 20,598 gene profiles of gene_profiles_go encoded by bftkit (whole process timed) and by
   sentence-transformers (encode() timed, model already loaded), same max length (256), same
   machine, same run; per-gene cosine between the two. The profiles are split into --rounds
   interleaved parts (every R-th profile, so each part has the same length mix), and the two
   tools alternate part by part (who goes first alternates too): this machine's speed drifts by
   ±10% over minutes, and timing one tool for 8 minutes and then the other made the ratio swing
   with it. Times are summed over the parts.
3. The NCBI(+UniProt) summaries encoded by bftkit, for the probe suite.

usage: bench/.venv/bin/python bench/embed_vs_sentence_transformers.py --data ../shared/data
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from safetensors.numpy import load_file
from sentence_transformers import SentenceTransformer


def bftkit_embed(args, texts, out, extra=()):
    cmd = [args.bftkit, "embed", "--texts", texts, "--model", args.model, "--out", out, *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    report = json.load(open(out.rsplit(".", 1)[0] + ".embed.json"))
    return wall, report


def load(path):
    import json as _json
    from safetensors import safe_open
    with safe_open(path, "np") as f:
        ids = _json.loads(f.metadata()["gene_ids"])
        return ids, f.get_tensor("embeddings")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bftkit", default="target/release/bftkit")
    ap.add_argument("--model", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--data", default=os.environ.get("BFTKIT_DATA", "../shared/data"))
    ap.add_argument("--out", default="bench/out")
    ap.add_argument("--limit", type=int, default=0, help="only the first N profiles (quick runs)")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved parts, tools alternating")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    st = SentenceTransformer(args.model, device="cpu")
    st.max_seq_length = 256
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"sentence-transformers {__import__('sentence_transformers').__version__}")

    print("\n## Reference pair\n")
    pair = os.path.join(args.out, "reference_pair.json")
    json.dump({"S1": "This is an example sentence", "S2": "Each sentence is converted"}, open(pair, "w"))
    e = st.encode(["This is an example sentence", "Each sentence is converted"], normalize_embeddings=True)
    print("| implementation | cosine |\n|---|---|")
    print(f"| sentence-transformers | {float(e[0] @ e[1]):.9f} |")
    for backend in ("fast", "candle"):
        out = os.path.join(args.out, f"reference_pair_{backend}.tsv")
        bftkit_embed(args, pair, out, ["--backend", backend])
        rows = [l.split("\t") for l in open(out).read().splitlines()[1:]]
        v = {r[0]: np.array([float(x) for x in r[1:]]) for r in rows}
        print(f"| bftkit --backend {backend} | {float(v['S1'] @ v['S2']):.9f} |")

    csv.field_size_limit(sys.maxsize)
    profiles = os.path.join(args.data, "gene_profiles_go/gene_profiles_go.tsv")
    rows = list(csv.DictReader(open(profiles), delimiter="\t", quoting=csv.QUOTE_NONE))
    if args.limit:
        rows = rows[: args.limit]
    texts = [r["profile"] for r in rows]

    # Interleaved parts; bftkit reads each part's gene list from a file.
    wall, st_secs, tok, enc_secs = 0.0, 0.0, 0, 0.0
    ours = ref = None
    print("\n| part | profiles | first | bftkit (s) | sentence-transformers (s) | ratio |")
    print("|---|---|---|---|---|---|")
    meta = None
    for part in range(args.rounds):
        idx = list(range(part, len(rows), args.rounds))
        genes_file = os.path.join(args.out, f"profile_genes_part{part}.txt")
        open(genes_file, "w").write("".join(rows[i]["symbol"] + "\n" for i in idx))
        part_out = os.path.join(args.out, f"bftkit_minilm_go_profiles_part{part}.safetensors")

        def run_ours():
            return bftkit_embed(args, profiles, part_out, [genes_file])

        def run_ref():
            t0 = time.perf_counter()
            v = st.encode([texts[i] for i in idx], batch_size=32, normalize_embeddings=True,
                          convert_to_numpy=True)
            return time.perf_counter() - t0, v

        if part % 2 == 0:
            (w, report), (s_secs, v) = run_ours(), run_ref()
        else:
            (s_secs, v), (w, report) = run_ref(), run_ours()
        ids, part_vecs = load(part_out)
        assert ids == [rows[i]["symbol"] for i in idx], "gene order differs"
        with __import__("safetensors").safe_open(part_out, "np") as f:
            meta = f.metadata()
        if ours is None:
            ours = np.zeros((len(rows), part_vecs.shape[1]), dtype=np.float32)
            ref = np.zeros_like(ours)
        ours[idx], ref[idx] = part_vecs, v
        wall, st_secs = wall + w, st_secs + s_secs
        tok, enc_secs = tok + report["tokens"], enc_secs + report["encode_seconds"]
        first = "bftkit" if part % 2 == 0 else "sentence-transformers"
        print(f"| {part + 1} | {len(idx)} | {first} | {w:.1f} | {s_secs:.1f} | {s_secs / w:.2f}x |",
              flush=True)
        os.remove(genes_file)
        os.remove(part_out)
        os.remove(part_out.rsplit(".", 1)[0] + ".embed.json")
    # The whole set, in the source's order, for the other benchmarks.
    from safetensors.numpy import save_file
    meta["gene_ids"] = json.dumps([r["symbol"] for r in rows], separators=(",", ":"))
    save_file({"embeddings": ours}, os.path.join(args.out, "bftkit_minilm_go_profiles.safetensors"),
              metadata=meta)
    cos = np.sum(ours * ref, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))

    n = len(texts)
    print(f"\n## gene_profiles_go: {n} profiles, max length 256\n")
    print("| per-gene cosine (bftkit vs sentence-transformers) | value |\n|---|---|")
    print(f"| min | {cos.min():.7f} |\n| 0.1th percentile | {np.percentile(cos, 0.1):.7f} |")
    print(f"| mean | {cos.mean():.7f} |\n| genes >= 0.9999 | {(cos >= 0.9999).sum()} of {n} |")
    print(f"\n| tool | seconds | texts/s | tokens/s |\n|---|---|---|---|")
    print(f"| bftkit embed (whole process: load, tokenise, encode, write) | {wall:.1f} | {n / wall:.1f} | {tok / wall:.0f} |")
    print(f"| bftkit embed (encode only, from its reports) | {enc_secs:.1f} | "
          f"{n / enc_secs:.1f} | {tok / enc_secs:.0f} |")
    print(f"| sentence-transformers encode() (batch 32, model loaded) | {st_secs:.1f} | {n / st_secs:.1f} | {tok / st_secs:.0f} |")
    print(f"\nspeed ratio (bftkit whole process vs sentence-transformers encode, {args.rounds} parts): "
          f"{st_secs / wall:.2f}x")

    summaries = {}
    for name in ("ncbi_summaries_207genes.json", "ncbi_uniprot_summaries_1915genes.json"):
        summaries.update(json.load(open(os.path.join(args.data, "genept_summaries", name))))
    merged = os.path.join(args.out, "ncbi_summaries_merged.json")
    json.dump(summaries, open(merged, "w"))
    wall, report = bftkit_embed(args, merged, os.path.join(args.out, "bftkit_minilm_ncbi_summaries.safetensors"))
    print(f"\nNCBI summaries: {report['genes_embedded']} genes embedded by bftkit in {wall:.1f}s")


if __name__ == "__main__":
    main()
