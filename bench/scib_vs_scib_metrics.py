#!/usr/bin/env python3
"""bftkit's scIB metrics against scib-metrics (PyPI) on the same embeddings, labels and batches.

1. Synthetic data, generated here with a fixed seed: 20,000 cells, 30 dimensions, 10 labels,
   3 batches (label centres N(0, 3²), batch shifts N(0, 1) scaled by 0.5 after / 3 before
   "integration", unit noise). Both tools get the integrated embedding and the unintegrated one
   (for PCR comparison); wall time of each, in the same run, and per-metric agreement.
2. Optional real data: every `*.scib.safetensors` + `*.obs.tsv` + `*.pre.safetensors` triple
   that `bftkit probe --task integration_citeseq_eccite --export-folds DIR` wrote (RNA and ADT
   cell vectors of the ECCITE-seq PBMCs, modality as batch, gated labels) — agreement only.

Usage: bench/.venv/bin/python bench/scib_vs_scib_metrics.py [--bftkit target/release/bftkit]
       [--cells 20000] [--export DIR]...
       bench/.venv/bin/python bench/scib_vs_scib_metrics.py --quick   # 1,000 synthetic cells and
       the fixtures' integration task (seconds, CI)
scib-metrics computes neighbours with pynndescent (approximate) and clusters with its own JAX
k-means (one greedy k-means++ start); bftkit uses exact neighbours and the best of 10 seeded
k-means++ starts. The
tolerances below say how much that may move each metric.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

# metric name in bftkit's JSON -> (scib-metrics results row, tolerance, why)
METRICS = {
    "isolated_labels": ("Isolated labels", 1e-4, "exact: all pairwise distances"),
    "kmeans_nmi": ("KMeans NMI", 0.05, "k-means starts differ: bftkit the best of 10 seeded k-means++ starts, scib-metrics one"),
    "kmeans_ari": ("KMeans ARI", 0.05, "k-means starts differ (as NMI)"),
    "silhouette_label": ("Silhouette label", 1e-4, "exact"),
    "clisi": ("cLISI", 0.01, "approximate vs exact 90 neighbours"),
    "bras": ("BRAS", 1e-4, "exact"),
    "ilisi": ("iLISI", 0.02, "approximate vs exact 90 neighbours"),
    "kbet": ("KBET", 0.05, "approximate neighbours in both kNN graphs; accept/reject is a threshold"),
    "graph_connectivity": ("Graph connectivity", 0.05, "strong components of a 15-NN graph move with single edges"),
    "pcr_comparison": ("PCR comparison", 1e-4, "exact"),
    "bio": ("Bio conservation", 0.03, "aggregate"),
    "batch": ("Batch correction", 0.03, "aggregate"),
    "total": ("Total", 0.03, "aggregate"),
}


def save_embeddings(path, ids, x):
    from safetensors.numpy import save_file

    save_file({"embeddings": np.ascontiguousarray(x, dtype=np.float32)}, path,
              metadata={"gene_ids": json.dumps(list(ids))})


def load_embeddings(path):
    from safetensors import safe_open

    with safe_open(path, "np") as f:
        ids = json.loads(f.metadata()["gene_ids"])
        return ids, f.get_tensor("embeddings").astype(np.float32)


def synthetic(n, seed=0):
    rng = np.random.default_rng(seed)
    d, n_labels, n_batches = 30, 10, 3
    labels = rng.integers(0, n_labels, n)
    batches = rng.integers(0, n_batches, n)
    centres = rng.normal(0, 3, (n_labels, d))
    shifts = rng.normal(0, 1, (n_batches, d))
    noise = rng.normal(0, 1, (n, d))
    x = centres[labels] + 0.5 * shifts[batches] + noise
    pre = centres[labels] + 3.0 * shifts[batches] + noise
    return x, pre, [f"type{v}" for v in labels], [f"batch{v}" for v in batches]


def run_scib_metrics(x, pre, labels, batches):
    import anndata as ad
    import pandas as pd
    from scib_metrics.benchmark import Benchmarker

    obs = pd.DataFrame({"label": labels, "batch": batches}, index=[str(i) for i in range(len(labels))])
    a = ad.AnnData(np.zeros((len(labels), 1), dtype=np.float32), obs=obs)
    a.obsm["emb"] = np.asarray(x, dtype=np.float32)
    a.obsm["pre"] = np.asarray(pre, dtype=np.float32)
    t = time.perf_counter()
    bm = Benchmarker(a, batch_key="batch", label_key="label", embedding_obsm_keys=["emb"],
                     pre_integrated_embedding_obsm_key="pre", n_jobs=os.cpu_count(), progress_bar=False)
    bm.benchmark()
    wall = time.perf_counter() - t
    res = bm.get_results(min_max_scale=False, clean_names=True)
    return {row: float(res.loc["emb", row]) for row in res.columns if row != "Metric Type"}, wall


def run_bftkit(bftkit, emb, obs, pre, out):
    t = time.perf_counter()
    subprocess.run([bftkit, "scib", "--embeddings", emb, "--obs", obs, "--pre", pre, "--out", out],
                   check=True, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    return json.load(open(out)), wall


def compare(name, ours, theirs, exact_only=False):
    """Prints the agreement table; whether every metric is within tolerance (with `exact_only`,
    every exact one: the others' tolerances are calibrated for 20,000 cells, and a handful of
    cells moves them further)."""
    print(f"\n{name}")
    print(f"| metric | bftkit | scib-metrics | |diff| | tolerance | within | reason |")
    print("|---|---|---|---|---|---|---|")
    ok_all = True
    for key, (row, tol, why) in METRICS.items():
        a, b = ours[key], theirs.get(row, float("nan"))
        diff = abs(a - b)
        ok = diff <= tol
        ok_all &= ok or (exact_only and tol > 1e-4)
        print(f"| {key} | {a:.4f} | {b:.4f} | {diff:.4f} | {tol:g} | {'yes' if ok else 'NO'} | {why} |")
    return ok_all


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bftkit", default="target/release/bftkit")
    ap.add_argument("--cells", type=int, default=20000)
    ap.add_argument("--export", action="append", default=[],
                    help="a folder written by `bftkit probe --export-folds` for the integration task")
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true",
                    help="1,000 synthetic cells and the fixtures' integration task (seconds)")
    args = ap.parse_args()
    if args.quick:
        import tempfile

        args.out = args.out or tempfile.mkdtemp(prefix="bftkit-bench-")
        args.cells = 1000
        export = os.path.join(args.out, "export")
        subprocess.run([args.bftkit, "probe", "--task", "integration_citeseq_eccite",
                        "--data", "fixtures/data", "--embeddings", "fixtures/embeddings.tsv",
                        "--export-folds", export, "--out", os.path.join(args.out, "probe.json")],
                       check=True, stdout=subprocess.DEVNULL)
        args.export.append(export)
    args.out = args.out or "bench/out/scib"
    os.makedirs(args.out, exist_ok=True)
    ok = True

    x, pre, labels, batches = synthetic(args.cells)
    ids = [f"cell{i}" for i in range(len(labels))]
    emb, pre_path, obs = (os.path.join(args.out, f) for f in ("x.safetensors", "pre.safetensors", "obs.tsv"))
    save_embeddings(emb, ids, x)
    save_embeddings(pre_path, ids, pre)
    with open(obs, "w") as f:
        f.write("cell\tlabel\tbatch\n")
        for c, l, b in zip(ids, labels, batches):
            f.write(f"{c}\t{l}\t{b}\n")
    ours, t_ours = run_bftkit(args.bftkit, emb, obs, pre_path, os.path.join(args.out, "bftkit.json"))
    theirs, t_theirs = run_scib_metrics(x, pre, labels, batches)
    ok &= compare(f"synthetic: {args.cells} cells x 30 dims, 10 labels, 3 batches", ours["scores"],
                  theirs, exact_only=args.quick)
    print(f"\nwall time: bftkit {t_ours:.1f} s, scib-metrics {t_theirs:.1f} s "
          f"(ratio {t_ours / t_theirs:.3f}; {os.cpu_count()} cores)")
    print("bftkit phases (s):", json.dumps({k: round(v, 2) for k, v in ours["seconds"].items()}))

    for folder in args.export:
        for f in sorted(os.listdir(folder)):
            if not f.endswith(".scib.safetensors"):
                continue
            stem = os.path.join(folder, f[: -len(".scib.safetensors")])
            ids, xe = load_embeddings(stem + ".scib.safetensors")
            pids, xp = load_embeddings(stem + ".pre.safetensors")
            assert ids == pids
            import csv

            rows = {r["cell"]: r for r in csv.DictReader(open(stem + ".obs.tsv"), delimiter="\t")}
            lab = [rows[i]["label"] for i in ids]
            bat = [rows[i]["batch"] for i in ids]
            ours, _ = run_bftkit(args.bftkit, stem + ".scib.safetensors", stem + ".obs.tsv",
                                 stem + ".pre.safetensors", stem + ".bftkit.json")
            theirs, _ = run_scib_metrics(xe, xp, lab, bat)
            ok &= compare(f"{os.path.basename(stem)}: {len(ids)} rows", ours["scores"], theirs,
                          exact_only=args.quick)
    scope = " (quick: the exact metrics gate)" if args.quick else ""
    print(("\nALL WITHIN TOLERANCE" if ok else "\nSOME METRICS OUTSIDE TOLERANCE") + scope)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
