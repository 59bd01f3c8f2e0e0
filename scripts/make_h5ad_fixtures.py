#!/usr/bin/env python3
"""Writes the small .h5ad files of fixtures/h5ad/ and what anndata itself reads from them
(expected.json), so bftkit's reader is checked against the reference implementation in
`cargo test` without Python. Needs anndata, h5py, scipy (bench/.venv has them).

  bench/.venv/bin/python scripts/make_h5ad_fixtures.py

Files: dense.h5ad (dense X, categorical and string obs columns), csr_raw.h5ad (CSR X, gzip,
and a raw with more genes), csc.h5ad (CSC X), legacy.h5ad (the older layout of scanpy's bundled
pbmc68k_reduced: compound obs/var tables, raw.X with h5sparse attributes, categories in uns),
layers.h5ad (log-normalised dense X, raw counts in a CSR layer `counts`, as the NeurIPS 2021
CITE-seq files), bmmc_rna.h5ad + bmmc_adt.h5ad (the synthetic stand-in for those files that
`bftkit fixtures` writes, see below), bad_shape.h5ad (X does not match obs x var: must be refused).
"""
import json
import os

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "h5ad")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(20261128)
n, m = 7, 5
X = (rng.poisson(1.2, (n, m)) * rng.uniform(0.5, 2.0, (n, m))).round(3).astype(np.float32)
obs = pd.DataFrame(
    {
        "cell_type": pd.Categorical(["B", "T", "T", "NK", "B", "T", "NK"]),
        "donor": pd.array(["d1", "d2", "d1", "d1", "d2", "d2", "d3"], dtype=object),
        "n_counts": np.arange(n, dtype=np.int64) * 10,
    },
    index=[f"cell{i}" for i in range(n)],
)
var = pd.DataFrame(index=["CD19", "CD3E", "NCAM1", "MS4A1", "GNLY"])
expected = {}


def record(name, a, use_raw):
    src = a.raw.to_adata() if (use_raw and a.raw is not None) else a
    dense = src.X.toarray() if sp.issparse(src.X) else np.asarray(src.X)
    expected[name] = {
        "cells": list(map(str, a.obs_names)),
        "genes": list(map(str, src.var_names)),
        "X": dense.astype(float).tolist(),
        "obs": {c: [("" if pd.isna(v) else str(v)) for v in a.obs[c]] for c in a.obs.columns
                if not pd.api.types.is_numeric_dtype(a.obs[c])},
        "used_raw": bool(use_raw and a.raw is not None),
    }


a = ad.AnnData(X=X, obs=obs, var=var)
a.write_h5ad(os.path.join(OUT, "dense.h5ad"))
record("dense.h5ad", ad.read_h5ad(os.path.join(OUT, "dense.h5ad")), True)

b = a.copy()
wide = ad.AnnData(X=np.hstack([X, X[:, :2] + 1]).astype(np.float32), obs=obs,
                  var=pd.DataFrame(index=list(var.index) + ["CD14", "LYZ"]))
b.raw = wide
b.X = sp.csr_matrix(X)
b.write_h5ad(os.path.join(OUT, "csr_raw.h5ad"), compression="gzip")
record("csr_raw.h5ad", ad.read_h5ad(os.path.join(OUT, "csr_raw.h5ad")), True)

c = a.copy()
c.X = sp.csc_matrix(X)
c.write_h5ad(os.path.join(OUT, "csc.h5ad"))
record("csc.h5ad", ad.read_h5ad(os.path.join(OUT, "csc.h5ad")), True)

# The older layout, written with h5py as scanpy's pbmc68k_reduced.h5ad stores it.
path = os.path.join(OUT, "legacy.h5ad")
with h5py.File(path, "w") as f:
    f.create_dataset("X", data=X, compression="gzip")
    codes = a.obs["cell_type"].cat.codes.to_numpy().astype(np.int8)
    o = np.zeros(n, dtype=[("index", "S16"), ("bulk_labels", "i1"), ("n_genes", "<i8"), ("percent_mito", "<f4")])
    o["index"] = [s.encode() for s in a.obs_names]
    o["bulk_labels"] = codes
    o["n_genes"] = (X > 0).sum(axis=1)
    o["percent_mito"] = 0.5
    f.create_dataset("obs", data=o, compression="gzip")
    f.create_dataset("uns/bulk_labels_categories",
                     data=np.array([s.encode() for s in a.obs["cell_type"].cat.categories], dtype="S28"))
    v = np.zeros(m, dtype=[("index", "S13"), ("n_counts", "<f4")])
    v["index"] = [s.encode() for s in var.index]
    f.create_dataset("var", data=v)
    raw = sp.csr_matrix(np.hstack([X, X[:, :2] + 1]).astype(np.float32))
    g = f.create_group("raw.X")
    g.attrs["h5sparse_format"] = "csr"
    g.attrs["h5sparse_shape"] = np.array([n, m + 2])
    g.create_dataset("data", data=raw.data, compression="gzip")
    g.create_dataset("indices", data=raw.indices.astype(np.int32))
    g.create_dataset("indptr", data=raw.indptr.astype(np.int32))
    rv = np.zeros(m + 2, dtype=[("index", "S13")])
    rv["index"] = [s.encode() for s in list(var.index) + ["CD14", "LYZ"]]
    f.create_dataset("raw.var", data=rv)
expected["legacy.h5ad"] = {
    "cells": list(a.obs_names),
    "genes": list(var.index) + ["CD14", "LYZ"],
    "X": raw.toarray().astype(float).tolist(),
    "obs": {"bulk_labels": [str(v) for v in a.obs["cell_type"]]},
    "used_raw": True,
}

d = ad.AnnData(X=np.log1p(X).astype(np.float32), obs=obs, var=var)
counts = np.rint(X * 3).astype(np.float32)
d.layers["counts"] = sp.csr_matrix(counts)
d.write_h5ad(os.path.join(OUT, "layers.h5ad"))
back = ad.read_h5ad(os.path.join(OUT, "layers.h5ad"))
expected["layers.h5ad"] = {
    "cells": list(map(str, back.obs_names)),
    "genes": list(map(str, back.var_names)),
    "X": back.layers["counts"].toarray().astype(float).tolist(),
    "obs": {c: [("" if pd.isna(v) else str(v)) for v in back.obs[c]] for c in back.obs.columns
            if not pd.api.types.is_numeric_dtype(back.obs[c])},
    "used_raw": False,
    "layer": "counts",
}

# The NeurIPS 2021 BMMC CITE-seq layout (integration_citeseq_bmmc runs on it): 4 planted types
# of 15 cells in 2 sequencing batches; RNA over 40 fixture genes (a block of 10 per type at 8x
# the background) and the types' marker genes (by the aliases the fixture gene map gives them);
# ADT over 9 antibodies of the real panel (CD57 unmapped) at Poisson(300) on the type's markers
# and Poisson(3) elsewhere; raw counts in the `counts` layer, X log-normalised; published-style
# obs `cell_type` and `batch`. Not recorded in expected.json (files.len() stays the readers').
brng = np.random.default_rng(20261205)
types = ["B", "CD14+ Mono", "CD8+ T", "NK"]
markers = {"B": ["CD19", "HLA-DR", "CD45"], "CD14+ Mono": ["CD14", "CD11b", "HLA-DR", "CD45"],
           "CD8+ T": ["CD3", "CD8", "CD45"], "NK": ["CD56", "CD45"]}
marker_genes = {"B": ["CD19", "HLA-DRA"], "CD14+ Mono": ["CD14", "ITGAM", "HLA-DRA"],
                "CD8+ T": ["CD3E", "CD8A"], "NK": ["NCAM1"]}
antibodies = ["CD19", "CD14", "CD3", "CD8", "CD56", "HLA-DR", "CD11b", "CD45", "CD57"]
genes = [f"GENE{i:04d}" for i in range(40)] + ["CD19", "HLA-DRA", "CD14", "ITGAM", "CD3E", "CD8A", "NCAM1"]
cells = [f"cell{i:02d}-s1d{1 + i % 2}" for i in range(60)]
cell_type = [types[i // 15] for i in range(60)]
rna = brng.poisson(1.0, (60, len(genes))).astype(np.float32)
adt = brng.poisson(3.0, (60, len(antibodies))).astype(np.float32)
for i, t in enumerate(cell_type):
    k = types.index(t)
    rna[i, 10 * k:10 * k + 10] += brng.poisson(8.0, 10)
    for g in marker_genes[t]:
        rna[i, genes.index(g)] += brng.poisson(20.0)
    for a in markers[t]:
        adt[i, antibodies.index(a)] += brng.poisson(300.0)
bobs = pd.DataFrame({"cell_type": pd.Categorical(cell_type),
                     "batch": pd.Categorical([f"s1d{1 + i % 2}" for i in range(60)])}, index=cells)


def lognorm(m):
    return np.log1p(1e4 * m / m.sum(axis=1, keepdims=True)).astype(np.float32)


def write_anndata07(path, x, layers, obs, var_names):
    """The anndata 0.7 layout the real BMMC files have (written with h5py, as anndata no longer
    writes it): CSC matrices as groups, obs/var as groups whose categorical columns are int8
    code datasets with their categories in `__categories/<column>` (and an object reference to
    them in the column's `categories` attribute)."""
    str_dt = h5py.string_dtype()

    def csc(g, m):
        c = sp.csc_matrix(m.astype(np.float64))
        g.attrs["encoding-type"] = "csc_matrix"
        g.attrs["encoding-version"] = "0.1.0"
        g.attrs["shape"] = np.array(m.shape)
        g.create_dataset("data", data=c.data)
        g.create_dataset("indices", data=c.indices.astype(np.int32))
        g.create_dataset("indptr", data=c.indptr.astype(np.int32))

    def frame(g, index, cols):
        g.attrs["_index"] = "_index"
        g.attrs["encoding-type"] = "dataframe"
        g.attrs["encoding-version"] = "0.1.0"
        g.attrs["column-order"] = np.array(list(cols), dtype=object).astype(str_dt) if cols else np.array([], dtype=str_dt)
        g.create_dataset("_index", data=np.array(index, dtype=object), dtype=str_dt)
        cats = g.create_group("__categories")
        for name, v in cols.items():
            cv = pd.Categorical(v)
            c = cats.create_dataset(name, data=np.array(list(cv.categories), dtype=object), dtype=str_dt)
            c.attrs["ordered"] = False
            d = g.create_dataset(name, data=cv.codes.astype(np.int8))
            d.attrs["categories"] = c.ref

    with h5py.File(path, "w") as f:
        csc(f.create_group("X"), x)
        for k, m in layers.items():
            csc(f.create_group(f"layers/{k}"), m)
        frame(f.create_group("obs"), list(obs.index), {c: list(obs[c].astype(str)) for c in obs.columns})
        frame(f.create_group("var"), var_names, {})
        f.create_group("uns")


for name, m, names in [("bmmc_rna.h5ad", rna, genes), ("bmmc_adt.h5ad", adt, antibodies)]:
    write_anndata07(os.path.join(OUT, name), lognorm(m), {"counts": m}, bobs, names)
# The reader's check on this layout: the RNA file as its planted arrays say it is.
expected["bmmc_rna.h5ad"] = {
    "cells": cells,
    "genes": genes,
    "X": rna.astype(float).tolist(),
    "obs": {"cell_type": cell_type, "batch": list(bobs["batch"].astype(str))},
    "used_raw": False,
    "layer": "counts",
}

# The PerturBench development layout (perturbation_norman2019_* and perturbation_mcfaline2023
# run on it): one AnnData of log-normalised expression with obs condition / dataset / cell_type,
# doubles written "A+B". Planted signal: a target's response is a fixed linear map of its planted
# embedding (fixtures/embeddings.tsv), so targets close in embedding space respond alike; each
# cell line has its own map; a double's response is the sum of its singles', plus half that again
# for pairs planted as synergy. The genetic-interaction table lists the doubles and more pairs
# whose type follows a planted linear rule of their summed embeddings (72 more pairs). Not in expected.json.
emb = pd.read_csv(os.path.join(os.path.dirname(OUT), "embeddings.tsv"), sep="\t", index_col=0)
prng = np.random.default_rng(20261206)
resp = [f"GENE{i:04d}" for i in range(100, 130)]
W = prng.normal(size=(len(resp), emb.shape[1]))
u = prng.normal(size=emb.shape[1])
base = 1.0 + (np.arange(len(resp)) % 5) * 0.3


def delta(gene, w=W):
    if gene not in emb.index:  # a target without an embedding still responds
        return 0.15 * w @ prng.normal(size=emb.shape[1])
    return 0.15 * w @ emb.loc[gene].to_numpy()


def synergy(a, b):
    return float((emb.loc[a].to_numpy() + emb.loc[b].to_numpy()) @ u) > 0


singles = [f"GENE{i:04d}" for i in range(200, 212)] + ["GENE0390"]  # 0390: no embedding
d1 = {g: delta(g) for g in singles}
doubles = [("GENE0200", "GENE0201"), ("GENE0202", "GENE0203"), ("GENE0204", "GENE0205"),
           ("GENE0206", "GENE0207"), ("GENE0208", "GENE0209"), ("GENE0210", "GENE0211"),
           ("GENE0200", "GENE0205"), ("GENE0203", "GENE0208"), ("GENE0390", "GENE0201")]
rows, obs_rows = [], []


def cells(n, mean, cond, dataset, line):
    for _ in range(n):
        x = np.maximum(0.0, base + mean + prng.normal(scale=0.3, size=len(resp)))
        rows.append(np.round(x, 1))
        obs_rows.append((cond, dataset, line))


cells(40, 0.0, "control", "norman19", "k562")
for g in singles:
    cells(24, d1[g], g, "norman19", "k562")
for a, b in doubles:
    both = d1[a] + d1[b]
    if a in emb.index and b in emb.index and synergy(a, b):
        both = 1.5 * both
    cells(24, both, f"{a}+{b}", "norman19", "k562")
cells(10, delta("GENE0212"), "GENE0212", "norman19", "k562")  # too few cells
lines = {"A172": 0.0, "T98G": 0.5, "U87MG": 1.0}
targets = [f"GENE{i:04d}" for i in range(220, 228)]
for line, shift in lines.items():
    wl = W + shift * prng.normal(size=W.shape)
    cells(40, 0.0, "control", "mcfaline23", line)
    for g in targets:
        cells(24, delta(g, wl), g, "mcfaline23", line)
pobs = pd.DataFrame(obs_rows, columns=["condition", "dataset", "cell_type"],
                    index=[f"pcell{i:05d}" for i in range(len(rows))])
for c in pobs.columns:
    pobs[c] = pd.Categorical(pobs[c])
pa = ad.AnnData(X=sp.csr_matrix(np.array(rows, dtype=np.float32)), obs=pobs,
                var=pd.DataFrame(index=resp))
pa.write_h5ad(os.path.join(OUT, "perturb_devel.h5ad"), compression="gzip")
others = [f"GENE{i:04d}" for i in range(230, 380) if f"GENE{i:04d}" in emb.index]
pairs = [(a, b) for a, b in doubles if a in emb.index and b in emb.index]
margin = lambda a, b: abs(float((emb.loc[a].to_numpy() + emb.loc[b].to_numpy()) @ u))
while len(pairs) < len(doubles) - 1 + 72:
    a, b = prng.choice(others, 2, replace=False)
    a, b = str(a), str(b)
    # pairs far from the planted boundary, so a linear probe can find it from 80 pairs
    if (a, b) not in pairs and (b, a) not in pairs and margin(a, b) > 1.0:
        pairs.append((a, b))
others_types = ["epistasis", "suppressor", "neomorphic", "redundant"]
with open(os.path.join(OUT, "GI_scores_truth.csv"), "w") as fh:
    fh.write("mag,perturbation,gi_type\n")
    for i, (a, b) in enumerate(pairs):
        kind = "synergy" if synergy(a, b) else others_types[i % 4]
        fh.write(f"{prng.uniform(0.5, 1.5):.4f},{a}+{b},{kind}\n")

bad = ad.AnnData(X=X, obs=obs, var=var)
bad.write_h5ad(os.path.join(OUT, "bad_shape.h5ad"))
with h5py.File(os.path.join(OUT, "bad_shape.h5ad"), "r+") as f:
    del f["X"]
    f.create_dataset("X", data=X[:, :3])

with open(os.path.join(OUT, "expected.json"), "w") as fh:
    json.dump({"anndata": ad.__version__, "h5py": h5py.__version__, "files": expected}, fh, indent=1)
print("wrote", sorted(os.listdir(OUT)))
