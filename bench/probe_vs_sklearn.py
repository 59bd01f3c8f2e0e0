"""Cross-checks `bftkit probe` against scikit-learn and times the full probe suite against it.

For each embedding file, bftkit runs every task with data present and exports each task's examples
and folds (`--export-folds`); scikit-learn then fits StandardScaler + LogisticRegression(C=1,
max_iter=1000, lbfgs) on exactly the same folds and features (sum for pairs), and the per-task
mean ROC-AUCs are compared. Then, on the first embedding file, the full suite is timed end to end
in bftkit (the whole process: reading data and embeddings included) against scikit-learn's
fitting and scoring alone (data already in memory), same folds, same machine, same run.

Only the gene and gene-pair tasks are compared here (the cell task has cells_vs_sklearn.py, the
integration task scib_vs_scib_metrics.py); the timed suite runs every task.

usage: bench/.venv/bin/python bench/probe_vs_sklearn.py --data ../shared/data \
           --embeddings bench/out/minilm_go_profiles.safetensors [more.safetensors ...]
       bench/.venv/bin/python bench/probe_vs_sklearn.py --quick   # fixtures, seconds (CI)
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_info

from common import FIXTURES, load_embeddings as load_with_ids, quick_out

# Largest |bftkit - scikit-learn| mean ROC-AUC difference accepted (exit status 1 beyond it).
TOLERANCE = 0.01


def load_embeddings(path):
    return load_with_ids(path)[1]


def load_folds(path):
    with open(path) as f:
        r = csv.reader(f, delimiter="\t")
        header = next(r)
        rows = np.array([[int(v) for v in row] for row in r], dtype=np.int64)
    pair = header[1] == "gene_b"
    genes = rows[:, :2] if pair else rows[:, :1]
    return genes, rows[:, -2].astype(bool), rows[:, -1]


def features(emb, genes):
    if genes.shape[1] == 2:
        return emb[genes[:, 0]] + emb[genes[:, 1]]
    return emb[genes[:, 0]]


def sklearn_task(emb, genes, labels, test_fold):
    """Per-fold ROC-AUC and iterations with scikit-learn on bftkit's folds."""
    x = features(emb, genes)
    n_folds = int(test_fold.max()) + 1
    aucs, iters = [], []
    for f in range(n_folds):
        train, test = test_fold != f, test_fold == f
        scaler = StandardScaler().fit(x[train])
        model = LogisticRegression(C=1.0, max_iter=1000)
        model.fit(scaler.transform(x[train]), labels[train])
        p = model.predict_proba(scaler.transform(x[test]))[:, 1]
        aucs.append(roc_auc_score(labels[test], p))
        iters.append(int(model.n_iter_[0]))
    return aucs, iters


def run_bftkit(args, emb_path, extra):
    cmd = [args.bftkit, "probe", "--task", "all", "--data", args.data, "--embeddings", emb_path,
           "--seed", "0"] + extra
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bftkit", default="target/release/bftkit")
    ap.add_argument("--data", default=None)
    ap.add_argument("--embeddings", nargs="+", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true",
                    help="the synthetic fixtures (seconds): checks that the script still works")
    args = ap.parse_args()
    if args.quick:
        args.data = args.data or os.path.join(FIXTURES, "data")
        args.embeddings = args.embeddings or [os.path.join(FIXTURES, "embeddings.tsv")]
        quick_out(args)
    args.data = args.data or os.environ.get("BFTKIT_DATA", "../shared/data")
    args.embeddings = args.embeddings or ["bench/out/minilm_go_profiles.safetensors"]
    args.out = args.out or "bench/out"
    os.makedirs(args.out, exist_ok=True)
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}; BLAS: "
          + ", ".join(f"{i['internal_api']} {i.get('num_threads')} threads" for i in threadpool_info()))

    print("\n## Agreement (mean ROC-AUC over the same folds)\n")
    print("| embeddings | task | n | folds | bftkit | scikit-learn | abs diff | bftkit iter (max) | sklearn iter (max) |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    timing = None
    for emb_path in args.embeddings:
        name = os.path.splitext(os.path.basename(emb_path))[0]
        folds_dir = os.path.join(args.out, f"folds_{name}")
        json_path = os.path.join(args.out, f"probe_{name}.json")
        run_bftkit(args, emb_path, ["--export-folds", folds_dir, "--out", json_path])
        report = json.load(open(json_path))
        emb = load_embeddings(emb_path)
        sk_total = 0.0
        for r in report["results"]:
            if r["group"] not in ("gene", "pair"):
                continue
            genes, labels, test_fold = load_folds(os.path.join(folds_dir, r["task"] + ".tsv"))
            t0 = time.perf_counter()
            aucs, iters = sklearn_task(emb, genes, labels, test_fold)
            sk_total += time.perf_counter() - t0
            ours = r["scores"]["roc_auc"]["mean"]
            theirs = float(np.mean(aucs))
            worst = max(worst, abs(ours - theirs))
            print(f"| {name} | {r['task']} | {len(labels)} | {r['n_folds']} | {ours:.4f} | {theirs:.4f} | "
                  f"{abs(ours - theirs):.4f} | {r['scores']['max_iterations']} | {max(iters)} |")
        if timing is None:
            timing = (name, emb_path, sk_total)
    print(f"\nlargest |bftkit - scikit-learn| ROC-AUC difference: {worst:.4f}")

    name, emb_path, sk_total = timing
    t_ours = run_bftkit(args, emb_path, [])
    print(f"\n## Speed: full suite on {name} ({load_embeddings(emb_path).shape[0]} x "
          f"{load_embeddings(emb_path).shape[1]})\n")
    print("| tool | wall time (s) |")
    print("|---|---|")
    print(f"| bftkit probe --task all (whole process) | {t_ours:.1f} |")
    print(f"| scikit-learn LogisticRegression(max_iter=1000), fit+predict only | {sk_total:.1f} |")
    print(f"\nbftkit / scikit-learn wall-time ratio: {t_ours / sk_total:.3f} "
          f"(scikit-learn takes {sk_total / t_ours:.2f}x as long)")
    if worst > TOLERANCE:
        print(f"DISAGREEMENT: {worst:.4f} > {TOLERANCE}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
