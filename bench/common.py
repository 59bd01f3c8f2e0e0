"""Helpers shared by the benchmark scripts: reading embedding files as bftkit writes them, and
the quick mode every script has (`--quick`: the built-in synthetic fixtures, seconds, run by CI
so that the scripts keep working with the current bftkit)."""
import csv
import json
import os
import tempfile

import numpy as np

FIXTURES = "fixtures"


def load_embeddings(path):
    """(gene ids, float32 matrix) of a `.safetensors` (tensor `embeddings`, metadata `gene_ids`)
    or a `.tsv`/`.csv` embedding file (first column the id, optional header row)."""
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, "np") as f:
            return json.loads(f.metadata()["gene_ids"]), f.get_tensor("embeddings").astype(np.float32)
    delimiter = "," if path.endswith(".csv") else "\t"
    ids, rows = [], []
    with open(path) as f:
        for i, row in enumerate(csv.reader(f, delimiter=delimiter)):
            if not row or row[0].startswith("#"):
                continue
            try:
                values = [float(v) for v in row[1:]]
            except ValueError:
                if i == 0:
                    continue  # header
                raise
            ids.append(row[0])
            rows.append(values)
    return ids, np.asarray(rows, dtype=np.float32)


def quick_out(args):
    """A temporary output folder for a quick run (unless --out was given)."""
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix="bftkit-bench-")
    os.makedirs(args.out, exist_ok=True)
    return args.out
