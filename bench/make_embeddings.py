"""Reference gene embeddings made with sentence-transformers (the GenePT protocol).

Encodes one text per gene with all-MiniLM-L6-v2 (mean pooling over the attention mask, L2
normalisation, max_seq_length 256) and writes a safetensors file in bftkit's embedding format
(tensor `embeddings`, metadata `gene_ids` and `source`). Used as the peer for `bftkit embed` and,
until that exists, as the input of the probe benchmark.

usage: make_embeddings.py --model models/all-MiniLM-L6-v2 --data ../shared/data --out bench/out
"""
import argparse
import csv
import json
import os
import sys
import time

import numpy as np
from safetensors.numpy import save_file
from sentence_transformers import SentenceTransformer


def load_sources(data):
    csv.field_size_limit(sys.maxsize)
    sources = {}
    with open(os.path.join(data, "gene_profiles_go/gene_profiles_go.tsv"), newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        sources["minilm_go_profiles"] = {r["symbol"]: r["profile"] for r in rows}
    summaries = {}
    for name in ("ncbi_summaries_207genes.json", "ncbi_uniprot_summaries_1915genes.json"):
        with open(os.path.join(data, "genept_summaries", name)) as f:
            summaries.update(json.load(f))
    sources["minilm_ncbi_summaries"] = summaries
    return sources


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--data", default=os.environ.get("BFTKIT_DATA", "../shared/data"))
    ap.add_argument("--out", default="bench/out")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model = SentenceTransformer(args.model, device="cpu")
    model.max_seq_length = 256
    for name, texts in load_sources(args.data).items():
        genes = list(texts)
        t0 = time.time()
        emb = model.encode([texts[g] for g in genes], batch_size=args.batch_size,
                           normalize_embeddings=True, convert_to_numpy=True)
        dt = time.time() - t0
        path = os.path.join(args.out, f"{name}.safetensors")
        save_file({"embeddings": emb.astype(np.float32)}, path, metadata={
            "gene_ids": json.dumps(genes),
            "source": f"sentence-transformers all-MiniLM-L6-v2 (max_seq_length 256, mean pool, L2) over {name}",
        })
        print(f"{path}: {len(genes)} genes x {emb.shape[1]} in {dt:.1f}s ({len(genes)/dt:.1f} texts/s)")


if __name__ == "__main__":
    main()
