"""`bftkit umap` against umap-learn on the 20,598 x 384 gene embeddings (all-MiniLM-L6-v2 over
gene_profiles_go): wall time, and trustworthiness (15 neighbours, scikit-learn's definition) on
the same seeded 5,000-point sample of both layouts.

Timing: bftkit is timed as a whole process (reading the file included). umap-learn is timed on
fit_transform only, after warm-up fits (seeded and unseeded) on 5,000 points in the same process
— above umap-learn's 4,096-point switch to NN-descent — so numba's one-off compilation of every
code path timed (~1 min) and the imports are not counted. Both seeded (umap-learn then runs
single-threaded, as bftkit's SGD does); umap-learn unseeded (parallel) is timed too.

usage: bench/.venv/bin/python bench/umap_vs_umap_learn.py [--embeddings FILE]
       bench/.venv/bin/python bench/umap_vs_umap_learn.py --quick   # fixtures, seconds (CI)
"""
import argparse
import os
import sys
import subprocess
import time

import numpy as np
from sklearn.manifold import trustworthiness

from common import FIXTURES, load_embeddings as load, quick_out

# Largest trustworthiness deficit of bftkit against umap-learn accepted (exit status 1 beyond).
TOLERANCE = 0.02


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bftkit", default="target/release/bftkit")
    ap.add_argument("--embeddings", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="the synthetic fixtures (seconds): checks that the script still works")
    args = ap.parse_args()
    if args.quick:
        args.embeddings = args.embeddings or os.path.join(FIXTURES, "embeddings.tsv")
        quick_out(args)
    args.embeddings = args.embeddings or "bench/out/bftkit_minilm_go_profiles.safetensors"
    args.out = args.out or "bench/out"
    os.makedirs(args.out, exist_ok=True)
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
    if not args.quick:
        umap.UMAP().fit_transform(x[:5000])
    t0 = time.perf_counter()
    y_u = umap.UMAP(random_state=args.seed).fit_transform(x)
    t_seeded = time.perf_counter() - t0
    t_parallel = float("nan")
    if not args.quick:
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
    if tw_b < tw_u - TOLERANCE:
        print(f"bftkit's layout is less trustworthy than umap-learn's by more than {TOLERANCE}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
