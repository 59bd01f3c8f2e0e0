"""Parity and speed of `bftkit embed` against sentence-transformers (all-MiniLM-L6-v2, CPU).

1. The reference pair: cosine("This is an example sentence", "Each sentence is converted").
2. All 20,598 gene profiles of gene_profiles_go encoded by bftkit (whole process timed) and by
   sentence-transformers (encode() timed, model already loaded), same max length (256), same
   machine, same run; per-gene cosine between the two.
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
    genes_file = None
    if args.limit:
        rows = rows[: args.limit]
        genes_file = os.path.join(args.out, "profile_genes.txt")
        open(genes_file, "w").write("".join(r["symbol"] + "\n" for r in rows))
    texts = [r["profile"] for r in rows]

    ours_path = os.path.join(args.out, "bftkit_minilm_go_profiles.safetensors")
    extra = [genes_file] if genes_file else []
    wall, report = bftkit_embed(args, profiles, ours_path, extra)
    t0 = time.perf_counter()
    ref = st.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    st_secs = time.perf_counter() - t0
    ids, ours = load(ours_path)
    assert ids == [r["symbol"] for r in rows], "gene order differs"
    cos = np.sum(ours * ref, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))

    n = len(texts)
    print(f"\n## gene_profiles_go: {n} profiles, max length 256\n")
    print("| per-gene cosine (bftkit vs sentence-transformers) | value |\n|---|---|")
    print(f"| min | {cos.min():.7f} |\n| 0.1th percentile | {np.percentile(cos, 0.1):.7f} |")
    print(f"| mean | {cos.mean():.7f} |\n| genes >= 0.9999 | {(cos >= 0.9999).sum()} of {n} |")
    print(f"\n| tool | seconds | texts/s | tokens/s |\n|---|---|---|---|")
    tok = report["tokens"]
    print(f"| bftkit embed (whole process: load, tokenise, encode, write) | {wall:.1f} | {n / wall:.1f} | {tok / wall:.0f} |")
    print(f"| bftkit embed (encode only, from its report) | {report['encode_seconds']:.1f} | "
          f"{report['texts_per_second']:.1f} | {report['tokens_per_second']:.0f} |")
    print(f"| sentence-transformers encode() (batch 32, model loaded) | {st_secs:.1f} | {n / st_secs:.1f} | {tok / st_secs:.0f} |")
    print(f"\nspeed ratio (bftkit whole process vs sentence-transformers encode): {st_secs / wall:.2f}x")

    summaries = {}
    for name in ("ncbi_summaries_207genes.json", "ncbi_uniprot_summaries_1915genes.json"):
        summaries.update(json.load(open(os.path.join(args.data, "genept_summaries", name))))
    merged = os.path.join(args.out, "ncbi_summaries_merged.json")
    json.dump(summaries, open(merged, "w"))
    wall, report = bftkit_embed(args, merged, os.path.join(args.out, "bftkit_minilm_ncbi_summaries.safetensors"))
    print(f"\nNCBI summaries: {report['genes_embedded']} genes embedded by bftkit in {wall:.1f}s")


if __name__ == "__main__":
    main()
