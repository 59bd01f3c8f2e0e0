#!/usr/bin/env bash
# The quick mode of every benchmark script that CI can run: each on the built-in synthetic
# fixtures, in seconds, with its agreement check (exit status 1 on disagreement). CI runs this so
# that the scripts keep working with the current bftkit; the full runs are in bench/README.md.
#
#   bench/quick.sh            # uses target/debug/bftkit (built if missing) and bench/.venv
#   BFTKIT=target/release/bftkit bench/quick.sh
#
# Not here: make_embeddings.py and embed_vs_sentence_transformers.py (torch), finetune_smollm2.sh
# and step_time.sh (the SmolLM2 model from scripts/fetch_models.sh, minutes of CPU training).
set -euo pipefail
cd "$(dirname "$0")/.."
BFTKIT=${BFTKIT:-target/debug/bftkit}
VENV=${BENCH_VENV:-bench/.venv}
[ -x "$BFTKIT" ] || cargo build --quiet
if [ ! -x "$VENV/bin/python" ] && ! python3 -m venv "$VENV"; then
    # A machine without Python's venv cannot run the peers; say so loudly, but it is not a
    # failure of the scripts (CI images without Python still run the Rust tests).
    echo "bench/quick.sh: SKIPPED — python3 -m venv is not available on this machine" >&2
    exit 0
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements-quick.txt
PY="$VENV/bin/python"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step() { echo; echo "=== $* ==="; }
step probe_vs_sklearn.py
"$PY" bench/probe_vs_sklearn.py --quick --bftkit "$BFTKIT" --out "$tmp/probe"
step cells_vs_sklearn.py
"$PY" bench/cells_vs_sklearn.py --quick --bftkit "$BFTKIT" --out "$tmp/cells"
step umap_vs_umap_learn.py
"$PY" bench/umap_vs_umap_learn.py --quick --bftkit "$BFTKIT" --out "$tmp/umap" 2>/dev/null
step scib_vs_scib_metrics.py
"$PY" bench/scib_vs_scib_metrics.py --quick --bftkit "$BFTKIT" --out "$tmp/scib" 2>/dev/null
step "results_table.py, compare_results.py"
"$BFTKIT" run --out "$tmp/run" --no-umap >/dev/null
"$PY" bench/results_table.py "$tmp/run/fixtures/results.json" >"$tmp/table.md"
head -5 "$tmp/table.md"
"$PY" bench/compare_results.py "$tmp/run/fixtures/results.json" "$tmp/run/fixtures/results.json"
echo; echo "bench/quick.sh: every benchmark script ran and agreed"
