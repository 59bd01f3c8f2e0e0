"""The cell-type task (docs/tasks.md) cross-checked against scikit-learn and numpy.

1. GenePT-w cell vectors recomputed in numpy from the same expression CSV and embeddings
   (genes matched by exact symbol), compared with bftkit's (`--export-folds`): cosine per cell.
2. On bftkit's cell vectors and folds: scikit-learn's one-vs-rest LogisticRegression (C=1,
   standardised), 10-NN cosine classifier — accuracy and macro-F1 per fold, compared.
3. ARI and NMI of bftkit's own k-means labels recomputed by scikit-learn (metric check), and
   scikit-learn's KMeans(n_init=10, random_state=0) for orientation.

usage: bench/.venv/bin/python bench/cells_vs_sklearn.py [--embeddings FILE] [--data DIR]
       bench/.venv/bin/python bench/cells_vs_sklearn.py --quick   # fixtures, seconds (CI)
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, adjusted_rand_score, f1_score, normalized_mutual_info_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from common import FIXTURES, load_embeddings, quick_out

# Accepted differences: GenePT-w vectors (cosine), and mean accuracy / macro-F1 of the logistic
# regression on the same vectors and folds (exit status 1 beyond them).
MIN_COSINE = 0.9999
TOLERANCE = 0.02


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bftkit", default="target/release/bftkit")
    ap.add_argument("--embeddings", default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true",
                    help="the synthetic fixtures (seconds): checks that the script still works")
    args = ap.parse_args()
    if args.quick:
        args.data = args.data or os.path.join(FIXTURES, "data")
        args.embeddings = args.embeddings or os.path.join(FIXTURES, "embeddings.tsv")
        quick_out(args)
    args.data = args.data or os.environ.get("BFTKIT_DATA", "../shared/data")
    args.embeddings = args.embeddings or "bench/out/bftkit_minilm_go_profiles.safetensors"
    args.out = args.out or "bench/out"
    os.makedirs(args.out, exist_ok=True)
    folds_dir = os.path.join(args.out, "folds_cells")
    res = os.path.join(args.out, "cells.json")
    subprocess.run([args.bftkit, "probe", "--task", "cell_type_pbmc68k", "--data", args.data,
                    "--embeddings", args.embeddings, "--export-folds", folds_dir, "--out", res],
                   check=True, stdout=subprocess.DEVNULL)
    r = json.load(open(res))["results"][0]
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(folds_dir, "cell_type_pbmc68k.tsv"))][1:]
    cells = [x[0] for x in rows]
    labels = np.array([x[1] for x in rows])
    fold = np.array([int(x[2]) for x in rows])
    km = np.array([int(x[3]) for x in rows])
    z = np.array([[float(v) for v in x[4:]] for x in rows])

    # 1. GenePT-w in numpy
    ids, emb = load_embeddings(args.embeddings)
    ids = [g.upper() for g in ids]
    emb = emb.astype(np.float64)
    index = {g: i for i, g in enumerate(ids)}
    path = os.path.join(args.data, "pbmc68k_reduced/pbmc68k_reduced_raw_lognorm.csv")
    head = open(path).readline().rstrip("\n").split(",")[1:]
    x = np.loadtxt(path, delimiter=",", skiprows=1, usecols=range(1, len(head) + 1))
    names = [l.split(",", 1)[0] for l in open(path)][1:]
    order = [names.index(c) for c in cells]
    x = x[order]
    hit = [j for j, g in enumerate(head) if g.upper() in index]
    w = x[:, hit] @ emb[[index[head[j].upper()] for j in hit]]
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    cos = np.sum(w * z, axis=1) / np.linalg.norm(z, axis=1)
    print(f"genes matched by exact symbol: {len(hit)}/{len(head)} (bftkit: "
          f"{r['cell_coverage']['genes_matched']}/{r['cell_coverage']['genes_total']}, "
          f"expression mass {r['cell_coverage']['mass_fraction']:.4f})")
    print(f"GenePT-w numpy vs bftkit: min cosine {cos.min():.7f}, mean {cos.mean():.7f}\n")

    # 2. classifiers on the same vectors and folds
    classes = sorted(set(labels))
    y = np.array([classes.index(l) for l in labels])
    print("| fold | LR acc bftkit | LR acc sklearn | LR macro-F1 bftkit | LR macro-F1 sklearn "
          "| 10-NN acc sklearn | 10-NN macro-F1 sklearn |")
    print("|---|---|---|---|---|---|---|")
    sk = {"lr_acc": [], "lr_f1": [], "knn_acc": [], "knn_f1": []}
    for f_ in r["scores"]["folds"]:
        k = f_["fold"]
        tr, te = fold != k, fold == k
        sc = StandardScaler().fit(z[tr])
        lr = OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=1000)).fit(sc.transform(z[tr]), y[tr])
        p = lr.predict(sc.transform(z[te]))
        knn = KNeighborsClassifier(n_neighbors=10, metric="cosine").fit(z[tr], y[tr])
        q = knn.predict(z[te])
        vals = (accuracy_score(y[te], p), f1_score(y[te], p, average="macro"),
                accuracy_score(y[te], q), f1_score(y[te], q, average="macro"))
        for key, v in zip(sk, vals):
            sk[key].append(v)
        print(f"| {k} | {f_['accuracy']:.4f} | {vals[0]:.4f} | {f_['f1']:.4f} | {vals[1]:.4f} "
              f"| {vals[2]:.4f} | {vals[3]:.4f} |")
    e = r["extra"]
    print(f"\nmeans: LR accuracy bftkit {r['scores']['accuracy']['mean']:.4f} vs sklearn "
          f"{np.mean(sk['lr_acc']):.4f}; LR macro-F1 {r['scores']['f1']['mean']:.4f} vs "
          f"{np.mean(sk['lr_f1']):.4f}; 10-NN accuracy {e['knn10_accuracy']['mean']:.4f} vs "
          f"{np.mean(sk['knn_acc']):.4f}; 10-NN macro-F1 {e['knn10_macro_f1']['mean']:.4f} vs "
          f"{np.mean(sk['knn_f1']):.4f}")

    # 3. clustering
    print(f"bftkit k-means: ARI {e['kmeans_ari']['mean']:.6f} (sklearn on the same labels "
          f"{adjusted_rand_score(y, km):.6f}), NMI {e['kmeans_nmi']['mean']:.6f} (sklearn "
          f"{normalized_mutual_info_score(y, km):.6f})")
    skm = KMeans(n_clusters=len(classes), n_init=10, random_state=0).fit_predict(z)
    print(f"sklearn KMeans(n_init=10, random_state=0): ARI {adjusted_rand_score(y, skm):.4f}, "
          f"NMI {normalized_mutual_info_score(y, skm):.4f}")
    gaps = [abs(r["scores"]["accuracy"]["mean"] - np.mean(sk["lr_acc"])),
            abs(r["scores"]["f1"]["mean"] - np.mean(sk["lr_f1"]))]
    if cos.min() < MIN_COSINE or max(gaps) > TOLERANCE:
        print(f"DISAGREEMENT: min cosine {cos.min():.6f} (>= {MIN_COSINE} expected), "
              f"LR gaps {max(gaps):.4f} (<= {TOLERANCE} expected)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
