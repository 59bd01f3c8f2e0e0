"""`bftkit umap` against umap-learn on the 20,598 x 384 gene embeddings (all-MiniLM-L6-v2 over
gene_profiles_go): wall time, and trustworthiness (15 neighbours, scikit-learn's definition) on
the same seeded 5,000-point sample of both layouts.

Timing: bftkit is timed as a whole process (reading the file included). umap-learn is timed on
fit_transform only, after warm-up fits (seeded and unseeded) on 5,000 points in the same process
— above umap-learn's 4,096-point switch to NN-descent — so numba's one-off compilation of every
code path timed (~1 min) and the imports are not counted. Both seeded (umap-learn then runs
single-threaded, as bftkit's SGD does); umap-learn unseeded (parallel) is timed too.

usage: bench/.venv/bin/python bench/umap_vs_umap_learn.py [--embeddings FILE]
"""
import argparse
import json
import os
import subprocess
import time

import numpy as np
from safetensors import safe_open
from sklearn.manifold import trustworthiness


def load(path):
    with safe_open(path, "np") as f:
        return json.loads(f.metadata()["gene_ids"]), f.get_tensor("embeddings")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bftkit", default="target/release/bftkit")
    ap.add_argument("--embeddings", default="bench/out/bftkit_minilm_go_profiles.safetensors")
    ap.add_argument("--out", default="bench/out")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import umap  # noqa: E402  (slow import, after argument parsing)

    ids, x = load(args.embeddings)
    x = np.asarray(x, dtype=np.float32)
    n, d = x.shape
    print(f"umap-learn {umap.__version__}; data {n} x {d} ({args.embeddings})")

    coords = os.path.join(args.out, "umap_bftkit.tsv")
    t0 = time.perf_counter()
    subprocess.run([args.bftkit, "umap", "--embeddings", args.embeddings, "--out", coords,
                    "--seed", str(args.seed)], check=True, stdout=subprocess.DEVNULL)
    t_bftkit = time.perf_counter() - t0
    y_b = np.loadtxt(coords, delimiter="\t", skiprows=1, usecols=(1, 2))

    umap.UMAP(random_state=0).fit_transform(x[:5000])  # warm-up: numba compilation
    umap.UMAP().fit_transform(x[:5000])
    t0 = time.perf_counter()
    y_u = umap.UMAP(random_state=args.seed).fit_transform(x)
    t_seeded = time.perf_counter() - t0
    t0 = time.perf_counter()
    umap.UMAP().fit_transform(x)
    t_parallel = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    sample = rng.choice(n, size=min(5000, n), replace=False)
    tw_b = trustworthiness(x[sample], y_b[sample], n_neighbors=15)
    tw_u = trustworthiness(x[sample], y_u[sample], n_neighbors=15)

    print("\n| implementation | wall time (s) | trustworthiness@15 (5,000-point sample) |")
    print("|---|---|---|")
    print(f"| bftkit umap (seed {args.seed}, whole process) | {t_bftkit:.2f} | {tw_b:.4f} |")
    print(f"| umap-learn, random_state={args.seed} (warm, fit_transform) | {t_seeded:.2f} | {tw_u:.4f} |")
    print(f"| umap-learn, unseeded, parallel (warm) | {t_parallel:.2f} | – |")
    print(f"\nratio bftkit / umap-learn seeded: {t_bftkit / t_seeded:.3f}; "
          f"bftkit / umap-learn parallel: {t_bftkit / t_parallel:.3f}; "
          f"trustworthiness difference: {tw_b - tw_u:+.4f}")


if __name__ == "__main__":
    main()
