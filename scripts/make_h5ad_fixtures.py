#!/usr/bin/env python3
"""Writes the small .h5ad files of fixtures/h5ad/ and what anndata itself reads from them
(expected.json), so bftkit's reader is checked against the reference implementation in
`cargo test` without Python. Needs anndata, h5py, scipy (bench/.venv has them).

  bench/.venv/bin/python scripts/make_h5ad_fixtures.py

Files: dense.h5ad (dense X, categorical and string obs columns), csr_raw.h5ad (CSR X, gzip,
and a raw with more genes), csc.h5ad (CSC X), legacy.h5ad (the older layout of scanpy's bundled
pbmc68k_reduced: compound obs/var tables, raw.X with h5sparse attributes, categories in uns),
bad_shape.h5ad (X does not match obs x var: must be refused).
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

bad = ad.AnnData(X=X, obs=obs, var=var)
bad.write_h5ad(os.path.join(OUT, "bad_shape.h5ad"))
with h5py.File(os.path.join(OUT, "bad_shape.h5ad"), "r+") as f:
    del f["X"]
    f.create_dataset("X", data=X[:, :3])

with open(os.path.join(OUT, "expected.json"), "w") as fh:
    json.dump({"anndata": ad.__version__, "h5py": h5py.__version__, "files": expected}, fh, indent=1)
print("wrote", sorted(os.listdir(OUT)))
